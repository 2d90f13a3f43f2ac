# syntax=docker/dockerfile:1
# model_in_image: the serving image plus one registry model version, as one immutable artifact.
# `make build PATTERN=model_in_image` resolves the alias (default models:/iris-svc@production)
# in the registry, downloads and verifies that version into build/model/, then builds this with
# its name, version and sha256 as build args; the tag is <name>-v<version>.
ARG SERVING_IMAGE=localhost/mlsp-serving:0.1.0

FROM ${SERVING_IMAGE} AS verify
ARG MODEL_NAME=iris-svc
ARG MODEL_VERSION
ARG MODEL_SHA256
COPY build/model/ /models/${MODEL_NAME}/
# The build fails unless the files are exactly that registry version: card name and version,
# sha256 against the registry's tag and the card, golden examples reproduced.
RUN python -m serving.loader verify "/models/${MODEL_NAME}" \
      --name "${MODEL_NAME}" --version "${MODEL_VERSION}" --sha256 "${MODEL_SHA256}"

FROM ${SERVING_IMAGE}
ARG MODEL_NAME=iris-svc
ARG MODEL_VERSION
ARG MODEL_SHA256
# another base (the batch image) gives another title and default service name
ARG TITLE=mlsp-model-in-image
ARG SERVICE=model-in-image
LABEL org.opencontainers.image.title="${TITLE}" \
      org.opencontainers.image.version="${MODEL_NAME}-v${MODEL_VERSION}" \
      io.mlsp.model.name="${MODEL_NAME}" \
      io.mlsp.model.version="${MODEL_VERSION}" \
      io.mlsp.model.sha256="${MODEL_SHA256}"
COPY --from=verify /models/ /models/
ENV MLSP_MODEL_DIR=/models/${MODEL_NAME} MLSP_SERVICE=${SERVICE}
CMD ["patterns.model_in_image.app"]
