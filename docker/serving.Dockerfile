# syntax=docker/dockerfile:1
# The serving image: one image for every pattern (the pattern is the command the manifest
# runs, e.g. `python -m patterns.web_single.app`). ONNX Runtime + FastAPI, no scikit-learn,
# no MLflow client. Build from the repo root:  make build  (or podman/docker build -f ...).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv
# binutils only for `strip` below; it stays in this stage
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && python3 -m pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# dependencies first (from the lock file), sources later: a code change reuses this layer.
# EXTRAS: optional dependency groups of pyproject.toml, e.g. `postgres` for the batch image
# (localhost/mlsp-batch: batch_inference's PostgreSQL driver stays out of the serving image),
# `postgres monitoring` for the monitor image (localhost/mlsp-monitor: scipy, for drift).
ARG EXTRAS=""
COPY pyproject.toml uv.lock ./
RUN extras=""; for e in $EXTRAS; do extras="$extras --extra $e"; done; \
    uv sync --frozen --no-dev --no-install-project --no-cache $extras
# Size (budget 255 MB, kube/verify.py): drop what serving never loads. The Python binding of ONNX Runtime
# links the runtime statically; libonnxruntime.so is only for the C API (-28 MB). Test suites
# and ORT's model tools, numpy's build tools and headers, type stubs, Pillow's AVIF decoder and
# font renderer (images are opened as the sniffed PNG/JPEG only) are not used here. Debug
# symbols of extension modules go, except in *.libs folders (auditwheel-patched ELF files must
# not be stripped). Bytecode is written later, only for the modules a server imports.
# scipy (the monitor image) imports numpy.f2py through `from numpy import *`: it stays there.
RUN site=$(echo /opt/venv/lib/python3*/site-packages) \
 && f2py="$site/numpy/f2py"; if [ -d "$site/scipy" ]; then f2py=""; fi \
 && rm -rf "$site"/onnxruntime/capi/libonnxruntime.so.* "$site"/onnxruntime/tools \
           "$site"/onnxruntime/transformers "$site"/onnxruntime/quantization \
           "$site"/numpy/distutils $f2py "$site"/numpy/_core/include \
           "$site"/PIL/_avif.* "$site"/pillow.libs/libavif-* \
           "$site"/PIL/_imagingft.* "$site"/pillow.libs/libfreetype-* "$site"/pillow.libs/libharfbuzz-* \
 && find "$site" -name '*.pyi' -delete \
 && find /opt/venv -name '*.dist-info' -prune -o -name tests -type d -prune -exec rm -rf {} + \
 && find "$site" -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
 && python3 -c "import sys; sys.path.insert(0, '$site'); import onnxruntime, numpy, uvloop, PIL.PngImagePlugin, PIL.JpegImagePlugin"

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG TITLE=mlsp-serving
LABEL org.opencontainers.image.title="${TITLE}" \
      org.opencontainers.image.description="ml-system-patterns model server (any pattern)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/ml-system-patterns/ml-system-patterns"
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY serving/ serving/
COPY patterns/ patterns/
# bytecode for every module a server imports (root fs is read-only at run time, so Python
# could not cache it then): fast start without compiling all of site-packages. batch_inference
# needs the postgres extra: without it (the serving image) its modules are not imported; the
# drift modules and online_ab's statistics (its proxy runs on the monitor image) need the
# monitoring extra (scipy) the same way. batch_training and pipeline_training's lineage run on
# the training image (the training pipeline, scikit-learn, MLflow): not imported here.
RUN /opt/venv/bin/python -c "import importlib, importlib.util, pkgutil, serving, patterns; \
pg = importlib.util.find_spec('psycopg') is not None; \
sp = importlib.util.find_spec('scipy') is not None; \
[importlib.import_module(m.name) for p in (serving, patterns) \
 for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') \
 if not m.name.endswith('locustfile') \
 and not m.name.startswith(('patterns.batch_training.', 'patterns.pipeline_training.lineage')) \
 and (pg or not m.name.startswith('patterns.batch_inference.')) \
 and (sp or m.name not in ('serving.drift', 'patterns.prediction_monitoring.monitor', \
                             'patterns.online_ab.stats', 'patterns.online_ab.proxy'))]"
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp MLSP_HOST=0.0.0.0 MLSP_PORT=8000 MLSP_MODEL_DIR=/models/iris-svc
# numeric uid/gid: no useradd needed, and it satisfies runAsNonRoot
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["python", "-m"]
CMD ["patterns.web_single.app"]
