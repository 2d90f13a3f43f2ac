"""Raw-ASGI middleware: request id, metrics, the access log, and the fast path.

Written against ASGI directly rather than Starlette's BaseHTTPMiddleware, which wraps every
response in a task and a memory stream. The fast path serves the hottest routes (POST /predict)
straight from here: the same handler the FastAPI route calls, minus routing, dependency solving
and exception middleware, which together cost more than the model itself on a small request.
FastAPI still owns the OpenAPI document and every other route.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import metrics
from serving.admission import DEADLINE_HEADER, Admission
from serving.errors import ApiError, DeadlineExceeded, PayloadTooLarge, internal, render
from serving.logs import AccessLog

log = logging.getLogger("serving")

_HEADER = b"x-request-id"
_MAX_ID = 128
_JSON = (b"content-type", b"application/json")

Headers = list[tuple[bytes, bytes]]
FastResult = bytes | tuple[bytes, Headers]
FastHandler = Callable[[bytes, str, dict[str, Any]], Awaitable[FastResult]]
"""(body, request_id, log_extra) -> JSON response bytes, or (bytes, extra headers) such as
X-Cache; raises ApiError for 4xx/5xx."""


def split_result(result: FastResult) -> tuple[bytes, Headers]:
    return result if isinstance(result, tuple) else (result, [])


@dataclass(frozen=True)
class FastRoute:
    path: str
    handler: FastHandler
    body_limit: int


def _valid_id(raw: bytes) -> bool:
    return 0 < len(raw) <= _MAX_ID and all(33 <= b < 127 for b in raw)


async def read_asgi_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit}", field="body")
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", field="body")
    return body


async def _send_json(
    send: Send, status: int, payload: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(payload)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _send_error(send: Send, exc: ApiError, request_id: str) -> None:
    await _send_json(send, *render(exc, request_id))


def _read_headers(scope: Scope) -> tuple[str, int | None, bytes | None]:
    """The request id (the client's if valid, else a new one), Content-Length, the deadline."""
    request_id = ""
    declared: int | None = None
    deadline: bytes | None = None
    for name, value in scope["headers"]:
        if name == _HEADER:
            if _valid_id(value):
                request_id = value.decode()
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == DEADLINE_HEADER:
            deadline = value
    return request_id or str(uuid.uuid4()), declared, deadline


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        access_log: AccessLog | None,
        fast_routes: dict[tuple[str, str], FastRoute] | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.app = app
        self.admission = admission
        self.service = service
        self.access_log = access_log
        self.fast_routes = fast_routes or {}
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _observe(self, path: str, status: int, elapsed: float) -> None:
        key = (path, str(status))
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and a dict lookup; cache the pair
            children = (
                metrics.REQUESTS.labels(self.service, path, key[1]),
                metrics.REQUEST_DURATION.labels(self.service, path),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, declared, deadline = _read_headers(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        log_extra: dict[str, Any] = {}
        state["log_extra"] = log_extra
        encoded_id = request_id.encode()
        status = 500
        path = "unmatched"
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message["headers"] = [*message.get("headers", ()), (_HEADER, encoded_id)]
            await send(message)

        async def dispatch() -> None:
            nonlocal path
            fast = self.fast_routes.get((scope["method"], scope["path"]))
            if fast is None:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    path = getattr(scope.get("route"), "path", "unmatched")
                return
            path = fast.path
            code, payload, headers = await self._fast(
                fast, receive, declared, request_id, log_extra
            )
            await _send_json(send_with_id, code, payload, headers)

        admission = self.admission
        try:
            if (
                admission is None
                or (deadline is None and admission.max_inflight is None)
                or not admission.guards(scope["path"])
            ):
                await dispatch()
                return
            path = scope["path"]
            await self._admitted(
                admission, deadline, dispatch, send_with_id, request_id, lambda: responded
            )
        except BaseException:
            if not responded:
                status = 500  # an unhandled error: still counted and logged below
            raise
        finally:
            self._finish(scope, path, status, started, request_id, log_extra)

    async def _admitted(
        self,
        admission: Admission,
        deadline: bytes | None,
        dispatch: Callable[[], Awaitable[None]],
        send: Send,
        request_id: str,
        responded: Callable[[], bool],
    ) -> None:
        """Shed the request (503) or run it within its deadline (504 once it passes)."""
        left, rejection = admission.admit(deadline)
        if rejection is not None:
            await _send_error(send, rejection, request_id)
            return
        admission.inflight += 1
        try:
            async with asyncio.timeout(left):
                await dispatch()
        except TimeoutError:
            if responded():
                raise
            late = DeadlineExceeded("the deadline passed while the request was running")
            await _send_error(send, late, request_id)
        finally:
            admission.inflight -= 1

    def _finish(
        self,
        scope: Scope,
        path: str,
        status: int,
        started: float,
        request_id: str,
        log_extra: dict[str, Any],
    ) -> None:
        elapsed = time.perf_counter() - started
        self._observe(path, status, elapsed)
        if self.access_log is not None:
            self.access_log.emit(
                request_id=request_id,
                method=scope["method"],
                route=path,
                status=status,
                latency_ms=round(elapsed * 1000, 3),
                **log_extra,
            )

    async def _fast(
        self,
        route: FastRoute,
        receive: Receive,
        declared: int | None,
        request_id: str,
        log_extra: dict[str, Any],
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            body = await read_asgi_body(receive, route.body_limit, declared)
            payload, headers = split_result(await route.handler(body, request_id, log_extra))
            return 200, payload, headers
        except ApiError as exc:
            return render(exc, request_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            return internal(request_id)
