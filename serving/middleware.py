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
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import metrics
from serving.admission import DEADLINE_HEADER, Admission
from serving.errors import (
    ApiError,
    DeadlineExceeded,
    PayloadTooLarge,
    UnsupportedMediaType,
    internal,
    render,
)
from serving.logs import AccessLog
from serving.protocol import BODY_TIMED_OUT, QUEUED_AT

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


class ClientGone(Exception):
    """The connection ended before the body did (the client left, or serving/protocol.py gave
    up on a body that was not coming: `BODY_TIMED_OUT` in the scope's state)."""


async def read_asgi_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit}", field="body")
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", field="body")
    return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the application a body already read, then the connection's
    (ASGI has no way to put a message back)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


_OCTETS = b"application/octet-stream"


def _accepted(path: str) -> tuple[bytes, ...] | None:
    """The media types a JSON route takes besides JSON, or None for a route that is not one
    (/predict/image and the other upload routes take images, and check them by magic bytes)."""
    if path == "/predict":
        return ()
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return (_OCTETS,)  # the OIP binary tensor extension (serving/tensors.py)
    return None


def media_refusal(path: str, content_type: bytes | None) -> UnsupportedMediaType | None:
    """415 for a body that says it is not JSON on a JSON route (/predict, OIP infer); no
    Content-Type is accepted (read as JSON)."""
    if content_type is None or content_type == _JSON[1]:
        return None
    accepted = _accepted(path)
    if accepted is None:
        return None
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == _JSON[1] or media.endswith(b"+json") or media in accepted:
        return None
    names = " or ".join(m.decode() for m in (_JSON[1], *accepted))
    return UnsupportedMediaType(
        f"Content-Type must be {names} on {path}, got {media.decode('latin-1')!r}",
        field="Content-Type",
    )


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


async def _send_error(send: Send, exc: ApiError, request_id: str, path: str) -> None:
    """An error answered by the middleware itself, in the shape of the route's protocol."""
    await _send_json(send, *render(exc, request_id, path))


def _gone_status(state: dict[str, Any]) -> int:
    """The status logged for a request whose body never came: 408 when serving/protocol.py
    answered that, else 499 (nginx's "client closed request": no answer went out)."""
    return 408 if state.get(BODY_TIMED_OUT) else 499


class Head(NamedTuple):
    request_id: str
    """The client's if valid, else a new one."""
    declared: int | None
    """Content-Length."""
    deadline: bytes | None
    content_type: bytes | None


def _read_headers(scope: Scope) -> Head:
    request_id = ""
    declared: int | None = None
    deadline: bytes | None = None
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == _HEADER:
            if _valid_id(value):
                request_id = value.decode()
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
        elif name == b"content-type":
            content_type = value
        elif name == DEADLINE_HEADER:
            deadline = value
    return Head(request_id or str(uuid.uuid4()), declared, deadline, content_type)


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
        head = _read_headers(scope)
        request_id = head.request_id
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        log_extra: dict[str, Any] = {}
        state["log_extra"] = log_extra
        encoded_id = request_id.encode()
        status = 500
        path = scope["path"]  # until dispatch names the route
        responded = False
        fast = self.fast_routes.get((scope["method"], scope["path"]))

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message["headers"] = [*message.get("headers", ()), (_HEADER, encoded_id)]
            await send(message)

        async def dispatch(body: bytes | None) -> None:
            """Serve the request; `body`: already read (by admission), else None."""
            nonlocal path
            if fast is None:
                try:
                    app_receive = receive if body is None else _replay(body, receive)
                    await self.app(scope, app_receive, send_with_id)
                finally:
                    path = getattr(scope.get("route"), "path", "unmatched")
                return
            path = fast.path
            code, payload, headers = await self._fast(fast, body, receive, head, log_extra)
            await _send_json(send_with_id, code, payload, headers)

        try:
            await self._route(
                scope, receive, head, started, fast, dispatch, send_with_id, lambda: responded
            )
        except ClientGone:  # nobody to answer (or serving/protocol.py answered 408)
            status = _gone_status(state)
        except BaseException:
            if not responded:
                status = 500  # an unhandled error: still counted and logged below
            raise
        finally:
            self._finish(scope, path, status, started, request_id, log_extra)

    async def _route(
        self,
        scope: Scope,
        receive: Receive,
        head: Head,
        started: float,
        fast: FastRoute | None,
        dispatch: Callable[[bytes | None], Awaitable[None]],
        send: Send,
        responded: Callable[[], bool],
    ) -> None:
        """Refuse a body of the wrong type (415), else serve, through admission if it applies."""
        refusal = media_refusal(scope["path"], head.content_type)
        if refusal is not None:
            await _send_error(send, refusal, head.request_id, scope["path"])
            return
        admission = self.admission
        if admission is None or not admission.applies(scope["path"], head.deadline):
            await dispatch(None)
            return
        admit = _Admit(admission, scope, receive, head, started)
        await admit.run(fast, dispatch, send, responded)

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
        body: bytes | None,
        receive: Receive,
        head: Head,
        log_extra: dict[str, Any],
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        request_id = head.request_id
        try:
            if body is None:
                body = await read_asgi_body(receive, route.body_limit, head.declared)
            payload, headers = split_result(await route.handler(body, request_id, log_extra))
            return 200, payload, headers
        except ApiError as exc:
            return render(exc, request_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            return internal(request_id)


class _Admit:
    """One guarded request through admission (serving/admission.py): shed if it queued too
    long, read its body (so a slow upload holds no slot), then shed above the in-flight limit
    or run it within its deadline (504 once it passes)."""

    def __init__(
        self, admission: Admission, scope: Scope, receive: Receive, head: Head, started: float
    ) -> None:
        self.admission, self.scope, self.receive = admission, scope, receive
        self.head, self.started = head, started

    def _queued(self) -> ApiError | None:
        queued_at = self.scope["state"].get(QUEUED_AT)
        if queued_at is None:  # not served by serving/protocol.py (an in-process client)
            return None
        return self.admission.queued_too_long(self.started - queued_at, self.started)

    async def _body(self, fast: FastRoute | None) -> bytes:
        limit = self.admission.body_limit if fast is None else fast.body_limit
        return await read_asgi_body(self.receive, limit, self.head.declared)

    async def run(
        self,
        fast: FastRoute | None,
        dispatch: Callable[[bytes | None], Awaitable[None]],
        send: Send,
        responded: Callable[[], bool],
    ) -> None:
        admission, rid, path = self.admission, self.head.request_id, self.scope["path"]
        rejection = self._queued()
        if rejection is not None:
            await _send_error(send, rejection, rid, path)
            return
        try:
            body = await self._body(fast)
        except PayloadTooLarge as exc:
            await _send_error(send, exc, rid, path)
            return
        left, rejection = admission.admit(self.head.deadline)
        if rejection is not None:
            await _send_error(send, rejection, rid, path)
            return
        admission.inflight += 1
        try:
            async with asyncio.timeout(left):
                await dispatch(body)
        except TimeoutError:
            if responded():
                raise
            late = DeadlineExceeded("the deadline passed while the request was running")
            await _send_error(send, late, rid, path)
        finally:
            admission.inflight -= 1
