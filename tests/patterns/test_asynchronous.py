"""asynchronous against a real redis-server: the queue's guarantees, then the processes.

Library level (serving/queue.py): a duplicate delivery stores one result, the backlog bound,
rejected input. Process level (`start_pattern`): the HTTP contract, `kill -9` of a worker in
the middle of a job, a poison job, Redis down.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from patterns.runner import RunningPattern, free_port, start_pattern
from serving.queue import JobQueue, QueueFull, QueueSettings, Rejected, Worker
from serving.redis_client import connect
from tests.conftest import RedisServer, spawn_server

pytestmark = pytest.mark.slow


def golden(data_dir: Path, model: str = "digits-svc") -> list[dict[str, Any]]:
    card = json.loads((data_dir / "models" / model / "model.json").read_text())
    return card["golden"]  # type: ignore[no-any-return]


def wait_job(url: str, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """The job once it is no longer pending (or as it is after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/jobs/{job_id}").json()
        if job["status"] != "pending" or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.05)


def kill_worker_mid_job(
    run: RunningPattern, url: str, job_id: str, module: str, redis_url: str, data_dir: Path
) -> tuple[dict[str, Any], int]:
    """`kill -9` the pattern's worker once it holds `job_id`, start a replacement (a new pod)
    that reclaims it after the visibility timeout; (the job once it ended, the replacement's
    exit code after SIGTERM)."""
    deadline = time.monotonic() + 10
    while httpx.get(f"{url}/jobs/{job_id}").json()["attempts"] < 1:  # the worker has it
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.kill("worker")
    env = {
        **os.environ,
        "MLSP_REDIS_URL": redis_url,
        "MLSP_MODEL_DIR": str(data_dir / "models" / "digits-svc"),
        "MLSP_PORT": str(free_port()),
        "MLSP_VISIBILITY_TIMEOUT_SECONDS": "1",
        "MLSP_RECLAIM_INTERVAL_SECONDS": "0.3",
        "MLSP_DRAIN_DELAY_SECONDS": "0",
    }
    replacement = subprocess.Popen(
        [sys.executable, "-m", module],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        job = wait_job(url, job_id, timeout=30)
    finally:
        replacement.send_signal(signal.SIGTERM)
        code = replacement.wait(30)
    return job, code


# --- the queue library --------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_job_delivered_twice_stores_exactly_one_result(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[bool, bool, dict[str, Any] | None, int]:
        settings = QueueSettings(visibility_timeout_seconds=0.05)
        q = JobQueue(connect(redis_server.url), "qtest", settings)
        await q.setup()
        job_id, _ = await q.submit({"kind": "instances", "input": b"{}"})
        slow = await q.begin(await q.read("slow", 10, 100))  # a worker that stalls...
        await asyncio.sleep(0.1)
        fast = await q.begin(await q.reclaim("fast", 10))  # ...so another one takes over
        assert [d.job_id for d in slow] == [d.job_id for d in fast] == [job_id]
        first = await q.complete(fast[0], {"answer": "fast"})
        second = await q.complete(slow[0], {"answer": "slow"})  # the stalled one wakes up
        job = await q.get(job_id)
        depth, pending = await q.stats()
        await q.client.aclose()
        return first, second, job, depth + pending

    first, second, job, left = run(scenario())
    assert (first, second) == (True, False)
    assert job is not None and job["result"] == {"answer": "fast"} and job["attempts"] == 2
    assert left == 0  # acknowledged and deleted: nothing to reclaim, no input kept


def test_the_backlog_is_bounded_and_nothing_is_trimmed(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[int, int]:
        q = JobQueue(connect(redis_server.url), "qfull", QueueSettings(max_queue=3))
        for _ in range(3):
            await q.submit({"kind": "instances", "input": b"{}"})
        with pytest.raises(QueueFull) as full:
            await q.submit({"kind": "instances", "input": b"{}"})
        assert full.value.status_code == 503 and full.value.code == "queue_full"
        depth = int(await q.client.xlen(q.stream))
        keys = len([k async for k in q.client.scan_iter(f"{q.prefix}job:*")])
        await q.client.aclose()
        return depth, keys

    assert run(scenario()) == (3, 3)  # the refused job left no trace; none was dropped


def test_rejected_input_fails_at_once_without_retry_or_dead_letter(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> tuple[dict[str, Any] | None, int]:
        q = JobQueue(connect(redis_server.url), "qbad", QueueSettings())
        await q.setup()
        job_id, _ = await q.submit({"kind": "instances", "input": b"[]"})

        async def handler(batch: list[Any]) -> list[Any]:
            return [Rejected("instances[0]: expected 64 features, got 3") for _ in batch]

        worker = Worker(q, handler, consumer="w")
        await worker.process(await q.read("w", 10, 100))
        job, dead = await q.get(job_id), int(await q.client.xlen(q.dead))
        await q.client.aclose()
        return job, dead

    job, dead = run(scenario())
    assert job is not None and job["status"] == "failed" and job["attempts"] == 1
    assert "instances[0]" in job["error"] and dead == 0


# --- the processes ------------------------------------------------------------------------


@pytest.fixture
def pattern(
    data_dir: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, request: Any
) -> Iterator[RunningPattern]:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    env = {
        "MLSP_VISIBILITY_TIMEOUT_SECONDS": "1",
        "MLSP_RECLAIM_INTERVAL_SECONDS": "0.3",
        **getattr(request, "param", {}),
    }
    with start_pattern("asynchronous", data_dir=data_dir, env=env) as run:
        yield run


def test_submit_poll_and_the_http_contract(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    api = pattern.url("api")
    g = golden(data_dir)[0]
    resp = httpx.post(f"{api}/jobs", json={"instances": [g["input"]]})
    assert resp.status_code == 202
    job_id = resp.json()["job_id"]
    assert uuid.UUID(job_id).version == 4 and resp.headers["location"] == f"/jobs/{job_id}"
    job = wait_job(api, job_id)
    assert job["status"] == "done" and job["attempts"] == 1
    assert job["result"]["predictions"][0]["label"] == g["label"]
    assert job["result"]["model"]["name"] == "digits-svc"
    r = redis.Redis.from_url(redis_server.url)
    ttl = r.ttl(f"mlsp:asynchronous:job:{job_id}")
    assert 0 < ttl <= 3600
    assert r.xlen("mlsp:asynchronous:jobs") == 0  # done entries are deleted, never trimmed
    # the final answer is pushed too (server-sent events)
    events = httpx.get(f"{api}/jobs/{job_id}/events").text
    assert events.startswith("event: final\n") and job_id in events
    # ids, bad input, idempotency
    assert httpx.get(f"{api}/jobs/not-a-uuid").status_code == 400
    assert httpx.get(f"{api}/jobs/{uuid.uuid4()}").status_code == 404
    bad = httpx.post(f"{api}/jobs", json={"instances": [[1.0, 2.0, 3.0]]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "instances[0]"
    once = httpx.post(
        f"{api}/jobs", json={"instances": [g["input"]]}, headers={"Idempotency-Key": "k1"}
    )
    again = httpx.post(
        f"{api}/jobs", json={"instances": [g["input"]]}, headers={"Idempotency-Key": "k1"}
    )
    assert once.json()["job_id"] == again.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = httpx.post(
        f"{api}/jobs",
        json={"instances": [golden(data_dir)[1]["input"]]},
        headers={"Idempotency-Key": "k1"},
    )  # the same key, another body: refused, not the first job replayed
    assert other.status_code == 422 and other.json()["error"]["field"] == "Idempotency-Key"
    assert once.json()["job_id"] in other.json()["error"]["message"]
    # a hash that holds no job (no status) is unknown: 404, never 500
    stray = str(uuid.uuid4())
    r.hset(f"mlsp:asynchronous:job:{stray}", "last_error", "x")
    assert httpx.get(f"{api}/jobs/{stray}").status_code == 404


def test_images_are_accepted_and_scored_by_the_worker(pattern: RunningPattern) -> None:
    import io

    import numpy as np
    from PIL import Image

    img = np.zeros((32, 32), dtype=np.uint8)
    img[4:28, 14:18] = 255  # a "1"
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    api = pattern.url("api")
    resp = httpx.post(f"{api}/jobs", content=buf.getvalue(), headers={"Content-Type": "image/png"})
    assert resp.status_code == 202
    job = wait_job(api, resp.json()["job_id"])
    assert job["status"] == "done" and job["result"]["predictions"][0]["label"] == "1"
    junk = httpx.post(f"{api}/jobs", content=b"GIF89a....", headers={"Content-Type": "image/png"})
    assert junk.status_code == 415


@pytest.mark.parametrize("pattern", [{"MLSP_SIMULATED_LATENCY_MS": "4000"}], indirect=True)
def test_kill_9_of_the_worker_mid_job_still_completes_the_job_once(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    api = pattern.url("api")
    g = golden(data_dir)[1]
    job_id = httpx.post(f"{api}/jobs", json={"instances": [g["input"]]}).json()["job_id"]
    job, code = kill_worker_mid_job(
        pattern, api, job_id, "patterns.asynchronous.worker", redis_server.url, data_dir
    )
    assert code == 0  # the replacement drains and exits cleanly on SIGTERM
    assert job["status"] == "done" and job["attempts"] == 2
    assert job["result"]["predictions"][0]["label"] == g["label"]
    r = redis.Redis.from_url(redis_server.url)
    assert r.xlen("mlsp:asynchronous:dead") == 0 and r.xlen("mlsp:asynchronous:jobs") == 0


@pytest.mark.parametrize(
    "pattern",
    [{"MLSP_SIMULATED_LATENCY_MS": "1500", "MLSP_JOB_TIMEOUT_SECONDS": "0.3"}],
    indirect=True,
)
def test_a_poison_job_ends_failed_and_in_the_dead_letter_stream(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    api = pattern.url("api")
    g = golden(data_dir)[0]
    job_id = httpx.post(f"{api}/jobs", json={"instances": [g["input"]]}).json()["job_id"]
    job = wait_job(api, job_id, timeout=30)
    assert job["status"] == "failed" and job["attempts"] == 3
    assert "gave up after 3 deliveries" in job["error"] and "timed out" in job["error"]
    r = redis.Redis.from_url(redis_server.url)
    dead = r.xrange("mlsp:asynchronous:dead")
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"id"].decode() == job_id and fields[b"attempts"] == b"3"
    assert json.loads(fields[b"input"])["instances"] == [g["input"]]  # the payload is kept
    assert r.xlen("mlsp:asynchronous:jobs") == 0


def test_a_lost_queue_is_rebuilt_and_a_worker_that_cannot_read_is_not_ready(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    api, worker = pattern.url("api"), pattern.url("worker")
    g = golden(data_dir)[0]
    r = redis.Redis.from_url(redis_server.url)
    stream = "mlsp:asynchronous:jobs"

    def submit_and_wait() -> dict[str, Any]:
        resp = httpx.post(f"{api}/jobs", json={"instances": [g["input"]]})
        assert resp.status_code == 202
        return wait_job(api, resp.json()["job_id"], timeout=15)

    assert submit_and_wait()["status"] == "done"
    r.flushall()  # the stream and the group are gone: the worker creates the group again
    assert submit_and_wait()["status"] == "done"
    r.delete(stream)
    assert submit_and_wait()["status"] == "done"
    assert httpx.get(f"{worker}/readyz").status_code == 200
    r.set(stream, "not a stream")  # Redis answers PING, but no read can succeed
    deadline = time.monotonic() + 15
    while (ready := httpx.get(f"{worker}/readyz")).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ready.status_code == 503
    assert any("queue consumer" in reason for reason in ready.json()["reasons"])
    r.delete(stream)
    deadline = time.monotonic() + 15
    while httpx.get(f"{worker}/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert submit_and_wait()["status"] == "done"


def test_the_first_post_after_a_redis_restart_is_accepted(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"MLSP_REDIS_URL": redis_server.url, "MLSP_INPUT_FEATURES": "64"}
    body = {"instances": [[0.0] * 64]}
    with spawn_server("patterns.asynchronous.api", env, tmp_path / "api.log") as api:
        for _ in range(3):  # connections in the pool
            assert httpx.post(f"{api}/jobs", json=body).status_code == 202
        redis_server.stop()
        redis_server.start()
        resp = httpx.post(f"{api}/jobs", json=body, timeout=10)  # nothing else in between
        assert resp.status_code == 202, resp.text
        assert httpx.get(f"{api}{resp.headers['location']}").json()["status"] == "pending"


def test_redis_down_gives_503_naming_it_and_recovers(
    pattern: RunningPattern, data_dir: Path, redis_server: RedisServer
) -> None:
    api = pattern.url("api")
    g = golden(data_dir)[0]
    redis_server.stop()
    started = time.monotonic()
    resp = httpx.post(f"{api}/jobs", json={"instances": [g["input"]]}, timeout=10)
    assert time.monotonic() - started < 3  # bounded by the socket timeouts, never a hang
    assert resp.status_code == 503 and resp.json()["error"]["dependency"] == "redis"
    assert resp.headers["retry-after"]
    poll = httpx.get(f"{api}/jobs/{uuid.uuid4()}", timeout=10)
    assert poll.status_code == 503 and poll.json()["error"]["dependency"] == "redis"
    ready = httpx.get(f"{api}/readyz", timeout=10)
    assert ready.status_code == 503 and "redis" in ready.json()["reasons"][0]
    redis_server.start()
    deadline = time.monotonic() + 15
    while httpx.get(f"{api}/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    resp = httpx.post(f"{api}/jobs", json={"instances": [g["input"]]})
    assert resp.status_code == 202
    assert wait_job(api, resp.json()["job_id"])["status"] == "done"  # the worker is back too
