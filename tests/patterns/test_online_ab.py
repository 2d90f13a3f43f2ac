"""online_ab: the assignment rule and the statistics (seeded, no process), then the proxy in
process before two variant stand-ins on real sockets with its tables in SQLite (and once in
PostgreSQL): stickiness across a change of weights, outcomes, the kill switch and the
automatic stop; then the pattern as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from patterns.online_ab import stats
from patterns.online_ab.proxy import AbSettings, Experiment, OnlineAb, build, by_weights
from patterns.runner import ROOT, RunningPattern, start_pattern
from tests.patterns.test_circuit_breaker import Primary as StandIn

SHIPPED = ROOT / "manifests/patterns/online_ab/experiment.yaml"
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def test_ten_thousand_users_split_60_40_and_each_keeps_its_variant() -> None:
    exp = Experiment()
    users = [f"user-{i}" for i in range(10_000)]
    share_a = sum(by_weights(exp, u) == "a" for u in users) / len(users)
    assert abs(share_a - 0.60) <= 0.02, share_a
    assert all(by_weights(exp, u) == by_weights(exp, u) for u in users[:500])
    other = Experiment(name="another")  # another experiment: an independent split
    same = sum(by_weights(exp, u) == by_weights(other, u) for u in users) / len(users)
    assert 0.45 < same < 0.60  # independent 60/40 splits agree on 0.6^2 + 0.4^2 = 52%


def simulate(seed: int, pa: float, pb: float, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_b = rng.random(2 * n) < 0.4
    values = np.where(is_b, rng.random(2 * n) < pb, rng.random(2 * n) < pa).astype(np.float64)
    return values, is_b


def test_b_better_is_found_and_a_against_itself_is_not_at_any_look() -> None:
    values, is_b = simulate(7, 0.30, 0.40)
    fixed = stats.compare(values[~is_b], values[is_b], "rate")
    avp, _, crossing = stats.always_valid_p(values, is_b, tau=0.1)
    assert crossing is not None and crossing > 0  # B led where the test stopped
    assert fixed["p_value"] < 0.05 and avp < 0.05
    assert fixed["ci95"][0] > 0 and stats.decide(avp, fixed["difference"], False, True)[0] == (
        "ship_b"
    )
    # A/A, 200 seeded runs, looked at every 50 outcomes: the always-valid p-value stays above
    # 0.05 in at least 95% of them, whatever the number of looks
    above = sum(stats.always_valid_p(*simulate(s, 0.3, 0.3), tau=0.1)[0] > 0.05 for s in range(200))
    assert above >= 190, above


def test_welch_for_means_and_srm_for_a_broken_split() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 2, 400), rng.normal(10.6, 3, 300)
    result = stats.compare(a, b, "mean")
    assert result["test"] == "Welch t" and result["p_value"] < 0.05
    lo, hi = result["ci95"]
    assert lo < 0.6 < hi
    assert not stats.srm((6000, 4000), (60, 40))["flagged"]
    assert stats.srm((6500, 3500), (60, 40))["flagged"]  # a 65/35 split of 10,000 users


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, database_url: str | None = None, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, StandIn], OnlineAb, Path]]:
    arms = {v: StandIn() for v in ("a", "b")}
    for arm in arms.values():
        arm.server = await asyncio.start_server(arm.handle, "127.0.0.1", 0)
    experiment = tmp_path / "experiment.yaml"
    shutil.copy(SHIPPED, experiment)
    config = AbSettings(
        variant_a_url=arms["a"].url,
        variant_b_url=arms["b"].url,
        database_url=database_url or f"sqlite:///{tmp_path / 'ab.db'}",
        experiment_file=experiment,
        experiment_reload_seconds=0.05,
        service=f"ab-test-{uuid.uuid4().hex[:6]}",
        access_log=False,
        **settings,
    )
    app = build(config)
    ab: OnlineAb = app.state.ab
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            yield client, arms, ab, experiment
    for arm in arms.values():
        assert arm.server is not None
        arm.server.close()


async def variant(client: httpx.AsyncClient, user: str | None) -> str:
    headers = {"X-User-ID": user} if user else {}
    resp = await client.post("/predict", json=ROW, headers=headers)
    assert resp.status_code == 200, resp.text
    return str(resp.headers["x-variant"])


async def swap(ab: OnlineAb, experiment: Path, text: str) -> None:
    before = ab.experiment.digest
    experiment.with_suffix(".new").write_text(text)
    experiment.with_suffix(".new").replace(experiment)
    for _ in range(200):
        if ab.experiment.digest != before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never applied: {ab.experiment.error}")


def test_assignments_stay_when_the_weights_change_and_the_kill_switch_moves_everyone(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with running(tmp_path) as (client, _, ab, experiment):
            users = [f"u{i}" for i in range(300)]
            first = {u: await variant(client, u) for u in users}
            assert 0.5 < list(first.values()).count("a") / 300 < 0.7
            ab.assigned.clear()  # another replica: only the table remembers
            text = SHIPPED.read_text().replace("{a: 60, b: 40}", "{a: 20, b: 80}")
            await swap(ab, experiment, text)
            assert {u: await variant(client, u) for u in users} == first  # sticky
            newcomers = [await variant(client, f"new{i}") for i in range(300)]
            assert newcomers.count("b") / 300 > 0.7  # the new weights, for new users only
            await swap(ab, experiment, text.replace("{a: 20, b: 80}", "{a: 100, b: 0}"))
            assert {await variant(client, u) for u in users} == {"a"}  # kill switch: all A
            report = (await client.get("/ab/report")).json()
            assert report["halted"] == "kill switch: weights 100/0"

    asyncio.run(main())


def test_outcomes_are_joined_once_and_checked(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as (client, _, _ab, _e):
            v = await variant(client, "carol")
            resp = await client.post("/outcomes", json={"user_id": "carol", "value": 1})
            assert resp.status_code == 200 and resp.json() == {
                "experiment": "iris-svc-vs-iris-rf", "variant": v, "replayed": False,
            }  # fmt: skip
            again = await client.post("/outcomes", json={"user_id": "carol", "value": 1})
            assert again.json()["replayed"] is True
            resp = await client.post("/predict", json=ROW)  # no user: the request id stands in
            rid = resp.headers["x-request-id"]
            for _ in range(100):  # the exposure is written off the request path
                out = await client.post("/outcomes", json={"request_id": rid, "value": 0})
                if out.status_code != 404:
                    break
                await asyncio.sleep(0.02)
            assert out.status_code == 200, out.text
            unknown = await client.post("/outcomes", json={"user_id": "nobody", "value": 1})
            assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "user_id"
            bad = await client.post("/outcomes", json={"user_id": "carol", "value": 0.5})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "value"
            both = await client.post(
                "/outcomes", json={"user_id": "carol", "request_id": rid, "value": 1}
            )
            assert both.status_code == 422
            report = (await client.get("/ab/report")).json()
            assert sum(x["outcomes"] for x in report["variants"].values()) == 2
            page = await client.get("/ab/report", headers={"Accept": "text/html"})
            assert page.text.count("<svg") == 3

    asyncio.run(main())


def test_b_failing_stops_the_experiment_everyone_to_a(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path, ab_error_window=20) as (client, arms, ab, _e):
            arms["b"].mode = "fail"
            codes = []
            for i in range(60):
                resp = await client.post("/predict", json=ROW, headers={"X-User-ID": f"x{i}"})
                codes.append((resp.status_code, resp.headers.get("x-variant")))
            assert ab.stopped is not None and "automatic stop" in ab.stopped[1]
            after = [await variant(client, f"x{i}") for i in range(60)]
            assert set(after) == {"a"}
            assert (503, None) in codes or any(c == 503 for c, _ in codes)

    asyncio.run(main())


@pytest.mark.slow
def test_the_tables_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    async def main() -> None:
        async with running(tmp_path, pg_url) as (client, _, _ab, _e):
            for i in range(20):
                user = f"pg{i}"
                await variant(client, user)
                resp = await client.post("/outcomes", json={"user_id": user, "value": i % 2})
                assert resp.status_code == 200, resp.text
            report = (await client.get("/ab/report")).json()
            assert sum(x["users"] for x in report["variants"].values()) == 20

    asyncio.run(main())


@pytest.fixture
def pattern(data_dir: Path, tmp_path: Path) -> Iterator[RunningPattern]:
    env = {"proxy": {"MLSP_DATABASE_URL": f"sqlite:///{tmp_path / 'ab.db'}"}}
    with start_pattern("online_ab", data_dir=data_dir, process_env=env) as run:
        yield run


@pytest.mark.slow
def test_the_same_user_gets_the_same_model(pattern: RunningPattern) -> None:
    proxy = pattern.url("proxy")
    models = {"a": "iris-svc", "b": "iris-rf"}
    with httpx.Client(base_url=proxy, timeout=10) as client:
        for user in ("ann", "ben", "cy"):
            seen = set()
            for _ in range(5):
                resp = client.post("/predict", json=ROW, headers={"X-User-ID": user})
                assert resp.status_code == 200
                seen.add((resp.headers["x-variant"], resp.json()["model"]["name"]))
            ((v, model),) = seen
            assert models[v] == model
