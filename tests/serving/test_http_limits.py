"""HTTP limits and overload, against a real server process over raw sockets: slow bodies hold no
in-flight slot and time out, request heads are bounded in size, lines and time, requests that
queued too long are shed, bodies of the wrong type are refused."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from serving.admission import Admission
from serving.errors import error_fields
from serving.preprocessing import render_digit
from tests.conftest import spawn_server

pytestmark = pytest.mark.slow

SERVER = "patterns.synchronous.server"


def env(data_dir: Path, model: str = "digits-lr", **extra: str) -> dict[str, str]:
    return {"MLSP_MODEL_DIR": str(data_dir / "models" / model), "MLSP_ACCESS_LOG": "false", **extra}


def body_of(data_dir: Path, model: str = "digits-lr") -> bytes:
    card = json.loads((data_dir / "models" / model / "model.json").read_text())
    return json.dumps({"instances": [card["golden"][0]["input"]]}).encode()


@contextlib.contextmanager
def server(data_dir: Path, tmp_path: Path, **extra: str) -> Iterator[str]:
    with spawn_server(SERVER, env(data_dir, **extra), tmp_path / "server.log") as url:
        yield url


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def read_all(sock: socket.socket, seconds: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (or `seconds` pass)."""
    sock.settimeout(seconds)
    out = b""
    with contextlib.suppress(OSError):  # a reset after the answer (unread bytes) is a close too
        while chunk := sock.recv(65536):
            out += chunk
    return out


def request(
    path: str, body: bytes = b"", headers: dict[str, str] | None = None, length: int | None = None
) -> bytes:
    size = len(body) if length is None else length
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {size}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def error(raw: bytes) -> dict[str, object]:
    err: dict[str, object] = json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]
    return err


def test_slow_bodies_hold_no_inflight_slot_and_get_408(data_dir: Path, tmp_path: Path) -> None:
    limit = 4
    with server(
        data_dir, tmp_path, MLSP_MAX_INFLIGHT=str(limit), MLSP_BODY_TIMEOUT_SECONDS="2"
    ) as url:
        slow = []
        for _ in range(limit * 2):  # more slow uploads than slots: headers, then one byte
            sock = connect(url)
            sock.sendall(request("/predict", b"{", length=100))
            slow.append(sock)
        time.sleep(0.3)  # the server has read every one of them
        resp = httpx.post(
            f"{url}/predict",
            content=body_of(data_dir),
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 200, resp.text  # the slots are free for real work
        started = time.monotonic()
        answers = [read_all(sock) for sock in slow]
        waited = time.monotonic() - started
        for sock in slow:
            sock.close()
    assert [status(a) for a in answers] == [408] * len(slow), answers[0][:300]
    assert error(answers[0])["code"] == "request_timeout"
    assert b"connection: close" in answers[0].lower()
    assert waited < 6, waited  # 2 s after the headers, swept every 0.5 s


def test_request_heads_are_bounded_in_size_and_lines(data_dir: Path, tmp_path: Path) -> None:
    with server(data_dir, tmp_path) as url:
        body = body_of(data_dir)
        ok = {"Content-Type": "application/json", "X-Pad": "a" * 8000}
        with connect(url) as sock:  # under the limits: served
            sock.sendall(request("/predict", body, ok))
            assert status(sock.recv(65536)) == 200

        with connect(url) as sock:  # one header of 20 KB in one write
            sock.sendall(request("/predict", body, {"X-Big": "a" * 20_000}))
            raw = read_all(sock)
        assert status(raw) == 431 and error(raw)["code"] == "headers_too_large"

        with connect(url) as sock:  # a header that never ends: refused as it streams
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nX-Big: ")
            sent = 0
            with contextlib.suppress(OSError):  # the server closes while we still send
                while sent < 100 << 20:
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            raw = read_all(sock)
        # refused long before the end: the 431, or a reset (a close with our bytes unread
        # discards what the server wrote last)
        assert status(raw) in (431, 0) and sent < 10 << 20, sent

        many = {f"X-H{i}": "1" for i in range(200)}
        with connect(url) as sock:  # 200 header lines
            sock.sendall(request("/predict", body, many))
            raw = read_all(sock)
        assert status(raw) == 431


def test_request_heads_are_bounded_in_time(data_dir: Path, tmp_path: Path) -> None:
    with server(data_dir, tmp_path, MLSP_HEADER_TIMEOUT_SECONDS="1") as url:
        with connect(url) as sock:  # slowloris: a header byte now and then, never the end
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\n")
            started = time.monotonic()
            sock.settimeout(0.3)
            raw = b""
            while not raw and time.monotonic() - started < 10:
                with contextlib.suppress(TimeoutError):
                    sock.sendall(b"X")
                    raw = sock.recv(65536) or b"closed"
            waited = time.monotonic() - started
        assert status(raw) == 408 and waited < 5, (raw[:200], waited)

        with connect(url) as sock:  # a connection that never sends a byte is closed
            started = time.monotonic()
            assert read_all(sock) == b""
            assert time.monotonic() - started < 5


def test_a_request_that_queued_past_the_target_gets_503(data_dir: Path, tmp_path: Path) -> None:
    extra = {"MLSP_QUEUE_TARGET_MS": "50", "MLSP_SIMULATED_LATENCY_MS": "400"}
    with server(data_dir, tmp_path, **extra) as url:
        body = body_of(data_dir)
        with connect(url) as sock:  # pipelined: the second waits 400 ms behind the first
            sock.sendall(request("/predict", body) * 2)
            raw = b""
            while raw.count(b"HTTP/1.1 ") < 2 or not raw.endswith(b"}"):
                raw += sock.recv(65536)
        first, second = (b"HTTP/1.1 " + r for r in raw.split(b"HTTP/1.1 ")[1:])
        assert status(first) == 200
        assert status(second) == 503 and b"retry-after: 1" in second.lower()
        assert error(second)["reason"] == "overloaded"
        # side by side on two connections nothing queues: both served
        with httpx.Client() as a, httpx.Client() as b:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                codes = list(
                    pool.map(lambda c: c.post(f"{url}/predict", content=body).status_code, (a, b))
                )
        assert codes == [200, 200]


def test_json_routes_refuse_other_content_types_with_415(data_dir: Path, tmp_path: Path) -> None:
    png = render_digit([8.0] * 64)
    for fast_path in ("true", "false"):
        with server(data_dir, tmp_path, MLSP_FAST_PATH=fast_path) as url:
            body = body_of(data_dir)
            infer = {
                "inputs": [
                    {
                        "name": "X",
                        "shape": [1, 64],
                        "datatype": "FP32",
                        "data": json.loads(body)["instances"][0],
                    }
                ]
            }
            for path, content in (("/predict", body), ("/v2/models/digits-lr/infer", infer)):
                data = content if isinstance(content, bytes) else json.dumps(content).encode()
                for ctype in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
                    resp = httpx.post(f"{url}{path}", content=data, headers={"Content-Type": ctype})
                    assert resp.status_code == 415, (fast_path, path, ctype, resp.text)
                    err = error_fields(resp.json()) or {}  # either shape (OIP on /v2)
                    assert err["field"] == "Content-Type" and ctype in err["message"]
                for ctype in ("application/json", "application/json; charset=utf-8", None):
                    headers = {"Content-Type": ctype} if ctype else {}
                    resp = httpx.post(f"{url}{path}", content=data, headers=headers)
                    assert resp.status_code == 200, (fast_path, path, ctype, resp.text)
            image = httpx.post(  # the upload route still takes images
                f"{url}/predict/image", content=png, headers={"Content-Type": "image/png"}
            )
            assert image.status_code == 200, image.text


def test_codel_sheds_past_the_interval_and_past_the_target_once_the_queue_stands() -> None:
    adm = Admission(None, queue_target=0.005, queue_interval=0.1)
    assert adm.queued_too_long(0.05, now=1.0) is None  # a burst: under the interval
    assert adm.queued_too_long(0.2, now=1.01) is not None  # past the interval: always
    assert adm.queued_too_long(0.02, now=1.05) is None
    # the interval ends with its shortest wait (20 ms) above the target: the queue stands
    assert adm.queued_too_long(0.02, now=1.11) is not None
    assert adm.queued_too_long(0.001, now=1.15) is None
    # that interval had a wait under the target: back to shedding only past the interval
    assert adm.queued_too_long(0.02, now=1.22) is None
    assert Admission(None).queued_too_long(10.0, now=1.0) is None  # off unless a target is set
