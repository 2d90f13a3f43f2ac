# syntax=docker/dockerfile:1
# The load test image: headless locust (the `loadtest` extra) with the project's code, for
# load_test's Job (manifests/patterns/load_test/job.yaml). The locustfile comes from a
# ConfigMap; the users it imports (bench/users.py) and the step shape are here. Build from the
# repo root: make build PATTERN=load_test.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN python3 -m pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-cache --extra loadtest \
 && find /opt/venv -name '*.dist-info' -prune -o -name tests -type d -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="mlsp-loadtest" \
      org.opencontainers.image.description="ml-system-patterns load test (headless locust)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/ml-system-patterns/ml-system-patterns"
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY serving/ serving/
COPY patterns/ patterns/
COPY bench/users.py bench/
# bytecode now: the root fs is read-only at run time. locust and gevent import here, so a
# broken install fails the build, not the Job.
RUN /opt/venv/bin/python -m compileall -q serving patterns bench \
 && /opt/venv/bin/python -c "import locust, gevent, patterns.load_test.job, bench.users"
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    MLSP_GIT_SHA=${GIT_SHA}
USER 10001:10001
ENTRYPOINT ["python", "-m"]
CMD ["patterns.load_test.job"]
