"""A lean keep-alive HTTP/1.1 client for calls between the project's own services.

Written by hand, on purpose: a proxy's cost is its outgoing calls, and httpx spends about
0.8 ms of CPU on each (its models and anyio, measured in this repository), four times what the
model server it calls spends answering. aiohttp would fit but adds about 11 MB to the serving
image, past its 250 MB budget. This is the small part we need: plain `http://` to known
services, keep-alive connections per origin, request bodies with Content-Length, responses
parsed by httptools (the parser uvicorn uses; chunked bodies included), and every call bounded.
Anything else (TLS, redirects, proxies, streaming) goes through serving/http.py (httpx).

Errors: `ConnectFailed` (nothing was sent; safe to retry), `ReadTimeout`, `ProtocolError`.
A connection the server closed while idle (uvicorn closes them after 5 s) is detected and
replaced before use; a request that fails on a reused connection before any byte of the answer
arrives is sent once more on a new one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

_LIMIT = 64 << 20
"""Largest response body accepted (the services answer JSON of a few KB)."""
IDLE_SECONDS = 4.0
"""Idle connections older than this are closed (uvicorn closes its side after 5 s)."""


class H1Error(Exception):
    """The call failed; the message says how."""


class ConnectFailed(H1Error):
    """No connection (refused, unreachable, connect timeout): the request was never sent."""


class ReadTimeout(H1Error):
    """Sent, but no complete answer within the time allowed."""


class ProtocolError(H1Error):
    """The connection broke or the answer was not HTTP/1.1."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    """Lower-case names."""
    body: bytes


@dataclass
class _Parse:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    done: bool = False
    name: bytes = b""

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > _LIMIT:
            raise ProtocolError(f"response body over {_LIMIT} bytes")
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Connections to one `http://host:port` origin, at most `max_connections` at once."""

    def __init__(self, base_url: str, *, max_connections: int = 100) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"serving.h1 takes http://host:port URLs, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._host_header = f"{self.host}:{self.port}".encode()
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def _connect(self, seconds: float) -> _Conn:
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=_LIMIT)
        except TimeoutError:
            raise ConnectFailed(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise ConnectFailed(f"connect to {self.host}:{self.port}: {exc.strerror}") from None
        return _Conn(reader, writer)

    def _idle_conn(self) -> _Conn | None:
        old = time.monotonic() - IDLE_SECONDS
        while self._idle and self._idle[0].idle_since < old:  # oldest first: about to expire
            self._idle.pop(0).close()
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        seconds: float,
        connect_seconds: float = 0.5,
    ) -> Response:
        """One request within `seconds` in all (waiting for a slot and connecting included)."""
        head = [f"{method} {self.prefix}{path} HTTP/1.1".encode(), b"Host: " + self._host_header]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}".encode("latin-1"))
        head.append(b"Content-Length: " + str(len(body)).encode())
        payload = b"\r\n".join(head) + b"\r\n\r\n" + body
        try:
            async with asyncio.timeout(seconds), self._slots:
                conn = self._idle_conn()
                if conn is not None:
                    try:
                        return await self._exchange(conn, payload, fresh=False)
                    except _Stale:
                        pass  # closed by the server while idle: a new connection below
                conn = await self._connect(min(connect_seconds, seconds))
                return await self._exchange(conn, payload, fresh=True)
        except TimeoutError:
            raise ReadTimeout(
                f"no answer from {self.host}:{self.port} in {seconds:.3f} s"
            ) from None

    async def _exchange(self, conn: _Conn, payload: bytes, *, fresh: bool) -> Response:
        parsed = _Parse()
        parser = httptools.HttpResponseParser(parsed)
        received = False
        try:
            conn.writer.write(payload)
            while not parsed.done:
                data = await conn.reader.read(65536)
                if not data:
                    raise ConnectionResetError("connection closed by the server")
                received = True
                parser.feed_data(data)
        except (
            OSError,
            httptools.HttpParserError,
            httptools.HttpParserUpgrade,  # a 101 or CONNECT answer: not HTTP/1.1 we can use
            ProtocolError,
        ) as exc:
            conn.close()
            if not fresh and not received and isinstance(exc, OSError):
                raise _Stale from None
            raise ProtocolError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:  # cancelled or timed out mid-answer: the connection is unusable
            conn.close()
            raise
        status = parser.get_status_code()
        # (httptools' should_keep_alive() is False once the message is complete: decide here)
        reusable = (
            parser.get_http_version() == "1.1" and parsed.headers.get("connection") != "close"
        )
        if reusable and conn.usable():
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        return Response(status, parsed.headers, b"".join(parsed.chunks))

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class _Stale(Exception):
    """A reused connection failed before any byte of the answer: send again on a new one."""
