"""Open Inference Protocol v2 (REST) on top of the same model contract.

The protocol KServe, Triton, MLServer and Seldon speak, so their clients work against any model
server of ours, in their default modes: server/model metadata, health, readiness and `infer`
with tensors as JSON or with the binary tensor data extension (serving/tensors.py). Errors take
the OIP shape, `{"error": "<message>"}`, with the project's `code`, `field` and `request_id`
beside it (serving/errors.py).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from serving import tensors
from serving.errors import InvalidInput, NotFound, Skew
from serving.inference import OIP_ERRORS as ERRORS
from serving.inference import json_response, read_body
from serving.model import ModelCard
from serving.predictor import Batch, Call, Predictor
from serving.settings import ServingSettings
from serving.state import ServiceState
from serving.tensors import InferInput, InferRequest, InferResponse

PROTOCOL_VERSION = "2"
EXTENSIONS = ["binary_tensor_data"]
"""The protocol extensions served (advertised in `GET /v2`; Triton's names)."""


OIP_DTYPES = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}


def check_contract(
    card: ModelCard, tensor: InferInput, parameters: dict[str, Any] | None, *, strict: bool
) -> None:
    """The skew guard: the tensor must have been prepared for this model. The preprocessing
    version is checked whenever it is sent (always, when `strict`); dtype and shape when strict."""
    sent = (parameters or {}).get("preprocess_version")
    wanted = card.preprocess.version if card.preprocess is not None else None
    if strict or sent is not None:
        if sent is None and wanted is not None:
            raise Skew(
                "parameters.preprocess_version",
                f"required: {card.name} was trained for {card.preprocess.name} v{wanted}"
                if card.preprocess
                else "required",
                expected=wanted,
                got=None,
            )
        if sent is not None and str(sent) != wanted:
            raise Skew(
                "parameters.preprocess_version",
                f"the input was preprocessed with v{sent}; {card.name} v{card.version} "
                f"was trained for v{wanted}"
                if wanted
                else f"{card.name} takes raw features, not preprocessed v{sent}",
                expected=wanted,
                got=sent,
            )
    if not strict:
        return
    dtype = OIP_DTYPES.get(card.input.dtype, card.input.dtype)
    if tensor.datatype != dtype:
        raise Skew(
            "inputs[0].datatype",
            f"{card.name} takes {dtype}, got {tensor.datatype}",
            expected=dtype,
            got=tensor.datatype,
        )
    width = card.n_features
    if len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise Skew(
            "inputs[0].shape",
            f"{card.name} takes [n, {width}], got {tensor.shape}",
            expected=[-1, width],
            got=tensor.shape,
        )


def _model_for(state: ServiceState, name: str, version: str | None) -> Predictor:
    predictor = state.ready()
    card = predictor.card
    if name != card.name:
        raise NotFound(f"model {name!r} is not served here; this server serves {card.name!r}")
    if version is not None and version != card.version:
        raise NotFound(
            f"{name} version {version!r} is not served; served version is {card.version!r}"
        )
    return predictor


def _metadata(predictor: Predictor) -> dict[str, Any]:
    card = predictor.card
    k = 1 if card.task == "outlier" else len(card.labels)
    return {
        "name": card.name,
        "versions": [card.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": card.input.name, "datatype": "FP32", "shape": [-1, card.n_features]}],
        "outputs": [
            {"name": card.outputs["label"], "datatype": "INT64", "shape": [-1]},
            {"name": card.outputs["scores"], "datatype": "FP32", "shape": [-1, k]},
        ],
        "parameters": {"labels": card.labels, "task": card.task},
    }


def input_batch(infer: tensors.Infer, card: ModelCard, s: ServingSettings) -> Batch:
    """The request's input tensor as the float32 batch the model takes (422 naming the field
    if not; the skew guard first, see `check_contract`)."""
    tensor = infer.req.inputs[0]
    if tensor.name != card.input.name:
        message = f"unknown input {tensor.name!r}; the model takes {card.input.name!r}"
        raise InvalidInput([("inputs[0].name", message)])
    check_contract(card, tensor, infer.req.parameters, strict=s.require_contract)
    width = card.n_features
    shape = tensor.shape if len(tensor.shape) == 2 else [1, tensor.shape[0]]
    if shape[0] == 0:
        raise InvalidInput([("inputs[0].shape", "the batch must hold at least one row")])
    if shape[1] != width:
        raise InvalidInput([("inputs[0].shape", f"expected [n, {width}], got {tensor.shape}")])
    if shape[0] > s.max_batch:
        raise InvalidInput([("inputs[0].shape", f"at most {s.max_batch} rows, got {shape[0]}")])
    values = tensors.input_values(infer, 0, s.max_batch * width)
    return tensors.as_batch(values, shape[0], width, "inputs[0].data")


def _head(card: ModelCard, rid: str) -> dict[str, Any]:
    return {"model_name": card.name, "model_version": card.version, "id": rid}


TAGS: list[str | Enum] = ["open inference protocol v2"]


def install_oip(app: FastAPI, state: ServiceState) -> None:
    """The OIP v2 REST routes: server and model metadata, health, and infer."""
    _install_metadata_and_health(app, state)
    _install_infer(app, state)


def _install_metadata_and_health(app: FastAPI, state: ServiceState) -> None:
    tags = TAGS

    @app.get("/v2", tags=tags, summary="Server metadata")
    async def server_metadata() -> Response:
        return json_response(
            {
                "name": "ml-system-patterns",
                "version": "0.1.0",
                "extensions": EXTENSIONS,
                "protocol_version": PROTOCOL_VERSION,
            }
        )

    @app.get("/v2/health/live", tags=tags, summary="Server live")
    async def live() -> Response:
        return json_response({"live": True})

    @app.get(
        "/v2/health/ready",
        tags=tags,
        summary="Server ready (OIP: 4xx when not)",
        responses={400: {"description": 'Not ready: `{"ready": false}`'}},
    )
    async def ready() -> Response:
        ok = not await state.reasons()
        return json_response({"ready": ok}, 200 if ok else 400)

    async def model_ready(name: str, version: str | None) -> Response:
        # OIP: a model that is not ready is a 4xx with {"ready": false}, not a 5xx; another
        # model's name is 404 once the served one is known.
        if state.loaded.is_set():
            _model_for(state, name, version)
        ok = not await state.reasons()
        return json_response({"name": name, "ready": ok}, 200 if ok else 400)

    @app.get("/v2/models/{name}", tags=tags, summary="Model metadata", responses=ERRORS)
    async def model_metadata(name: str) -> Response:
        return json_response(_metadata(_model_for(state, name, None)))

    @app.get(
        "/v2/models/{name}/versions/{version}",
        tags=tags,
        responses=ERRORS,
        summary="Model metadata (one version)",
    )
    async def model_version_metadata(name: str, version: str) -> Response:
        return json_response(_metadata(_model_for(state, name, version)))

    ready_doc: dict[int | str, dict[str, Any]] = {
        400: {"description": 'Not ready: `{"name", "ready": false}`'},
        404: ERRORS[404],
    }

    @app.get("/v2/models/{name}/ready", tags=tags, summary="Model ready", responses=ready_doc)
    async def model_is_ready(name: str) -> Response:
        return await model_ready(name, None)

    @app.get(
        "/v2/models/{name}/versions/{version}/ready",
        tags=tags,
        summary="Model ready (one version)",
        responses=ready_doc,
    )
    async def model_version_ready(name: str, version: str) -> Response:
        return await model_ready(name, version)


def _install_infer(app: FastAPI, state: ServiceState) -> None:
    s, tags = state.settings, TAGS
    schema = {"schema": InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")}
    infer_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": schema,
                tensors.OCTETS: {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "the binary tensor data extension: the JSON request, "
                    "Inference-Header-Content-Length bytes long, then the tensors' bytes",
                },
            },
        }
    }

    async def run_infer(request: Request, name: str, version: str | None) -> Response:
        predictor = _model_for(state, name, version)
        card = predictor.card
        body = await read_body(request, s.max_body_bytes)
        infer = tensors.parse(body, request.headers.get(tensors.HEADER_LENGTH))
        x = input_batch(infer, card, s)
        names = [card.outputs["label"], card.outputs["scores"]]
        wanted = tensors.wanted_outputs(infer.req, names)  # 422 before the model runs
        rid = infer.req.id or request.scope["state"]["request_id"]
        call = Call(rid, request.scope["state"]["log_extra"])
        out = await predictor.predict(x, call)
        payload, media_type, headers = tensors.encode_response(
            _head(card, rid), tensors.output_arrays(card, out), wanted
        )
        headers.update((k.decode(), v.decode()) for k, v in call.headers)
        return Response(payload, media_type=media_type, headers=headers)

    @app.post(
        "/v2/models/{name}/infer",
        tags=tags,
        summary="Inference",
        response_model=InferResponse,
        responses=ERRORS,
        openapi_extra=infer_doc,
    )
    async def infer_latest(request: Request, name: str) -> Response:
        return await run_infer(request, name, None)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer",
        tags=tags,
        response_model=InferResponse,
        responses=ERRORS,
        summary="Inference (one version)",
        openapi_extra=infer_doc,
    )
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await run_infer(request, name, version)


__all__ = ["install_oip"]
