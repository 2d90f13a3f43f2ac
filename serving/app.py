"""The FastAPI app factory: the shared API (docs/catalogue.md) on the model contract, and OIP v2.

Routes: POST /predict, POST /predict/image (image models), GET /metadata, /livez, /readyz,
/metrics, and the Open Inference Protocol v2 REST routes (serving/oip.py). Every error leaves as
`{"error": {"code", "message", "request_id"}}` (on /v2, the OIP shape: serving/errors.py); bad
input is a 4xx naming the field, never a 500.

The hot path (/predict) is tuned: the body is validated from raw bytes by pydantic-core, the
response is encoded by orjson, the middleware is raw ASGI, and a small model runs inline on the
event loop (a thread hop costs more than a one-row inference; set MLSP_INFERENCE_OFFLOAD for
slow models). OpenAPI still documents every schema.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from serving import metrics, preprocessing
from serving.admission import Admission
from serving.errors import ApiError, MethodNotAllowed, NotFound, Rendered, internal, render
from serving.inference import (
    ERRORS,
    JSON,
    body_doc,
    encode,
    image_batch,
    invalid_from_pydantic,
    json_response,
    parse_rows,
    prediction_body,
    read_body,
    request_id,
    require_images,
)
from serving.logs import AccessLog
from serving.middleware import (
    FastHandler,
    FastResult,
    FastRoute,
    RequestContextMiddleware,
    split_result,
)
from serving.oip import install_oip
from serving.predictor import Call, Predictor
from serving.schemas import PredictResponse, Readiness
from serving.settings import ServingSettings
from serving.state import ServiceState

log = logging.getLogger("serving")


def _response(rendered: Rendered) -> Response:
    status, body, headers = rendered
    response = Response(body, status_code=status, media_type=JSON)
    for name, value in headers:
        response.headers[name.decode()] = value.decode()
    return response


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _response(render(exc, request_id(request), request.url.path))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return await on_api_error(request, invalid_from_pydantic(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        mapped: ApiError
        if exc.status_code == 404:
            mapped = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            mapped = MethodNotAllowed(
                f"{request.method} is not allowed on {request.url.path}", allow=allow
            )
        else:
            mapped = ApiError(str(exc.detail))
            mapped.status_code, mapped.code = exc.status_code, "http_error"
        return await on_api_error(request, mapped)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": request_id(request)})
        rid = request_id(request)
        response = _response(internal(rid, request.url.path))
        if rid:  # served outside the request-id middleware (Starlette's error middleware)
            response.headers["X-Request-ID"] = rid
        return response

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
        body: dict[str, Any] = {"ready": not reasons, "reasons": reasons}
        if warnings := state.warnings():
            body["warnings"] = warnings
        return json_response(body, 503 if reasons else 200)

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prom() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def answer(call: Call, card_version: str, body: dict[str, Any]) -> FastResult:
    """A prediction's body as the fast path sends it, with the headers the predictor added."""
    call.log["model_version"] = card_version
    payload = encode(body)
    return (payload, call.headers) if call.headers else payload


def predict_handler(state: ServiceState) -> FastHandler:
    """POST /predict: JSON rows -> the predictor's answer, as bytes."""
    s = state.settings

    async def handle(body: bytes, rid: str, log_extra: dict[str, Any]) -> FastResult:
        predictor = state.ready()
        card = predictor.card
        x = parse_rows(body, card, s.max_batch)
        call = Call(rid, log_extra)
        out = await predictor.predict(x, call)
        return answer(call, card.version, prediction_body(rid, card, out))

    return handle


def image_handler(state: ServiceState) -> FastHandler:
    """POST /predict/image: a PNG/JPEG -> its tensor -> the predictor's answer, with the
    preprocessing version."""

    async def handle(data: bytes, rid: str, log_extra: dict[str, Any]) -> FastResult:
        predictor = state.ready()
        card = require_images(predictor.card)
        call = Call(rid, log_extra)
        out = await predictor.predict(await image_batch(state.settings, data), call)
        body = prediction_body(rid, card, out)
        body["preprocess_version"] = preprocessing.PREPROCESS_VERSION
        return answer(call, card.version, body)

    return handle


PREDICT = "/predict"
PREDICT_IMAGE = "/predict/image"


def _install_model_routes(
    app: FastAPI, state: ServiceState, handlers: dict[str, FastHandler]
) -> None:
    s = state.settings
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
        openapi_extra=body_doc(rows=True),
    )
    async def predict(request: Request) -> Response:
        return await respond(request, predict_rows, s.max_body_bytes)

    @app.post(
        PREDICT_IMAGE,
        tags=["predict"],
        summary="Predict a digit from a PNG/JPEG",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra=body_doc(rows=False, images=True),
    )
    async def predict_image(request: Request) -> Response:
        return await respond(request, predict_png, s.max_image_bytes)


def _install_metadata(app: FastAPI, state: ServiceState) -> None:
    s = state.settings

    @app.get("/metadata", tags=["model"], summary="The served model's card (without samples)")
    async def metadata() -> Response:
        card = state.ready().card.model_dump(exclude={"golden", "reference"})
        card["max_batch"] = s.max_batch
        return json_response(card)


class HeadAsGet:
    """HEAD answered wherever GET is (RFC 9110 9.3.2): FastAPI routes GET only, so a HEAD is
    routed as GET on a copy of the scope, and the server (uvicorn, which sees HEAD) sends the
    headers without the body. Written by hand: neither FastAPI nor Starlette offers it for
    APIRoute."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        inner = {**scope, "method": "GET"}
        try:
            await self.app(inner, receive, send)
        finally:
            if "route" in inner:  # for the metrics' route label
                scope["route"] = inner["route"]


def _hoist_defs(node: Any, into: dict[str, Any]) -> None:
    """Move every `$defs` of an inline schema (a pydantic model in `openapi_extra`) into
    components/schemas, where its `$ref`s point."""
    if isinstance(node, dict):
        into.update(node.pop("$defs", {}))
        for value in node.values():
            _hoist_defs(value, into)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, into)


def _self_contained_openapi(app: FastAPI) -> None:
    """An OpenAPI document whose every `$ref` resolves (fuzzers and client generators
    follow them)."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = default()
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            hoisted: dict[str, Any] = {}
            _hoist_defs(doc["paths"], hoisted)
            for name, schema in hoisted.items():
                schemas.setdefault(name, schema)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: ServingSettings,
    *,
    needs_model: bool = True,
    extend: Callable[[FastAPI, ServiceState], None] | None = None,
    predictor: Predictor | None = None,
    predict: Callable[[ServiceState], FastHandler] | None = None,
) -> FastAPI:
    """Build a service. `predictor` answers its predictions (default: the ONNX model in
    MLSP_MODEL_DIR; a pattern passes one wrapping it, such as a cache in front); `predict`
    makes the POST /predict handler when a pattern adds to the answer or acts after it
    (prediction_log: outlier scores, the log entry; default `predict_handler`);
    `extend(app, state)` lets a pattern add routes and readiness checks. With
    `require_contract` the server takes OIP tensors only (serving/oip.py)."""
    state = ServiceState(settings, needs_model=needs_model, predictor=predictor)

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
        rows = (predict or predict_handler)(state)
        routes = {PREDICT: rows, PREDICT_IMAGE: image_handler(state)}
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
    _self_contained_openapi(app)
    access_log = AccessLog(settings.service, settings.pattern) if settings.access_log else None
    app.state.access_log = access_log
    app.add_middleware(HeadAsGet)
    app.add_middleware(
        RequestContextMiddleware,
        service=settings.service,
        access_log=access_log,
        fast_routes=fast_routes,
        admission=Admission.from_settings(settings),
    )
    return app
