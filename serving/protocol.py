"""The HTTP/1.1 protocol every server runs: uvicorn's httptools protocol plus the limits it lacks.

uvicorn (0.54) bounds neither the request head nor the time a client takes to send a request:
its httptools protocol has no header size or count limit (`h11_max_incomplete_event_size`
exists for the h11 protocol only, and answers 400), and `timeout_keep_alive` runs only between
requests, so a connection that never finishes its headers or its body stays open forever (and
a 100 MB header is buffered whole). This subclass adds what is missing, in the parser callbacks
uvicorn already calls, and nothing else:

- a request head (request line and headers) over `max_header_bytes`, or more than
  `max_headers` header lines: 431 and the connection closed;
- headers not complete `header_timeout` seconds after the connection opened (or, on a
  kept-alive connection, after the request's first byte): 408 and close; a body not complete
  `body_timeout` seconds after its headers: 408 and close (a plain close once a response has
  started);
- the time a request's headers were parsed, in its ASGI scope's `state` (`QUEUED_AT`): the
  middleware measures how long the request then waited before it ran, and sheds it past the
  queueing target (serving/admission.py).

The deadlines are stamps, not timers: arming and cancelling a timer per request would cost the
hot path more than a float does; the server's tick (serving/server.py, every 0.5 s) calls
`expire` on every connection.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.errors import ApiError, HeadersTooLarge, RequestTimeout, render

QUEUED_AT = "queued_at"
"""Key in `scope["state"]`: time.perf_counter() when the request's headers were parsed."""
BODY_TIMED_OUT = "body_timed_out"
"""Key in `scope["state"]`, set when the protocol gave up on the request's body (408 sent)."""


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 16384
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the refusal is in `_refusal`."""


def raw_response(exc: ApiError) -> bytes:
    """A complete error response that closes the connection, for answers given before (or
    instead of) the application: the project's JSON error shape, no request id yet."""
    status, body, headers = render(exc, None)
    head = [
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
        *(name + b": " + value + b"\r\n" for name, value in headers),
        b"\r\n",
    ]
    return b"".join(head) + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits and read deadlines (module docstring)."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: float | None = None
        """When the head or the body being read must be complete (None: nothing awaited)."""
        self._in_head = False
        """A request has begun and its headers are not complete yet."""
        self._head_bytes = 0
        """Exact size of the head so far (request target and complete header lines)."""
        self._head_streamed = 0
        """Bytes of the chunks that arrived after the one the request began in, all head."""
        self._head_lines = 0
        self._refusal: ApiError | None = None

    @classmethod
    def configured(cls, limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
        """The protocol class uvicorn instantiates per connection, with these limits."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = time.perf_counter() + self.limits.header_timeout

    def data_received(self, data: bytes) -> None:
        was_in_head = self._in_head
        super().data_received(data)
        if was_in_head and self._in_head:  # the whole chunk was head: count it as it streams,
            self._head_streamed += len(data)  # or a header that never ends is buffered whole
            if self._head_streamed > self.limits.max_header_bytes:
                self._refuse(self._too_large())

    def _too_large(self) -> HeadersTooLarge:
        size, lines = self.limits.max_header_bytes, self.limits.max_headers
        return HeadersTooLarge(
            f"request headers exceed {size} bytes or {lines} lines", field="headers"
        )

    def _refuse(self, exc: ApiError) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.write(raw_response(exc))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers 400 to every parser error, ours (raised in a callback) included
        if self._refusal is not None:
            self._refuse(self._refusal)
        else:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._head_streamed = self._head_lines = 0
        if self._deadline is None:  # a kept-alive connection's next request
            self._deadline = time.perf_counter() + self.limits.header_timeout

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_lines += 1
        self._head_bytes += len(name) + len(value) + 4
        limits = self.limits
        if self._head_lines > limits.max_headers or self._head_bytes > limits.max_header_bytes:
            self._refusal = self._too_large()
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_bytes + len(self.url) > self.limits.max_header_bytes:
            self._refusal = self._too_large()
            raise _Refused
        now = time.perf_counter()
        self._in_head = False
        self._deadline = now + self.limits.body_timeout
        self.scope["state"][QUEUED_AT] = now
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._deadline = None

    def expire(self, now: float) -> None:
        """Close the connection if the head or body it awaits is overdue (the server's tick)."""
        deadline = self._deadline
        if deadline is None or now < deadline or self.transport.is_closing():
            return
        self._deadline = None
        if self._in_head:
            self._refuse(RequestTimeout("request headers not received in time", field="headers"))
            return
        cycle = self.cycle
        if cycle is None or cycle.response_started or self.pipeline:
            self.transport.close()  # nothing began yet (idle), or an answer is under way
            return
        cycle.scope["state"][BODY_TIMED_OUT] = True
        cycle.disconnected = True  # the application's reads end, its answer is dropped
        cycle.message_event.set()
        self._refuse(RequestTimeout("request body not received in time", field="body"))
