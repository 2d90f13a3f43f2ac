"""The FastAPI app factory: the shared API (docs/catalogue.md) on the model contract, and OIP v2.

Routes: POST /predict, POST /predict/image (image models), GET /metadata, /livez, /readyz,
/metrics, and the Open Inference Protocol v2 REST routes (serving/oip.py). Every error leaves as
`{"error": {"code", "message", "request_id"}}`; bad input is a 4xx naming the field, never a 500.

The hot path (/predict) is tuned: the body is validated from raw bytes by pydantic-core, the
response is encoded by orjson, the middleware is raw ASGI, and a small model runs inline on the
event loop (a thread hop costs more than a one-row inference; set MLSP_INFERENCE_OFFLOAD for
slow models). OpenAPI still documents every schema.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import metrics, preprocessing
from serving.admission import Admission
from serving.errors import (
    ApiError,
    BadRequest,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    field_path,
)
from serving.logs import AccessLog
from serving.middleware import (
    FastHandler,
    FastRoute,
    RequestContextMiddleware,
    read_asgi_body,
    split_result,
)
from serving.model import OnnxModel, Prediction
from serving.schemas import (
    PREDICT_ADAPTER,
    ErrorResponse,
    PredictRequest,
    PredictResponse,
    Readiness,
)
from serving.settings import ServingSettings
from serving.state import ServiceState

log = logging.getLogger("serving")

JSON = "application/json"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422, 503, 504)
}


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status_code, headers=headers, media_type=JSON)


def request_id(request: Request) -> str | None:
    rid: str | None = request.scope.get("state", {}).get("request_id")
    return rid


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    return await read_asgi_body(
        request.receive, limit, int(declared) if declared.isdigit() else None
    )


def invalid_from_pydantic(exc: ValidationError | RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return BadRequest(f"body is not valid JSON: {errors[0]['msg']}", field="body")
    pairs = []
    for e in errors:
        loc = (
            [p for p in e["loc"] if p != "body"]
            if isinstance(exc, RequestValidationError)
            else list(e["loc"])
        )
        pairs.append((field_path(loc), str(e["msg"])))
    return InvalidInput(pairs)


def to_matrix(
    rows: list[list[float]], width: int, max_batch: int, field: str = "instances"
) -> npt.NDArray[np.float32]:
    """Check the batch size and row widths; cast to float32 (values too large become 422)."""
    if len(rows) > max_batch:
        raise InvalidInput([(field, f"at most {max_batch} rows per request, got {len(rows)}")])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInput([(f"{field}[{i}]", f"expected {width} features, got {len(row)}")])
    with np.errstate(over="ignore"):
        x = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(x).all():
        r, c = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise InvalidInput([(f"{field}[{r}][{c}]", "value is outside the float32 range")])
    return x


async def infer(state: ServiceState, model: OnnxModel, x: npt.NDArray[np.float32]) -> Prediction:
    started = time.perf_counter()
    if state.settings.inference_offload:
        out = await asyncio.to_thread(model.predict, x)
    else:
        out = model.predict(x)
    if state.settings.simulated_latency_ms:
        await asyncio.sleep(state.settings.simulated_latency_ms / 1000)
    metrics.INFERENCE_DURATION.labels(state.settings.service, model.card.name).observe(
        time.perf_counter() - started
    )
    return out


def prediction_body(rid: str | None, model: OnnxModel, out: Prediction) -> dict[str, Any]:
    card = model.card
    labels = card.labels
    if card.task == "outlier":
        preds = [
            {"label": labels[c], "class_id": c, "score": s[0]}
            for c, s in zip(out.class_ids.tolist(), out.scores, strict=True)
        ]
    else:
        preds = [
            {"label": labels[c], "class_id": c, "probabilities": dict(zip(labels, s, strict=True))}
            for c, s in zip(out.class_ids.tolist(), out.scores, strict=True)
        ]
    return {
        "request_id": rid,
        "model": {"name": card.name, "version": card.version},
        "predictions": preds,
    }


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return json_response(exc.body(request_id(request)), exc.status_code, exc.headers())

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return await on_api_error(request, invalid_from_pydantic(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        mapped: ApiError
        if exc.status_code == 404:
            mapped = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            mapped = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        else:
            mapped = ApiError(str(exc.detail))
            mapped.status_code, mapped.code = exc.status_code, "http_error"
        return await on_api_error(request, mapped)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": request_id(request)})
        rid = request_id(request)
        return json_response(
            ApiError("internal error").body(rid), 500, {"X-Request-ID": rid} if rid else None
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _install_health(app: FastAPI, state: ServiceState) -> None:
    @app.get("/livez", tags=["health"], summary="The process is alive")
    async def livez() -> Response:
        return json_response({"live": True})

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Model loaded, self-tested, dependencies up",
        responses={200: {"model": Readiness}, 503: {"model": Readiness}},
    )
    async def readyz() -> Response:
        reasons = await state.reasons()
        return json_response({"ready": not reasons, "reasons": reasons}, 503 if reasons else 200)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def prom() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def predict_handler(state: ServiceState) -> FastHandler:
    """POST /predict: JSON rows -> predictions, as bytes."""
    s = state.settings

    async def handle(body: bytes, rid: str, log_extra: dict[str, Any]) -> bytes:
        model = state.require_model()
        x = parse_rows(body, model, s.max_batch)
        out = await infer(state, model, x)
        log_extra["model_version"] = model.card.version
        return orjson.dumps(prediction_body(rid, model, out), option=orjson.OPT_SERIALIZE_NUMPY)

    return handle


def parse_instances(body: bytes) -> list[list[float]]:
    """A /predict body -> its rows of finite numbers (400/422 naming the field if not); the
    width is the model's business (`parse_rows`, or the services behind a proxy)."""
    try:
        return PREDICT_ADAPTER.validate_json(body).instances
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


def parse_rows(body: bytes, model: OnnxModel, max_batch: int) -> npt.NDArray[np.float32]:
    """A /predict body -> the float32 matrix the model takes (422 naming the field if not)."""
    return to_matrix(parse_instances(body), model.card.n_features, max_batch)


def image_model(state: ServiceState) -> OnnxModel:
    model = state.require_model()
    if model.card.preprocess is None:
        raise NotFound(f"{model.card.name} takes feature rows, not images: use POST /predict")
    return model


async def image_features(state: ServiceState, data: bytes) -> npt.NDArray[np.float32]:
    """PNG/JPEG bytes -> one row of features; decoding takes milliseconds, so off the loop."""
    s = state.settings
    x = await asyncio.to_thread(
        preprocessing.preprocess_image, data, max_bytes=s.max_image_bytes, max_side=s.max_image_side
    )
    return x.reshape(1, -1)


def image_handler(state: ServiceState) -> FastHandler:
    """POST /predict/image: a PNG/JPEG -> the prediction, with the preprocessing version."""

    async def handle(data: bytes, rid: str, log_extra: dict[str, Any]) -> bytes:
        model = image_model(state)
        out = await infer(state, model, await image_features(state, data))
        log_extra["model_version"] = model.card.version
        body = prediction_body(rid, model, out)
        body["preprocess_version"] = preprocessing.PREPROCESS_VERSION
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    return handle


PREDICT = "/predict"
PREDICT_IMAGE = "/predict/image"
Handlers = Callable[[ServiceState], dict[str, FastHandler]]
"""A pattern's replacement for some model routes' handlers, by path (e.g. a cache in front)."""


def _install_model_routes(
    app: FastAPI, state: ServiceState, handlers: dict[str, FastHandler]
) -> None:
    s = state.settings
    request_schema = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    predict_rows, predict_png = handlers[PREDICT], handlers[PREDICT_IMAGE]

    async def respond(request: Request, handler: FastHandler, limit: int) -> Response:
        # Served by the fast path in RequestContextMiddleware unless MLSP_FAST_PATH=false;
        # both call the same handler.
        body = await read_body(request, limit)
        state_ = request.scope["state"]
        payload, headers = split_result(
            await handler(body, state_["request_id"], state_["log_extra"])
        )
        response = Response(payload, media_type=JSON)
        for name, value in headers:
            response.headers[name.decode()] = value.decode()
        return response

    @app.post(
        PREDICT,
        tags=["predict"],
        summary="Predict from feature rows",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra={
            "requestBody": {"required": True, "content": {JSON: {"schema": request_schema}}}
        },
    )
    async def predict(request: Request) -> Response:
        return await respond(request, predict_rows, s.max_body_bytes)

    @app.post(
        PREDICT_IMAGE,
        tags=["predict"],
        summary="Predict a digit from a PNG/JPEG",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def predict_image(request: Request) -> Response:
        return await respond(request, predict_png, s.max_image_bytes)


def _install_metadata(app: FastAPI, state: ServiceState) -> None:
    s = state.settings

    @app.get("/metadata", tags=["model"], summary="The served model's card (without samples)")
    async def metadata() -> Response:
        card = state.require_model().card.model_dump(exclude={"golden", "reference"})
        card["max_batch"] = s.max_batch
        return json_response(card)


def create_app(
    settings: ServingSettings,
    *,
    needs_model: bool = True,
    extend: Callable[[FastAPI, ServiceState], None] | None = None,
    handlers: Handlers | None = None,
) -> FastAPI:
    """Build a service. `extend(app, state)` lets a pattern add routes and readiness checks;
    `handlers(state)` replaces the handlers of /predict or /predict/image (same schemas).
    With `require_contract` the server takes OIP tensors only (serving/oip.py)."""
    from serving.oip import install_oip

    state = ServiceState(settings, needs_model=needs_model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(state.load_model()) if needs_model else None
        jobs: list[asyncio.Task[None]] = [
            asyncio.create_task(start()) for start in state.background
        ]
        yield
        if task is not None:
            task.cancel()
        state.draining = True
        if jobs:
            _done, late = await asyncio.wait(jobs, timeout=settings.graceful_timeout_seconds)
            for job in late:
                job.cancel()

    # FastAPI's native OpenTelemetry hook re-checks its providers on every request; metrics
    # here are Prometheus (serving/metrics.py), so it stays off unless MLSP_OTEL is set.
    otel = settings.otel
    app = FastAPI(
        title=f"ml-system-patterns: {settings.pattern}",
        version="0.1.0",
        lifespan=lifespan,
        description=(__doc__ or "").split("\n\n")[1],
        telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    app.state.service = state
    _install_error_handlers(app)
    _install_health(app, state)
    fast_routes: dict[tuple[str, str], FastRoute] = {}
    if needs_model and not settings.require_contract:
        routes = {PREDICT: predict_handler(state), PREDICT_IMAGE: image_handler(state)}
        routes.update(handlers(state) if handlers is not None else {})
        _install_model_routes(app, state, routes)
        if settings.fast_path:
            limits = {PREDICT: settings.max_body_bytes, PREDICT_IMAGE: settings.max_image_bytes}
            for path, handler in routes.items():
                fast_routes[("POST", path)] = FastRoute(path, handler, limits[path])
    if needs_model:
        _install_metadata(app, state)
        install_oip(app, state)
    if extend is not None:
        extend(app, state)
    access_log = AccessLog(settings.service, settings.pattern) if settings.access_log else None
    app.state.access_log = access_log
    app.add_middleware(
        RequestContextMiddleware,
        service=settings.service,
        access_log=access_log,
        fast_routes=fast_routes,
        admission=Admission(settings.max_inflight),
    )
    return app
