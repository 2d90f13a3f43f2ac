"""serving/queue.py against a private redis-server: the holes outside testing found.

A lost consumer group, a read loop that cannot read, writes that must not re-create an expired
job, pending jobs outliving `result_ttl`, Idempotency-Keys bound to their payload, the first
command after a Redis restart, dead consumers and malformed entries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from serving.errors import NotFound
from serving.queue import (
    GROUP,
    Delivery,
    IdempotencyKeyReused,
    JobQueue,
    QueueSettings,
    Worker,
    payload_digest,
)
from serving.redis_client import connect
from tests.conftest import RedisServer

JOB: dict[str, bytes | str] = {"kind": "instances", "input": b'{"instances": [[1.0]]}'}


def make_queue(server: RedisServer, name: str, **settings: Any) -> JobQueue:
    return JobQueue(connect(server.url), name, QueueSettings(**settings))


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url)


async def answer(batch: list[Delivery]) -> list[dict[str, Any]]:
    return [{"answer": d.job_id} for d in batch]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def ready(worker: Worker, expected: bool = True) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (worker.not_ready() is None) == expected

    return check


def discarded(queue: str, reason: str) -> float:
    labels = {"queue": queue, "reason": reason}
    return REGISTRY.get_sample_value("mlsp_queue_discarded_total", labels) or 0.0


# --- 1. a lost group, a read loop that cannot read --------------------------------------------


@pytest.mark.parametrize("loss", ["flushall", "del"])
def test_a_lost_stream_or_group_is_created_again_and_new_jobs_are_read(
    redis_server: RedisServer, loss: str
) -> None:
    async def scenario() -> list[str]:
        q = make_queue(redis_server, f"qlost{loss}")
        await q.setup()
        await q.submit(JOB)
        assert len(await q.read("w", 10, 100)) == 1
        if loss == "flushall":
            await q.client.flushall()
        else:
            await q.client.delete(q.stream)
        job_id, _ = await q.submit(JOB)  # XADD makes a stream without the group
        got = await q.read("w", 10, 100)  # NOGROUP: the group is created again, then read
        await q.client.aclose()
        return [job_id, *(d.job_id for d in got)]

    job_id, *read = asyncio.run(scenario())
    assert read == [job_id]


def test_readiness_sees_a_worker_whose_reads_fail_and_its_recovery(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> tuple[str | None, dict[str, Any] | None]:
        q = make_queue(redis_server, "qread", reclaim_interval_seconds=0.2)
        worker = Worker(q, answer, consumer="w")
        assert worker.not_ready() is not None  # not started
        stop = False
        task = asyncio.create_task(worker.run(lambda: stop))
        await eventually(ready(worker))
        await q.client.set(q.stream, b"not a stream")  # XREADGROUP and XGROUP: WRONGTYPE
        await eventually(ready(worker, False))
        failing = worker.not_ready()
        await q.client.delete(q.stream)
        await eventually(ready(worker))
        job_id, _ = await q.submit(JOB)
        await eventually(lambda: _done(q, job_id))
        stop = True
        await task
        job = await q.get(job_id)
        await q.client.aclose()
        return failing, job

    failing, job = asyncio.run(scenario())
    assert failing is not None and "cannot read the queue" in failing and "WRONGTYPE" in failing
    assert job is not None and job["status"] == "done"


async def _done(q: JobQueue, job_id: str) -> bool:
    job = await q.get(job_id)
    return job is not None and job["status"] == "done"


# --- 2. no write re-creates an expired job; a hash without status is a 404 --------------------


def test_retry_later_does_not_resurrect_an_expired_job(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[int, dict[str, Any] | None]:
        q = make_queue(redis_server, "qexpired")
        await q.setup()
        job_id, _ = await q.submit(JOB)
        [d] = await q.begin(await q.read("w", 10, 100))
        await q.client.delete(q.job_key(job_id))  # expired (or deleted) while running
        await q.retry_later(d, "TimeoutError: slow")
        exists = int(await q.client.exists(q.job_key(job_id)))
        job = await q.get(job_id)
        await q.client.aclose()
        return exists, job

    assert asyncio.run(scenario()) == (0, None)  # still a 404, not a status-less hash


def test_a_hash_without_status_reads_as_unknown_never_as_an_error(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        q = make_queue(redis_server, "qnostatus")
        job_id = "8f1e6c1a-4a43-4c1e-9a55-3f0f8f1b8f10"
        await q.client.hset(q.job_key(job_id), "last_error", "left by an older release")
        with pytest.raises(NotFound):
            await q.status_or_404(job_id)
        await q.client.aclose()

    asyncio.run(scenario())


# --- 3. a pending job outlives result_ttl -----------------------------------------------------


def test_a_pending_job_is_kept_past_result_ttl_and_expires_only_once_ended(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> tuple[int, dict[str, Any] | None, int, dict[str, Any] | None]:
        q = make_queue(redis_server, "qbacklog", result_ttl_seconds=1)
        await q.setup()
        job_id, _ = await q.submit(JOB)
        ttl_pending = int(await q.client.ttl(q.job_key(job_id)))
        await asyncio.sleep(1.3)  # a backlog older than result_ttl
        waiting = await q.get(job_id)
        [d] = await q.begin(await q.read("w", 10, 100))
        await q.complete(d, {"answer": 1})
        ttl_done = int(await q.client.pttl(q.job_key(job_id)))
        done = await q.get(job_id)
        await q.client.aclose()
        return ttl_pending, waiting, ttl_done, done

    ttl_pending, waiting, ttl_done, done = asyncio.run(scenario())
    assert ttl_pending == -1 and waiting is not None and waiting["status"] == "pending"
    assert done is not None and done["result"] == {"answer": 1} and 0 < ttl_done <= 1000


# --- 4. an Idempotency-Key is bound to its payload --------------------------------------------


def test_an_idempotency_key_replays_the_same_body_and_refuses_another(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> tuple[tuple[str, bool], tuple[str, bool], IdempotencyKeyReused]:
        q = make_queue(redis_server, "qidem")
        first = await q.submit(JOB, "k1")
        again = await q.submit(dict(JOB), "k1")
        other = {**JOB, "input": b'{"instances": [[2.0]]}'}
        with pytest.raises(IdempotencyKeyReused) as reused:
            await q.submit(other, "k1")
        assert int(await q.client.xlen(q.stream)) == 1
        assert 0 < int(await q.client.ttl(f"{q.prefix}idem:k1")) <= 3600
        await q.client.aclose()
        return first, again, reused.value

    first, again, reused = asyncio.run(scenario())
    assert first[1] and again == (first[0], False)
    assert reused.status_code == 422 and reused.extra["field"] == "Idempotency-Key"
    assert first[0] in reused.message
    assert payload_digest({"a": "1", "b": b"2"}) == payload_digest({"b": "2", "a": b"1"})
    assert payload_digest({"ab": "c"}) != payload_digest({"a": "bc"})


# --- 5. the first command after a Redis restart -----------------------------------------------


def test_the_first_submit_after_a_redis_restart_succeeds(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[str, bool]:
        q = make_queue(redis_server, "qrestart")
        await asyncio.gather(*(q.submit(JOB) for _ in range(4)))  # pooled connections
        redis_server.stop()
        redis_server.start()
        try:
            return await q.submit(JOB)  # on a pooled socket the old server closed
        finally:
            await q.client.aclose()

    job_id, created = asyncio.run(scenario())
    assert created and job_id


def test_a_repeated_submit_of_one_job_id_enqueues_it_once(redis_server: RedisServer) -> None:
    async def scenario() -> list[Any]:
        q = make_queue(redis_server, "qrepeat")
        job_id = "0b7c2a36-3c0e-4d5b-8d49-6a7f1f0b2d11"
        keys = [q.stream, q.job_key(job_id), ""]
        args = [job_id, 3600, 100, 0, payload_digest(JOB), "kind", "instances", "input", b"{}"]
        replies = [await q._submit(keys=keys, args=args) for _ in range(2)]  # a retried call
        replies.append(await q.client.xlen(q.stream))
        await q.client.aclose()
        return replies

    assert asyncio.run(scenario())[-1] == 1


# --- 6. dead consumers, malformed entries -----------------------------------------------------


def test_idle_consumers_without_pending_entries_are_removed(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[list[str], set[str]]:
        q = make_queue(redis_server, "qghosts", consumer_idle_seconds=0.2)
        await q.setup()
        await q.submit(JOB)
        assert len(await q.read("holder", 10, 100)) == 1  # idle, but holds a pending entry
        for ghost in ("ghost-1", "ghost-2"):
            await q.client.xgroup_createconsumer(q.stream, GROUP, ghost)
        await asyncio.sleep(0.3)
        worker = Worker(q, answer, consumer="me")
        await q.client.xgroup_createconsumer(q.stream, GROUP, "me")
        await asyncio.sleep(0.3)
        stop = False
        task = asyncio.create_task(worker.run(lambda: stop))
        await eventually(ready(worker))
        stop = True
        await task
        info: Any = await q.client.xinfo_consumers(q.stream, GROUP)
        await q.client.aclose()
        names = {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in info}
        return sorted(names - {"me", "holder"}), names

    left, names = asyncio.run(scenario())
    assert left == [] and names == {"me", "holder"}  # the holder's entry is not orphaned


def test_an_entry_without_a_job_id_is_acknowledged_counted_and_kept_as_a_dead_letter(
    redis_server: RedisServer,
) -> None:
    before = discarded("qmalformed", "malformed")

    async def scenario() -> tuple[list[Delivery], int, int, list[Any]]:
        q = make_queue(redis_server, "qmalformed")
        await q.setup()
        await q.client.xadd(q.stream, {"kind": "instances", "input": b"{}"})  # no `id`
        job_id, _ = await q.submit(JOB)
        got = await q.read("w", 10, 100)
        assert [d.job_id for d in got] == [job_id]
        await q.complete(got[0], {"answer": 1})
        pending = int((await q.client.xpending(q.stream, GROUP))["pending"])
        depth = int(await q.client.xlen(q.stream))
        dead: Any = await q.client.xrange(q.dead)
        again = await q.reclaim("other", 10)  # nothing left to redeliver
        await q.client.aclose()
        return again, pending, depth, dead

    again, pending, depth, dead = asyncio.run(scenario())
    assert again == [] and pending == 0 and depth == 0
    assert len(dead) == 1 and dead[0][1][b"input"] == b"{}" and b"no job id" in dead[0][1][b"error"]
    assert discarded("qmalformed", "malformed") == before + 1


def test_an_entry_whose_job_record_is_gone_is_dead_lettered_not_dropped(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> tuple[list[Delivery], int, list[Any]]:
        q = make_queue(redis_server, "qorphan")
        await q.setup()
        job_id, _ = await q.submit(JOB)
        await q.client.delete(q.job_key(job_id))
        todo = await q.begin(await q.read("w", 10, 100))
        depth = int(await q.client.xlen(q.stream))
        dead: Any = await q.client.xrange(q.dead)
        await q.client.aclose()
        return todo, depth, dead

    todo, depth, dead = asyncio.run(scenario())
    assert todo == [] and depth == 0 and len(dead) == 1 and dead[0][1][b"input"] == JOB["input"]
