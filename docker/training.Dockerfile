# syntax=docker/dockerfile:1
# Training and the MLflow server share one heavy dependency set (MLflow itself needs
# scikit-learn, pandas, SQLAlchemy...), so they share one builder stage and two targets:
#   --target mlflow    the tracking server + registry (store on a volume)
#   --target training  the pipeline: data -> train -> evaluate -> ONNX export -> register,
#                      and batch_training's seed, scheduled retraining and alias tools (with
#                      the PostgreSQL driver: its rows live in PostgreSQL on Kubernetes)
# Build from the repo root: make build (or podman/docker build -f docker/training.Dockerfile).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN python3 -m pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --extra training --extra postgres --no-cache

FROM ${BASE_IMAGE} AS mlflow
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mlsp-mlflow" \
      org.opencontainers.image.description="MLflow tracking server and model registry" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["mlflow", "server"]
CMD ["--host", "0.0.0.0", "--port", "5000", "--workers", "1", \
     "--backend-store-uri", "sqlite:////mlflow/mlflow.db", "--artifacts-destination", "/mlflow/artifacts"]

FROM ${BASE_IMAGE} AS training
ARG VERSION=0.1.0
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.title="mlsp-training" \
      org.opencontainers.image.description="ml-system-patterns training pipeline" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}"
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY serving/ serving/
COPY training/ training/
COPY patterns/__init__.py patterns/declare.py patterns/
COPY patterns/batch_training/ patterns/batch_training/
RUN python3 -m compileall -q serving training patterns
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    MLSP_DATA_DIR=/data MLSP_GIT_SHA=${GIT_SHA}
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["run", "--all"]
