"""serving/h1.py against real sockets: a tiny asyncio HTTP server whose behaviour each test sets
(keep-alive, chunked bodies, closing idle connections, never answering)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from patterns.runner import free_port
from serving.h1 import ConnectFailed, Pool, ProtocolError, ReadTimeout

Answer = Callable[[bytes], Awaitable[bytes | None]]


async def serve(
    answer: Answer, *, close_after: bool = False
) -> tuple[asyncio.Server, str, list[int]]:
    """A server calling `answer(request head)` per request; counts connections.
    `close_after`: drop each connection after one answer, without saying so."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                out = await answer(head)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", connections


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


def test_keep_alive_reuses_one_connection_and_sends_headers_and_body() -> None:
    seen: list[bytes] = []

    async def answer(head: bytes) -> bytes:
        seen.append(head)
        return ok()

    async def main() -> None:
        server, url, connections = await serve(answer)
        pool = Pool(url)
        for _ in range(5):
            resp = await pool.request(
                "POST", "/predict", body=b"{}", headers={"X-Request-ID": "abc"}, seconds=2
            )
            assert (resp.status, resp.body) == (200, b'{"ok":true}')
        assert len(connections) == 1
        assert seen[0].startswith(b"POST /predict HTTP/1.1\r\n")
        assert b"X-Request-ID: abc" in seen[0] and b"Content-Length: 2" in seen[0]
        server.close()

    asyncio.run(main())


def test_chunked_bodies_and_connection_close() -> None:
    async def answer(head: bytes) -> bytes:
        if b"/chunked" in head:
            return (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        return ok(extra=b"Connection: close\r\n")

    async def main() -> None:
        server, url, connections = await serve(answer)
        pool = Pool(url)
        assert (await pool.request("GET", "/chunked", seconds=2)).body == b"hello world"
        await pool.request("GET", "/close", seconds=2)
        await pool.request("GET", "/close", seconds=2)
        assert len(connections) == 2  # the chunked one was reused once; close is honoured
        server.close()

    asyncio.run(main())


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def answer(head: bytes) -> bytes | None:
        return ok()

    async def main() -> None:
        server, url, connections = await serve(answer, close_after=True)
        pool = Pool(url)
        for _ in range(3):  # each reuse finds the connection gone and opens a new one
            assert (await pool.request("GET", "/", seconds=2)).status == 200
        assert len(connections) == 3
        server.close()

    asyncio.run(main())


def test_silence_is_a_read_timeout_and_nothing_listening_is_connect_failed() -> None:
    async def answer(head: bytes) -> bytes | None:
        await asyncio.sleep(5)
        return ok()

    async def main() -> None:
        server, url, _ = await serve(answer)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ReadTimeout):
            await Pool(url).request("GET", "/", seconds=0.2)
        assert loop.time() - started < 1.0
        with pytest.raises(ConnectFailed):
            await Pool(f"http://127.0.0.1:{free_port()}").request("GET", "/", seconds=1)
        server.close()

    asyncio.run(main())


def test_garbage_and_protocol_switches_are_protocol_errors() -> None:
    answers = [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    ]

    async def main() -> None:
        for raw in answers:

            async def answer(head: bytes, raw: bytes = raw) -> bytes:
                return raw

            server, url, _ = await serve(answer)
            with pytest.raises(ProtocolError):
                await Pool(url).request("GET", "/", seconds=1)
            server.close()

    asyncio.run(main())


def test_only_plain_http_urls() -> None:
    with pytest.raises(ValueError):
        Pool("https://example.org")
