"""circuit_breaker: the proxy in process in front of a primary on a real socket (a stand-in
that answers, fails or holds each request until released), its breaker on a hand-driven
clock; then the whole pattern as real processes with the primary stopped and frozen under a
bounded load.

Nothing is timed: the clock moves when a test moves it, concurrency is ordered by events, and
waits on real processes are bounded loops that fail with what they saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patterns.circuit_breaker.proxy import BreakerProxy, BreakerProxySettings, build
from patterns.runner import RunningPattern, start_pattern

SETOSA = [5.1, 3.5, 1.4, 0.2]
OTHER = [6.7, 3.0, 5.2, 2.3]


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Primary:
    """A model server stand-in on a real socket: `mode` ok (iris-svc's answer shape), fail
    (503) or refuse (422 with an error body); with `gate` cleared each request waits for it."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.received = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Condition()
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length: *(\d+)", head)
                body = await reader.readexactly(int(match.group(1)) if match else 0)
                async with self.arrived:
                    self.received += 1
                    self.arrived.notify_all()
                await self.gate.wait()
                status, payload = self.answer(json.loads(body)["instances"])
                data = json.dumps(payload).encode()
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n" % status
                    + b"Content-Length: %d\r\n\r\n" % len(data)
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, rows: list[list[float]]) -> tuple[int, dict[str, Any]]:
        if self.mode == "fail":
            return 503, {"error": {"code": "unavailable", "message": "down"}}
        if self.mode == "garbage":  # 200, but no prediction for the row sent
            return 200, {"model": {"name": "iris-svc", "version": "1"}, "predictions": []}
        if self.mode == "refuse":
            error = {"code": "invalid_input", "message": "instances[0]: no", "field": "x"}
            return 422, {"error": error}
        probs = {"setosa": 0.9, "versicolor": 0.05, "virginica": 0.05}
        preds = [{"label": "setosa", "class_id": 0, "probabilities": probs} for _ in rows]
        return 200, {"model": {"name": "iris-svc", "version": "1"}, "predictions": preds}

    async def wait_received(self, n: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.received >= n)


@contextlib.asynccontextmanager
async def running(
    data_dir: Path, clock: Clock, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Primary, BreakerProxy]]:
    primary = Primary()
    primary.server = await asyncio.start_server(primary.handle, "127.0.0.1", 0)
    config = BreakerProxySettings(
        primary_url=primary.url,
        model_dir=data_dir / "models" / "iris-lr",
        service="cb-test",
        access_log=False,
        **settings,
    )
    app = build(config, clock=clock)
    proxy: BreakerProxy = app.state.proxy
    async with app.router.lifespan_context(app):
        if config.fallback_model:
            assert proxy.state is not None
            await proxy.state.loaded.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            yield client, primary, proxy
    primary.server.close()


async def predict(client: httpx.AsyncClient, row: list[float] = SETOSA) -> httpx.Response:
    return await client.post("/predict", json={"instances": [row]})


def test_a_failing_primary_opens_the_breaker_then_probes_close_it(data_dir: Path) -> None:
    async def main() -> None:
        clock = Clock()
        async with running(data_dir, clock) as (client, primary, proxy):
            primary.mode = "fail"
            for _ in range(5):
                resp = await predict(client, OTHER)
                assert resp.status_code == 200, resp.text
                body = resp.json()
                assert (body["source"], body["degraded"]) == ("fallback_model", True)
                assert body["model"]["name"] == "iris-lr"
            assert (await client.get("/breaker")).json()["state"] == "open"
            for _ in range(20):
                assert (await predict(client, OTHER)).json()["reason"] == "breaker open"
            assert primary.received == 5  # no call while open
            primary.mode = "ok"
            clock.now += 10
            for _ in range(3):
                assert (await predict(client)).json()["source"] == "primary"
            shown = (await client.get("/breaker")).json()
            assert shown["state"] == "closed" and primary.received == 8
            assert proxy.breaker.state == "closed"

    asyncio.run(main())


def test_recent_answers_first_then_the_fallback_model(data_dir: Path) -> None:
    async def main() -> None:
        async with running(data_dir, Clock()) as (client, primary, _):
            first = (await predict(client)).json()
            assert (first["source"], first["degraded"]) == ("primary", False)
            primary.mode = "fail"
            again = await client.post("/predict", json={"instances": [[5.10, 3.5, 1.4, 0.2]]})
            body = again.json()  # the same input in float32: the primary's own recent answer
            assert (body["source"], body["degraded"]) == ("cache", True)
            assert body["model"] == {"name": "iris-svc", "version": "1"}
            assert body["predictions"] == first["predictions"]
            assert body["request_id"] == again.headers["x-request-id"] != first["request_id"]
            other = (await predict(client, OTHER)).json()
            assert other["source"] == "fallback_model" and other["model"]["name"] == "iris-lr"

    asyncio.run(main())


def test_no_fallback_left_is_a_503_naming_the_primary_with_retry_after(data_dir: Path) -> None:
    async def main() -> None:
        clock = Clock()
        async with running(data_dir, clock, fallback_model=False) as (client, primary, _):
            primary.mode = "fail"
            for _ in range(5):
                resp = await predict(client)
                assert resp.status_code == 503
            clock.now += 3.5
            resp = await predict(client)
            assert resp.status_code == 503 and resp.headers["retry-after"] == "7"
            error = resp.json()["error"]
            assert error["dependency"] == "primary" and error["reason"] == "open"
            assert "breaker open" in error["message"]

    asyncio.run(main())


def test_bad_input_is_refused_and_never_counts_against_the_primary(data_dir: Path) -> None:
    async def main() -> None:
        async with running(data_dir, Clock()) as (client, primary, proxy):
            resp = await client.post("/predict", json={"instances": [[1.0, 2.0]]})
            assert resp.status_code == 422 and resp.json()["error"]["field"] == "instances[0]"
            resp = await client.post("/predict", json={"rows": []})
            assert resp.status_code == 422 and resp.json()["error"]["field"] == "instances"
            assert primary.received == 0
            primary.mode = "refuse"  # the primary's own 422 is relayed, not a failure
            for _ in range(10):
                resp = await predict(client)
                assert resp.status_code == 422 and resp.json()["error"]["field"] == "x"
            assert proxy.breaker.state == "closed" and proxy.breaker.window.calls == 0

    asyncio.run(main())


def test_an_unusable_answer_is_a_failure_and_a_spent_budget_calls_nobody(data_dir: Path) -> None:
    async def main() -> None:
        async with running(data_dir, Clock()) as (client, primary, proxy):
            primary.mode = "garbage"
            body = (await predict(client)).json()
            assert (body["source"], body["reason"]) == (
                "fallback_model",
                "primary failed: unusable answer",
            )
            assert proxy.breaker.consecutive == 1
            past = {"X-Request-Deadline-Ms": "1000"}  # 1970: spent before it arrived
            resp = await client.post("/predict", json={"instances": [SETOSA]}, headers=past)
            assert resp.status_code == 504 and primary.received == 1
            assert proxy.breaker.consecutive == 1  # not the primary's failure

    asyncio.run(main())


def test_above_max_inflight_the_fallback_answers_without_waiting(data_dir: Path) -> None:
    async def main() -> None:
        async with running(data_dir, Clock(), max_inflight=2) as (client, primary, _):
            primary.gate.clear()  # the primary holds every request
            held = [asyncio.create_task(predict(client)) for _ in range(2)]
            await primary.wait_received(2)
            third = await predict(client)  # answered while both calls are still held
            assert not any(t.done() for t in held) and primary.received == 2
            body = third.json()
            assert third.status_code == 200 and body["source"] == "fallback_model"
            assert body["degraded"] is True and body["reason"] == "bulkhead full"
            primary.gate.set()
            answers = [(await t).json() for t in held]
            assert [a["source"] for a in answers] == ["primary", "primary"]
            assert (await predict(client)).json()["source"] == "primary"

    asyncio.run(main())


# --- the whole pattern as real processes ----------------------------------------------------


class Load:
    """A bounded load: `workers` clients posting in a loop until stopped; every answer is
    kept with the phase it was sent in."""

    def __init__(self, url: str, workers: int = 4) -> None:
        self.url = url
        self.phase = "warm"
        self.answers: list[tuple[str, int, str | None, bool | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(workers)]

    def _run(self, i: int) -> None:
        rows = [SETOSA, OTHER, [5.9, 3.0, 4.2, 1.5], [6.3, 2.5 + i / 10, 5.0, 1.9]]
        with httpx.Client(timeout=10) as client:
            n = 0
            while not self._stop.is_set():
                phase = self.phase
                resp = client.post(f"{self.url}/predict", json={"instances": [rows[n % 4]]})
                body = resp.json() if resp.status_code == 200 else {}
                with self._lock:
                    self.answers.append(
                        (phase, resp.status_code, body.get("source"), body.get("degraded"))
                    )
                n += 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def seen(self, phase: str) -> Counter[tuple[int, str | None]]:
        with self._lock:
            return Counter((s, src) for p, s, src, _ in self.answers if p == phase)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)


def wait_for(check: Any, what: str, *, tries: int = 600) -> Any:
    """Poll `check()` (every 0.1 s, at most `tries` times) until it is truthy."""
    stop = threading.Event()
    last = None
    for _ in range(tries):
        last = check()
        if last:
            return last
        stop.wait(0.1)
    raise AssertionError(f"{what}: never happened (last: {last!r})")


def breaker_state(proxy: str) -> str:
    return str(httpx.get(f"{proxy}/breaker", timeout=5).json()["state"])


@pytest.fixture
def pattern(data_dir: Path, tmp_path: Path) -> Iterator[RunningPattern]:
    knobs = {"MLSP_OPEN_SECONDS": "1", "MLSP_PRIMARY_TIMEOUT_MS": "200"}
    with start_pattern(
        "circuit_breaker",
        data_dir=data_dir,
        supervise=True,
        run_dir=tmp_path / "run",
        process_env={"proxy": knobs},
    ) as run:
        yield run


@pytest.mark.slow
def test_chaos_primary_stopped_then_frozen_no_client_errors(pattern: RunningPattern) -> None:
    proxy = pattern.url("proxy")
    with Load(proxy) as load:
        wait_for(lambda: load.seen("warm")[(200, "primary")] >= 20, "primary answers")
        pattern.stack.hold("primary")  # stopped: SIGTERM, kept down (make stop)
        load.phase = "down"
        wait_for(lambda: breaker_state(proxy) == "open", "breaker open with the primary down")
        mark = load.count()
        wait_for(lambda: load.count() >= mark + 50, "answers while open")
        pattern.stack.release("primary")  # make start
        load.phase = "back"
        wait_for(lambda: load.seen("back")[(200, "primary")] >= 20, "primary answers again")
        assert breaker_state(proxy) == "closed"
        primary = pattern.proc("primary")
        os.kill(primary.pid, signal.SIGSTOP)  # frozen: every call to it times out
        try:
            load.phase = "frozen"
            wait_for(lambda: breaker_state(proxy) == "open", "breaker open, primary frozen")
            mark = load.count()
            wait_for(lambda: load.count() >= mark + 50, "answers while frozen")
        finally:
            os.kill(primary.pid, signal.SIGCONT)
        load.phase = "thawed"
        wait_for(lambda: load.seen("thawed")[(200, "primary")] >= 20, "primary answers after")
        assert breaker_state(proxy) == "closed"
    statuses = Counter(status for _, status, _, _ in load.answers)
    assert statuses == {200: len(load.answers)}, statuses  # not one error for the client
    for phase in ("down", "frozen"):
        sources = load.seen(phase)
        assert sum(sources.values()) >= 50
        assert set(sources) <= {(200, "cache"), (200, "fallback_model")}, (phase, sources)
        degraded = {d for p, _, _, d in load.answers if p == phase}
        assert degraded == {True}
    assert load.seen("thawed")[(200, "primary")] >= 20
