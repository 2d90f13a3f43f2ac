"""Open Inference Protocol v2 (REST) on top of the same model contract.

The protocol KServe, Triton, MLServer and Seldon speak, so their clients work against any model
server of ours: server/model metadata, health, readiness and `infer` with tensors. Errors use
the project's error shape, whose `error` key OIP clients read.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.errors import InvalidInput, NotFound, Skew
from serving.inference import ERRORS, invalid_from_pydantic, json_response, read_body, to_matrix
from serving.model import ModelCard, Prediction
from serving.predictor import Batch, Call, Predictor
from serving.settings import ServingSettings
from serving.state import ServiceState

PROTOCOL_VERSION = "2"
DATATYPES = {"FP32", "FP64", "INT32", "INT64"}


class InferInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=2)]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """An OIP v2 inference request (tensors as row-major `data`, flat or nested)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "inputs": [
                        {
                            "name": "X",
                            "shape": [1, 4],
                            "datatype": "FP32",
                            "data": [5.1, 3.5, 1.4, 0.2],
                        }
                    ]
                }
            ]
        }
    )
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: Annotated[list[InferInput], Field(min_length=1, max_length=1)]
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


def _flatten(data: list[Any], field: str, limit: int) -> list[float]:
    """Row-major flattening; only JSON numbers are accepted (no strings, no booleans)."""
    flat: list[float] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], StopIteration)
        if item is StopIteration:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif isinstance(item, int | float) and not isinstance(item, bool):
            try:
                flat.append(float(item))
            except OverflowError:
                raise InvalidInput(
                    [(field, f"element {len(flat)} is outside the float32 range")]
                ) from None
            if len(flat) > limit:
                raise InvalidInput([(field, f"more than {limit} values")])
        else:
            raise InvalidInput([(field, f"element {len(flat)} is not a number: {item!r}")])
    return flat


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


def parse_infer(body: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


def input_batch(req: InferRequest, card: ModelCard, s: ServingSettings) -> Batch:
    """The request's input tensor as the float32 batch the model takes (422 naming the field
    if not; the skew guard first, see `check_contract`)."""
    tensor = req.inputs[0]
    if tensor.name != card.input.name:
        message = f"unknown input {tensor.name!r}; the model takes {card.input.name!r}"
        raise InvalidInput([("inputs[0].name", message)])
    check_contract(card, tensor, req.parameters, strict=s.require_contract)
    if tensor.datatype not in DATATYPES:
        raise InvalidInput(
            [("inputs[0].datatype", f"{tensor.datatype!r} is not one of {sorted(DATATYPES)}")]
        )
    width = card.n_features
    shape = tensor.shape if len(tensor.shape) == 2 else [1, tensor.shape[0]]
    if shape[0] == 0:
        raise InvalidInput([("inputs[0].shape", "the batch must hold at least one row")])
    if shape[1] != width:
        raise InvalidInput([("inputs[0].shape", f"expected [n, {width}], got {tensor.shape}")])
    flat = _flatten(tensor.data, "inputs[0].data", s.max_batch * width)
    if len(flat) != shape[0] * shape[1]:
        raise InvalidInput(
            [("inputs[0].data", f"{len(flat)} values do not fill shape {tensor.shape}")]
        )
    rows = [flat[i * width : (i + 1) * width] for i in range(shape[0])]
    return to_matrix(rows, width, s.max_batch, field="inputs[0].data")


def wanted_outputs(req: InferRequest, card: ModelCard) -> list[str]:
    """The output tensors asked for (default: all), each one the model has."""
    names = [card.outputs["label"], card.outputs["scores"]]
    wanted = [o.name for o in req.outputs] if req.outputs else names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise InvalidInput([("outputs", f"unknown outputs {unknown}; the model has {names}")])
    return wanted


def output_tensors(card: ModelCard, out: Prediction, wanted: list[str]) -> list[dict[str, Any]]:
    label, scores = card.outputs["label"], card.outputs["scores"]
    tensors = {
        label: {
            "name": label,
            "datatype": "INT64",
            "shape": [len(out.class_ids)],
            "data": out.class_ids,
        },
        scores: {
            "name": scores,
            "datatype": "FP32",
            "shape": list(out.scores.shape),
            "data": out.scores.reshape(-1),
        },
    }
    return [tensors[n] for n in wanted]


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
                "extensions": [],
                "protocol_version": PROTOCOL_VERSION,
            }
        )

    @app.get("/v2/health/live", tags=tags, summary="Server live")
    async def live() -> Response:
        return json_response({"live": True})

    @app.get("/v2/health/ready", tags=tags, summary="Server ready (OIP: 4xx when not)")
    async def ready() -> Response:
        ok = not await state.reasons()
        return json_response({"ready": ok}, 200 if ok else 400)

    async def model_ready(name: str, version: str | None) -> Response:
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

    @app.get("/v2/models/{name}/ready", tags=tags, summary="Model ready")
    async def model_is_ready(name: str) -> Response:
        return await model_ready(name, None)

    @app.get(
        "/v2/models/{name}/versions/{version}/ready", tags=tags, summary="Model ready (one version)"
    )
    async def model_version_ready(name: str, version: str) -> Response:
        return await model_ready(name, version)


def _install_infer(app: FastAPI, state: ServiceState) -> None:
    s, tags = state.settings, TAGS
    infer_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": InferRequest.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    )
                }
            },
        }
    }

    async def run_infer(request: Request, name: str, version: str | None) -> Response:
        predictor = _model_for(state, name, version)
        card = predictor.card
        req = parse_infer(await read_body(request, s.max_body_bytes))
        x = input_batch(req, card, s)
        wanted = wanted_outputs(req, card)  # 422 before the model runs
        rid = req.id or request.scope["state"]["request_id"]
        call = Call(rid, request.scope["state"]["log_extra"])
        out = await predictor.predict(x, call)
        return json_response(
            {
                "model_name": card.name,
                "model_version": card.version,
                "id": rid,
                "outputs": output_tensors(card, out, wanted),
            },
            headers={k.decode(): v.decode() for k, v in call.headers},
        )

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
