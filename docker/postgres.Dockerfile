# syntax=docker/dockerfile:1
# PostgreSQL for batch_inference: Debian bookworm's PostgreSQL 15, built (not pulled) so it
# builds where no container registry is reachable and the cluster runs the image `make verify`
# tested. docker/postgres-entrypoint.sh initialises PGDATA on first start (role and database
# POSTGRES_USER/POSTGRES_DB, password POSTGRES_PASSWORD from a Secret) and runs the server.
# The official image (docker.io/library/postgres:15-bookworm) takes the same variables: see
# docs/kubernetes.md.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG PG_MAJOR=15
LABEL org.opencontainers.image.title="mlsp-postgres" \
      org.opencontainers.image.description="PostgreSQL ${PG_MAJOR} (Debian bookworm) for ml-system-patterns" \
      org.opencontainers.image.source="https://github.com/ml-system-patterns/ml-system-patterns"
# no cluster at install time (PGDATA is the volume); the `postgres` user gets uid/gid 10001
# (initdb needs a passwd entry for the uid it runs as, and runAsUser is 10001)
RUN mkdir -p /etc/postgresql-common \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "postgresql-${PG_MAJOR}" >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* \
           /usr/share/locale/* "/usr/share/postgresql/${PG_MAJOR}/man" \
 # no JIT (-150 MB): LLVM and the bitcode only serve it; without its provider PostgreSQL
 # plans without JIT, and the manifest says jit=off too
 && rm -rf /usr/lib/x86_64-linux-gnu/libLLVM-* /usr/lib/x86_64-linux-gnu/libz3.so* \
           "/usr/lib/postgresql/${PG_MAJOR}/lib/llvmjit"* "/usr/lib/postgresql/${PG_MAJOR}/lib/bitcode" \
 && groupmod -g 10001 postgres && usermod -u 10001 -g 10001 postgres \
 && mkdir -p /var/lib/postgresql/data /run/postgresql \
 && chown -R 10001:10001 /var/lib/postgresql /run/postgresql \
 && "/usr/lib/postgresql/${PG_MAJOR}/bin/postgres" --version | tee /dev/stderr \
      | grep -q " ${PG_MAJOR}\."
COPY docker/postgres-entrypoint.sh /usr/local/bin/mlsp-postgres
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data/pgdata \
    POSTGRES_USER=mlsp POSTGRES_DB=mlsp
USER 10001:10001
EXPOSE 5432
# SIGTERM is PostgreSQL's "smart" shutdown (waits for every client to leave): stop fast instead
STOPSIGNAL SIGINT
ENTRYPOINT ["mlsp-postgres"]
