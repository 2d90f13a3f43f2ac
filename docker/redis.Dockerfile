# syntax=docker/dockerfile:1
# Redis for the queue patterns (asynchronous, sync_async): Debian bookworm's redis-server 7.0
# (the queue needs >= 6.2: XAUTOCLAIM). Built, not pulled, like every image of this project:
# it builds where no container registry is reachable (BASE_IMAGE=localhost/python-base:3.11
# in CI), and the cluster runs the very image `make verify` tested. The official image
# (docker.io/library/redis:7.2-alpine) works too: see docs/kubernetes.md.
#   make build PATTERN=asynchronous   (or: podman build -f docker/redis.Dockerfile .)
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG REDIS_MAJOR=7.0
LABEL org.opencontainers.image.title="mlsp-redis" \
      org.opencontainers.image.description="redis-server ${REDIS_MAJOR} (Debian bookworm) for ml-system-patterns" \
      org.opencontainers.image.source="https://github.com/ml-system-patterns/ml-system-patterns"
# the tag promises the server's major.minor: the build fails if the package moved on
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /etc/redis/* \
 && redis-server --version | tee /dev/stderr | grep -q "v=${REDIS_MAJOR}\." \
 && mkdir -p /data && chown 10001:10001 /data
WORKDIR /data
USER 10001:10001
EXPOSE 6379
# configuration is on the command line (the manifest's args); /data is the volume
ENTRYPOINT ["redis-server"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes"]
