"""sync_async as real processes (fast, worker, proxy) against a private redis-server.

The heavy model is made to take 2 s (MLSP_SIMULATED_LATENCY_MS on the worker): the fast answer
must arrive well before it, and the final one by polling and by server-sent events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patterns.runner import RunningPattern, start_pattern
from tests.conftest import RedisServer
from tests.patterns.test_asynchronous import golden, kill_worker_mid_job, wait_job

pytestmark = pytest.mark.slow

HEAVY_MS = 2000


@pytest.fixture
def pattern(
    data_dir: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningPattern]:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    env = {"MLSP_VISIBILITY_TIMEOUT_SECONDS": "1", "MLSP_RECLAIM_INTERVAL_SECONDS": "0.3"}
    heavy = {"worker": {"MLSP_SIMULATED_LATENCY_MS": str(HEAVY_MS)}}
    with start_pattern("sync_async", data_dir=data_dir, env=env, process_env=heavy) as run:
        yield run


def rows(data_dir: Path, n: int = 1) -> list[list[float]]:
    return [g["input"] for g in golden(data_dir)[:n]]


def test_the_fast_answer_arrives_while_the_heavy_model_works(
    pattern: RunningPattern, data_dir: Path
) -> None:
    proxy = pattern.url("proxy")
    with httpx.Client() as c:
        c.post(f"{proxy}/predict", json={"instances": rows(data_dir)})  # warm the connection
        started = time.perf_counter()
        resp = c.post(f"{proxy}/predict", json={"instances": rows(data_dir)})
        elapsed = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert elapsed < 0.2, elapsed  # the spec's bound; the heavy model needs 2 s
    assert body["fast"]["model"]["name"] == "digits-lr"
    assert body["final_url"] == f"/jobs/{body['job_id']}"
    assert httpx.get(f"{proxy}{body['final_url']}").json()["status"] == "pending"
    # pushed: the event stream ends with the final answer
    events = httpx.get(f"{proxy}{body['events_url']}", timeout=30).text.split("\n\n")
    assert events[0].startswith("event: pending")
    final = json.loads(events[1].split("data: ", 1)[1])
    assert events[1].startswith("event: final") and final["status"] == "done"
    result = final["result"]
    assert result["model"]["name"] == "digits-svc"
    heavy = [p["label"] for p in result["predictions"]]
    fast = [p["label"] for p in body["fast"]["predictions"]]
    assert result["fast_labels"] == fast and result["revised"] == (heavy != fast)
    # polled: the same final answer
    assert wait_job(proxy, body["job_id"])["result"] == result
    metrics = httpx.get(f"{pattern.url('worker')}/metrics").text
    assert 'mlsp_revisions_total{pattern="sync_async"' in metrics


def test_killing_the_worker_still_completes_the_job(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    proxy = pattern.url("proxy")
    job_id = httpx.post(f"{proxy}/predict", json={"instances": rows(data_dir)}).json()["job_id"]
    job, _ = kill_worker_mid_job(
        pattern, proxy, job_id, "patterns.sync_async.worker", redis_server.url, data_dir
    )
    assert job["status"] == "done" and job["attempts"] == 2 and "revised" in job["result"]


def test_redis_down_still_gives_the_fast_answer(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    proxy = pattern.url("proxy")
    redis_server.stop()
    resp = httpx.post(f"{proxy}/predict", json={"instances": rows(data_dir)}, timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert body["final"] == "unavailable" and body["job_id"] is None
    assert body["fast"]["predictions"][0]["label"]
    assert httpx.get(f"{proxy}/readyz").status_code == 200  # a soft dependency


def test_fast_model_down_gives_202_and_the_final_answer_later(
    pattern: RunningPattern, data_dir: Path
) -> None:
    proxy = pattern.url("proxy")
    pattern.kill("fast")
    resp = httpx.post(f"{proxy}/predict", json={"instances": rows(data_dir)}, timeout=10)
    assert resp.status_code == 202 and resp.json()["fast"] is None
    job = wait_job(proxy, resp.json()["job_id"], timeout=30)
    assert job["status"] == "done" and "revised" not in job["result"]
    bad = httpx.post(f"{proxy}/predict", json={"instances": [[1.0]]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "instances[0]"


def test_an_image_that_cannot_be_decoded_is_a_400_and_no_job(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    import redis

    from serving.preprocessing import render_digit

    proxy = pattern.url("proxy")
    truncated = render_digit([8.0] * 64)[:60]  # a valid PNG header, the pixels cut off
    streams = redis.Redis.from_url(redis_server.url).keys("*")
    resp = httpx.post(
        f"{proxy}/predict/image", content=truncated, headers={"Content-Type": "image/png"}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["field"] == "body" and "decode" in resp.json()["error"]["message"]
    assert redis.Redis.from_url(redis_server.url).keys("*") == streams  # nothing enqueued
