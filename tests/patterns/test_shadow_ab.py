"""shadow_ab: the proxy in process before a real primary (iris-svc, a process) and a shadow
on a real socket (a stand-in that answers a constant label, fails, or holds each request
until released), its pairs in a real SQLite or PostgreSQL table; then the pattern as real
processes with an identical shadow.

Nothing is timed: a held shadow proves the client is never kept waiting for it by event
order (the client's answer arrives while the shadow still holds the call)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patterns.runner import RunningPattern, start_pattern
from patterns.shadow_ab.log import Thresholds, verdict
from patterns.shadow_ab.proxy import ShadowProxy, ShadowSettings, build, sampled
from tests.conftest import metric, spawn_server
from tests.patterns.test_circuit_breaker import Primary as StandIn

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 2.8, 4.3, 1.3]]


@pytest.fixture(scope="module")
def primary_url(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("primary") / "primary.log"
    env = {"MLSP_MODEL_DIR": str(data_dir / "models" / "iris-svc")}
    with spawn_server("patterns.shadow_ab.backend", env, log) as url:
        yield url


@contextlib.asynccontextmanager
async def running(
    primary_url: str, database_url: str, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, StandIn, ShadowProxy]]:
    shadow = StandIn()
    shadow.server = await asyncio.start_server(shadow.handle, "127.0.0.1", 0)
    config = ShadowSettings(
        primary_url=primary_url,
        shadow_url=shadow.url,
        database_url=database_url,
        service=f"shadow-test-{uuid.uuid4().hex[:6]}",
        access_log=False,
        **settings,
    )
    app = build(config)
    proxy: ShadowProxy = app.state.proxy
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            yield client, shadow, proxy
    shadow.server.close()


async def settle(proxy: ShadowProxy) -> None:
    """Every shadow call finished and every pair written (bounded)."""
    for _ in range(400):
        if not proxy.tasks and proxy.writer.queue.empty():
            await asyncio.sleep(0.6)  # the writer's linger: the batch in hand is flushed
            if proxy.writer.queue.empty():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("shadow calls or pairs still pending")


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shadow.db'}"


def test_the_client_never_waits_for_the_shadow_and_gets_only_the_primarys_answer(
    primary_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with running(primary_url, sqlite_url(tmp_path)) as (client, shadow, proxy):
            shadow.gate.clear()  # the shadow holds every call
            resp = await client.post("/predict", json={"instances": ROWS})
            assert resp.status_code == 200, resp.text
            assert resp.headers["x-shadow"] == "sampled"
            assert resp.json()["model"]["name"] == "iris-svc"
            await shadow.wait_received(1)
            assert proxy.inflight == 1  # the shadow still holds its call: nobody waited
            shadow.gate.set()
            await settle(proxy)
            report = (await client.get("/shadow/report")).json()
            assert report["pairs"] == 3 and report["requests"] == 1

    asyncio.run(main())


def test_shadow_failures_never_reach_the_client_and_are_counted(
    primary_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with running(primary_url, sqlite_url(tmp_path)) as (client, shadow, proxy):
            shadow.mode = "fail"  # 503 from the shadow
            for _ in range(5):
                resp = await client.post("/predict", json={"instances": ROWS[:1]})
                assert resp.status_code == 200, resp.text
            await settle(proxy)
            report = (await client.get("/shadow/report")).json()
            assert report["shadow_error_rate"] == 1.0 and report["agreement"] is None
            assert metric_in(proxy, "mlsp_shadow_calls_total", outcome="error") == 5
            shadow.mode = "garbage"  # a 200 without a prediction for the row
            resp = await client.post("/predict", json={"instances": ROWS[:1]})
            assert resp.status_code == 200
            await settle(proxy)
            assert metric_in(proxy, "mlsp_shadow_calls_total", outcome="error") == 6
            report = (await client.get("/shadow/report")).json()
            assert report["requests"] == 6 and report["shadow_error_rate"] == 1.0

    asyncio.run(main())


def metric_in(proxy: ShadowProxy, name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(name, {"service": proxy.s.service, **labels})
    return value or 0.0


def test_agreement_is_exact_for_a_constant_label_shadow(primary_url: str, tmp_path: Path) -> None:
    """The stand-in always says setosa: agreement is the share of rows the primary calls
    setosa, to the last digit."""

    async def main() -> None:
        async with running(primary_url, sqlite_url(tmp_path)) as (client, _, proxy):
            labels = []
            for row in ROWS * 4:
                answer = (await client.post("/predict", json={"instances": [row]})).json()
                labels.append(answer["predictions"][0]["label"])
            await settle(proxy)
            report = (await client.get("/shadow/report")).json()
            assert report["agreement"] == labels.count("setosa") / len(labels) == 1 / 3
            html = await client.get("/shadow/report", headers={"Accept": "text/html"})
            assert html.headers["content-type"].startswith("text/html")
            assert html.text.count("<svg") == 3 and "insufficient_data" in html.text

    asyncio.run(main())


def test_the_cap_drops_shadow_calls_not_requests(primary_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        url = sqlite_url(tmp_path)
        async with running(primary_url, url, shadow_max_inflight=2) as (client, shadow, proxy):
            shadow.gate.clear()
            seen = []
            for _ in range(3):
                resp = await client.post("/predict", json={"instances": ROWS[:1]})
                assert resp.status_code == 200
                seen.append(resp.headers["x-shadow"])
            assert seen == ["sampled", "sampled", "dropped"]
            assert metric_in(proxy, "mlsp_shadow_dropped_total", reason="cap") == 1
            shadow.gate.set()
            await settle(proxy)

    asyncio.run(main())


def test_a_table_that_is_down_costs_the_pairs_not_the_answers(
    primary_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        dead = "postgresql://postgres@127.0.0.1:1/none"  # nothing listens: every write fails
        async with running(primary_url, dead, connect_timeout_seconds=1) as (client, _, _p):
            resp = await client.post("/predict", json={"instances": ROWS})
            assert resp.status_code == 200
            report = await client.get("/shadow/report")
            assert report.status_code == 503
            assert report.json()["error"]["dependency"] == "shadow_log"
            assert (await client.get("/readyz")).status_code == 200  # soft

    asyncio.run(main())


@pytest.mark.slow
def test_pairs_on_postgresql(primary_url: str, pg_url: str) -> None:
    async def main() -> None:
        async with running(primary_url, pg_url) as (client, _, proxy):
            for _ in range(3):
                await client.post("/predict", json={"instances": ROWS})
            await settle(proxy)
            report = (await client.get("/shadow/report")).json()
            assert report["pairs"] == 9 and report["agreement"] == pytest.approx(3 / 9)

    asyncio.run(main())


def test_sampling_is_by_request_id() -> None:
    ids = [str(uuid.UUID(int=i)) for i in range(10_000)]
    share = sum(sampled(i, 30) for i in ids) / len(ids)
    assert 0.28 < share < 0.32
    assert all(sampled(i, 30) == sampled(i, 30) for i in ids[:100])
    assert not any(sampled(i, 0) for i in ids) and all(sampled(i, 100) for i in ids)


def test_the_verdict_names_each_failed_criterion() -> None:
    t = Thresholds(min_pairs=10)
    good = {
        "requests": 10, "pairs": 10, "agreement": 0.96, "p95_ratio": 1.1, "shadow_error_rate": 0.0,
    }  # fmt: skip
    assert verdict(good, t)[0] == "go"
    assert verdict({**good, "requests": 9, "pairs": 9}, t)[0] == "insufficient_data"
    # a shadow that always fails leaves no pair, and is a no_go, not a lack of data
    failing = {**good, "pairs": 0, "agreement": None, "p95_ratio": None, "shadow_error_rate": 1.0}
    assert verdict(failing, t) == ("no_go", ["shadow errors 100.00% > 1%"])
    decision, reasons = verdict(
        {**good, "agreement": 0.9, "p95_ratio": 1.3, "shadow_error_rate": 0.02}, t
    )
    assert decision == "no_go" and len(reasons) == 3
    assert reasons == [
        "shadow errors 2.00% > 1%",
        "agreement 0.900 < 0.95",
        "shadow p95 1.30x the primary's > 1.2x",
    ]


@pytest.fixture
def identical(data_dir: Path, tmp_path: Path) -> Iterator[RunningPattern]:
    env = {
        "shadow": {"MLSP_MODEL_DIR": str(data_dir / "models" / "iris-svc")},
        "proxy": {
            "MLSP_SHADOW_MIN_PAIRS": "20",
            "MLSP_SHADOW_REPORT_SECONDS": "0.2",
            "MLSP_DATABASE_URL": sqlite_url(tmp_path),
        },
    }
    with start_pattern("shadow_ab", data_dir=data_dir, process_env=env) as run:
        yield run


@pytest.mark.slow
def test_an_identical_shadow_agrees_exactly_and_is_a_go(identical: RunningPattern) -> None:
    proxy = identical.url("proxy")
    with httpx.Client(base_url=proxy, timeout=10) as client:
        for i in range(30):
            resp = client.post("/predict", json={"instances": [ROWS[i % 3]]})
            assert resp.status_code == 200
        for _ in range(100):
            report = client.get("/shadow/report").json()
            if report["pairs"] >= 30:
                break
            time.sleep(0.1)
        assert report["agreement"] == 1.0 and report["mean_abs_dp"] == 0.0
        assert report["shadow_error_rate"] == 0.0
        assert report["verdict"] in {"go", "no_go"}
        if report["verdict"] == "no_go":  # the same model, so only latency can differ
            assert all(r.startswith("shadow p95") for r in report["reasons"]), report
        assert metric(proxy, "mlsp_shadow_agreement") == 1.0
