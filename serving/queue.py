"""A durable job queue on Redis Streams with exactly-once results (asynchronous, sync_async,
prediction_log).

Keys (prefix `mlsp:<pattern>:`): `jobs` (the stream), `dead` (dead letters), `job:{id}` (a hash:
status, attempts, result or error), `idem:{key}` (Idempotency-Key: the job id and the sha256 of
its payload), and the channel `done:{id}` (published when a job ends).

- Enqueue happens before the API answers 202: one Lua script checks the Idempotency-Key and the
  backlog, then writes the hash (`pending`) and the XADD together. A script, not MULTI/EXEC,
  because those checks must branch and MULTI/EXEC cannot. The script is a no-op when its job id
  already exists, so the client's one retry on a broken connection (serving/redis_client.py)
  cannot enqueue a job twice.
- A pending job never expires: its hash gets its TTL (`result_ttl`) only when it reaches a
  terminal state, so a backlog older than `result_ttl` still ends in a result or a dead letter,
  never in a silent 404. (The backlog is bounded by `max_queue`, so pending hashes are too.)
- No write re-creates a job that is gone: every update is a script that checks the job's
  status first (an expired job stays a 404).
- An Idempotency-Key is bound to the sha256 of the payload: the same key with another body is
  refused (IdempotencyKeyReused, 422). A key lives `result_ttl` seconds from its first use, in
  the pattern's key prefix (one namespace for every client of that pattern).
- Workers read with XREADGROUP in group `workers`. A job's payload travels in its stream entry,
  so a worker needs no extra round trip to fetch it and XDEL leaves no input behind. A lost
  group (FLUSHALL, the stream deleted: NOGROUP) is created again on the spot.
- Completion is one Lua script: store `done` + result only if the job is not already terminal,
  then XACK and XDEL. A job delivered twice (a slow worker and a reclaim) still shows its client
  exactly one result.
- Every `reclaim_every` seconds a worker XAUTOCLAIMs entries idle longer than
  `visibility_timeout`: the jobs of a crashed worker run again (attempts + 1). In the same pass
  it removes consumers idle past `consumer_idle` that hold no pending entry (dead pods).
- Bad input fails at once. Any other error leaves the entry unacknowledged for a retry; the
  delivery that reaches `max_attempts` moves it to `dead` (with its payload: nothing a user sent
  is dropped silently), marks it `failed` and acknowledges it. An entry that cannot run (no job
  id, or its job record is gone) is acknowledged too, copied to `dead` and counted
  (`mlsp_queue_discarded_total`), never left to be redelivered forever.
- No MAXLEN trimming, ever: trimming drops jobs nobody processed. The backlog is bounded at
  enqueue instead (`max_queue` -> 503 queue_full).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import Field
from redis import exceptions as rexc

from serving import metrics
from serving.errors import BadRequest, InvalidInput, NotFound, Unavailable
from serving.http import back_off
from serving.redis_client import OUTAGE
from serving.settings import ConsumerSettings, RedisSettings, ServingSettings

log = logging.getLogger("serving.queue")

GROUP = "workers"
PENDING, DONE, FAILED = "pending", "done", "failed"


class QueueSettings(ServingSettings, RedisSettings, ConsumerSettings):
    """Settings of a queue API or worker (MLSP_*; book defaults where the book has one)."""

    visibility_timeout_seconds: float = Field(30.0, gt=0)
    """An entry unacknowledged this long is reclaimed by another worker."""
    job_timeout_seconds: float = Field(20.0, gt=0)
    """Most time one delivery may take; past it the delivery counts as a transient failure."""
    max_attempts: int = Field(3, ge=1)
    """Deliveries before a job is dead-lettered."""
    result_ttl_seconds: int = Field(3600, ge=1)
    """How long a finished job (done or failed) and its result are kept, and an Idempotency-Key
    from its first use; a pending job is kept until it ends."""
    max_queue: int = Field(10_000, ge=1)
    """Backlog above which enqueue answers 503 queue_full."""
    reclaim_interval_seconds: float = Field(5.0, gt=0)
    """How often a worker looks for entries whose worker died (XAUTOCLAIM)."""
    worker_batch: int = Field(32, ge=1, le=1024)
    """Jobs a worker reads at once (scored in one vectorised model call)."""
    idempotency_key_max: int = 200
    """Longest Idempotency-Key header accepted, in characters (400 above)."""


def job_id_or_400(raw: str) -> str:
    """A canonical UUID4 string, or 400 naming the field."""
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        raise BadRequest(f"job id {raw[:64]!r} is not a UUID", field="job_id") from None
    if parsed.version != 4 or str(parsed) != raw.lower():
        raise BadRequest(f"job id {raw[:64]!r} is not a canonical UUID4", field="job_id")
    return str(parsed)


# KEYS: stream, job hash, idempotency key ("" when none)
# ARGV: job id, ttl, max queue, now ms, payload sha256, then stream field/value pairs
# Returns {1, id} created, {0, id} replayed, {-1, ''} queue full, {-2, id} key reused.
# The job hash has no TTL while pending (it gets one when the job ends).
_SUBMIT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, ARGV[1]} end
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    local id, digest = string.match(existing, '^(%S+) ?(%S*)$')
    if digest ~= '' and digest ~= ARGV[5] then return {-2, id} end
    return {0, id}
  end
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[3]) then return {-1, ''} end
redis.call('HSET', KEYS[2], 'status', 'pending', 'attempts', 0, 'created_ms', ARGV[4])
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], unpack(ARGV, 6))
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[5], 'EX', ARGV[2]) end
return {1, ARGV[1]}
"""

# KEYS: job hash. ARGV: error. Notes a transient failure on a pending job only: a job that
# expired or ended is never re-created by this write.
_NOTE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'last_error', ARGV[1])
return 1
"""

# KEYS: stream. ARGV: group, consumer. Removes the consumer only when it holds no pending
# entry: deleting one that does would orphan its entries (never reclaimed). Returns -1 if kept.
PRUNE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return -1 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
"""

# KEYS: job hash. Returns {attempts, status}: -1 when the job expired, 0 when already terminal.
_BEGIN = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {-1, ''} end
if st ~= 'pending' then return {0, st} end
return {redis.call('HINCRBY', KEYS[1], 'attempts', 1), st}
"""

# KEYS: job hash, stream, dead stream ("" for none)
# ARGV: group, entry id, status, ttl, channel, now ms, n hash pairs, hash pairs..., dead pairs...
# Returns {applied, created_ms}.
_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
local applied = 0
local created = ''
if st == 'pending' then
  local n = tonumber(ARGV[7])
  local pairs = {}
  for i = 8, 7 + 2 * n do pairs[#pairs + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_ms', ARGV[6], unpack(pairs))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  created = redis.call('HGET', KEYS[1], 'created_ms') or ''
  if KEYS[3] ~= '' then
    local dead = {}
    for i = 8 + 2 * n, #ARGV do dead[#dead + 1] = ARGV[i] end
    redis.call('XADD', KEYS[3], '*', unpack(dead))
  end
  redis.call('PUBLISH', ARGV[5], ARGV[3])
  applied = 1
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return {applied, created}
"""


@dataclass
class Delivery:
    """One stream entry handed to a worker."""

    entry_id: bytes
    job_id: str
    fields: dict[bytes, bytes]
    attempts: int = 0

    def get(self, name: str) -> bytes | None:
        return self.fields.get(name.encode())


@dataclass(frozen=True)
class Rejected:
    """A handler's verdict on bad input: the job fails at once, no retry."""

    error: str


Outcome = dict[str, Any] | Rejected
Handler = Callable[[list[Delivery]], Awaitable[Sequence[Outcome]]]
"""Scores a batch of deliveries; one outcome per delivery. Raising means a transient failure
for the whole batch (retried until `max_attempts`)."""


class QueueFull(Unavailable):
    def __init__(self, depth: int) -> None:
        super().__init__(f"queue backlog is {depth} jobs; try again later", reason="queue_full")
        self.code = "queue_full"


class IdempotencyKeyReused(InvalidInput):
    """422: an Idempotency-Key already names a job with another payload."""

    code = "idempotency_key_reused"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            [("Idempotency-Key", f"already used for job {job_id} with a different request body")]
        )


def payload_digest(payload: Mapping[str, bytes | str]) -> str:
    """sha256 of a job's payload (each field's name and value, length-prefixed, in name order):
    what an Idempotency-Key is bound to."""
    h = hashlib.sha256()
    for name in sorted(payload):
        value = payload[name]
        for part in (name.encode(), value.encode() if isinstance(value, str) else value):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


def job_view(job_id: str, raw: Mapping[bytes, bytes]) -> dict[str, Any] | None:
    """The client's view of a job hash; None when it holds no job (no `status`: a record that
    is not a job is unknown, a 404, never a 500)."""
    h = {k.decode(errors="replace"): v for k, v in raw.items()}
    if "status" not in h:
        return None
    attempts = h.get("attempts", b"0")
    out: dict[str, Any] = {
        "job_id": job_id,
        "status": h["status"].decode(errors="replace"),
        "attempts": int(attempts) if attempts.isdigit() else 0,
    }
    if "result" in h:
        out["result"] = orjson.loads(h["result"])
    if "error" in h:
        out["error"] = h["error"].decode(errors="replace")
    return out


async def prune_idle(
    script: Any, stream: str, group: str, consumers: Any, keep: str, idle_ms: float
) -> list[str]:
    """Of `consumers` (XINFO CONSUMERS), remove those idle past `idle_ms` holding no pending
    entry, except `keep`, each with the check-and-delete script PRUNE (registered as `script`).
    Returns their names. The queue's workers and prediction_log's writers (serving/stream.py)."""
    removed = []
    for c in consumers:
        name = c["name"].decode() if isinstance(c["name"], bytes) else str(c["name"])
        if name == keep or int(c["pending"]) or int(c["idle"]) < idle_ms:
            continue
        if await script(keys=[stream], args=[group, name]) == 0:
            removed.append(name)
    return removed


def missing_group(exc: rexc.ResponseError) -> bool:
    """The group is gone (NOGROUP), or the stream was deleted under a blocked read."""
    return str(exc).startswith(("NOGROUP", "UNBLOCKED"))


@dataclass
class JobQueue:
    client: aioredis.Redis
    pattern: str
    settings: QueueSettings
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.prefix = f"mlsp:{self.pattern}:"
        self.stream = f"{self.prefix}jobs"
        self.dead = f"{self.prefix}dead"
        self._submit = self.client.register_script(_SUBMIT)
        self._begin = self.client.register_script(_BEGIN)
        self._finish = self.client.register_script(_FINISH)
        self._note = self.client.register_script(_NOTE)
        self._prune = self.client.register_script(PRUNE)

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def channel(self, job_id: str) -> str:
        return f"{self.prefix}done:{job_id}"

    async def setup(self) -> None:
        """Create the stream and the group (id 0: entries added before the group count)."""
        try:
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except rexc.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):  # it exists; anything else is an error
                raise

    async def _in_group(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`; when the group is gone (FLUSHALL, the stream deleted: NOGROUP, UNBLOCKED),
        create it again and call once more."""
        try:
            return await call()
        except rexc.ResponseError as exc:
            if not missing_group(exc):
                raise
        log.warning("consumer group missing: created again", extra={"stream": self.stream})
        await self.setup()
        return await call()

    # --- producer side ------------------------------------------------------------------------

    async def submit(
        self, payload: Mapping[str, bytes | str], idempotency_key: str | None = None
    ) -> tuple[str, bool]:
        """Enqueue; returns (job id, created). A repeated Idempotency-Key returns the first id
        when the payload is the same, else raises IdempotencyKeyReused."""
        job_id = str(uuid.uuid4())
        idem = f"{self.prefix}idem:{idempotency_key}" if idempotency_key else ""
        args: list[bytes | str | int] = [
            job_id,
            self.settings.result_ttl_seconds,
            self.settings.max_queue,
            int(time.time() * 1000),
            payload_digest(payload),
        ]
        for k, v in payload.items():
            args += [k, v]
        code, value = await self._submit(keys=[self.stream, self.job_key(job_id), idem], args=args)
        value = value.decode() if isinstance(value, bytes) else str(value)
        if code == -1:
            raise QueueFull(self.settings.max_queue)
        if code == -2:
            raise IdempotencyKeyReused(value)
        return value, code == 1

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw: Any = await self.client.hgetall(self.job_key(job_id))
        return job_view(job_id, raw) if raw else None

    async def status_or_404(self, job_id: str) -> dict[str, Any]:
        job = await self.get(job_id_or_400(job_id))
        if job is None:
            raise NotFound(f"job {job_id} is unknown or has expired", field="job_id")
        return job

    async def stats(self) -> tuple[int, int]:
        """(entries in the stream, entries delivered and unacknowledged); updates the gauges."""
        depth = int(await self.client.xlen(self.stream))
        try:
            pending = int((await self.client.xpending(self.stream, GROUP))["pending"])
        except rexc.ResponseError:  # no group yet
            pending = 0
        metrics.QUEUE_DEPTH.labels(self.pattern).set(depth)
        metrics.QUEUE_PENDING.labels(self.pattern).set(pending)
        return depth, pending

    # --- consumer side ------------------------------------------------------------------------

    async def _accept(self, entries: Any) -> list[Delivery]:
        """The deliveries among stream entries; an entry without a readable job id is
        discarded (acknowledged, copied to `dead`), never redelivered forever."""
        out = []
        for entry_id, fields in entries or []:
            if fields is None:  # deleted while pending (already finished)
                continue
            try:
                job_id = fields[b"id"].decode()
            except (KeyError, UnicodeDecodeError):
                await self.discard(entry_id, fields, "malformed", "stream entry has no job id")
                continue
            out.append(Delivery(entry_id, job_id, fields))
        return out

    async def discard(
        self, entry_id: bytes, fields: Mapping[bytes, bytes], reason: str, error: str
    ) -> None:
        """Acknowledge and delete an entry that cannot run, keeping a copy in `dead`."""
        copy: Any = {**fields, b"error": error.encode(), b"entry": entry_id}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead, copy)
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()
        metrics.QUEUE_DISCARDED.labels(self.pattern, reason).inc()
        log.warning(
            "stream entry discarded",
            extra={"entry": entry_id.decode(), "reason": reason, "error": error},
        )

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Delivery]:
        reply: Any = await self._in_group(
            lambda: self.client.xreadgroup(
                GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        )
        return await self._accept(reply[0][1]) if reply else []

    async def reclaim(self, consumer: str, count: int) -> list[Delivery]:
        """Take over entries another worker left idle past the visibility timeout."""
        idle_ms = int(self.settings.visibility_timeout_seconds * 1000)
        reply: Any = await self._in_group(
            lambda: self.client.xautoclaim(
                self.stream, GROUP, consumer, idle_ms, start_id="0-0", count=count
            )
        )
        found = await self._accept(reply[1])
        if found:
            metrics.JOB_RETRIES.labels(self.pattern).inc(len(found))
            log.info("reclaimed", extra={"jobs": len(found), "consumer": consumer})
        return found

    async def prune_consumers(self, keep: str) -> list[str]:
        """Remove the group's consumers idle past `consumer_idle_seconds` that hold no pending
        entry (workers that died; a live one idles about a second). Returns their names."""
        idle_ms = self.settings.consumer_idle_seconds * 1000
        consumers: Any = await self._in_group(
            lambda: self.client.xinfo_consumers(self.stream, GROUP)
        )
        removed = await prune_idle(self._prune, self.stream, GROUP, consumers, keep, idle_ms)
        if removed:
            log.info("idle consumers removed", extra={"consumers": removed[:20]})
        return removed

    async def begin(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Count the attempt; settle entries that need no work. Returns the ones to process."""
        async with self.client.pipeline(transaction=False) as pipe:
            for d in deliveries:
                await self._begin(keys=[self.job_key(d.job_id)], client=pipe)
            replies = await pipe.execute()
        todo: list[Delivery] = []
        for d, (attempts, _status) in zip(deliveries, replies, strict=True):
            if attempts < 0:  # the job's record is gone (deleted): nothing to report to
                await self.discard(d.entry_id, d.fields, "orphaned", "the job's record is gone")
                continue
            if attempts == 0:  # already terminal (a duplicate delivery): only acknowledge
                await self._settle(d, DONE, {}, dead=None)
                continue
            d.attempts = int(attempts)
            if d.attempts > self.settings.max_attempts:
                last: Any = await self.client.hget(self.job_key(d.job_id), "last_error")
                reason = last.decode() if last else "worker stopped while running it"
                await self.fail(d, f"gave up after {d.attempts - 1} deliveries: {reason}")
                continue
            todo.append(d)
        return todo

    def _finish_call(
        self,
        d: Delivery,
        status: str,
        values: Mapping[str, bytes | str],
        dead: Mapping[str, bytes | str] | None,
        now_ms: int,
        client: Any = None,
    ) -> Any:
        """The completion script's call for one delivery (awaitable; queued on `client` when
        that is a pipeline)."""
        args: list[bytes | str | int] = [
            GROUP,
            d.entry_id,
            status,
            self.settings.result_ttl_seconds,
            self.channel(d.job_id),
            now_ms,
            len(values),
        ]
        for k, v in values.items():
            args += [k, v]
        for k, v in (dead or {}).items():
            args += [k, v]
        keys = [self.job_key(d.job_id), self.stream, self.dead if dead is not None else ""]
        return self._finish(keys=keys, args=args, client=client)

    def _observe_latency(self, created: Any, now_ms: int) -> None:
        if created:
            metrics.JOB_LATENCY.labels(self.pattern).observe(
                max(0.0, (now_ms - int(created)) / 1000)
            )

    async def _settle(
        self,
        d: Delivery,
        status: str,
        values: Mapping[str, bytes | str],
        dead: Mapping[str, bytes | str] | None,
    ) -> bool:
        now = int(time.time() * 1000)
        applied, created = await self._finish_call(d, status, values, dead, now)
        if applied:
            self._observe_latency(created, now)
        return bool(applied)

    async def complete_many(self, done: Sequence[tuple[Delivery, Mapping[str, Any]]]) -> int:
        """Store each result unless its job already ended, acknowledging either way, for a
        whole batch in one round trip (a pipeline of completion scripts). Returns how many
        results were stored."""
        if not done:
            return 0
        now = int(time.time() * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            for d, result in done:
                body = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
                await self._finish_call(d, DONE, {"result": body}, None, now, client=pipe)
            replies = await pipe.execute()
        stored = 0
        for applied, created in replies:
            if applied:
                stored += 1
                self._observe_latency(created, now)
        metrics.JOBS.labels(self.pattern, DONE).inc(stored)
        return stored

    async def complete(self, d: Delivery, result: Mapping[str, Any]) -> bool:
        """Store the result unless the job already ended; acknowledge either way."""
        return await self.complete_many([(d, result)]) == 1

    async def fail(self, d: Delivery, error: str, *, rejected: bool = False) -> bool:
        """Mark `failed`; a job that exhausted its attempts also goes to the dead stream, with
        its payload. Rejected input fails without a dead letter: the client has the reason."""
        dead: dict[str, bytes | str] | None = None
        if not rejected:
            dead = {
                **{k.decode(): v for k, v in d.fields.items()},
                "error": error,
                "attempts": str(d.attempts),
            }
        applied = await self._settle(d, FAILED, {"error": error}, dead=dead)
        if applied:
            metrics.JOBS.labels(self.pattern, "rejected" if rejected else "dead").inc()
            if not rejected:
                metrics.DEAD_LETTERS.labels(self.pattern).inc()
                log.warning("dead letter", extra={"job_id": d.job_id, "error": error[:200]})
        return applied

    async def retry_later(self, d: Delivery, error: str) -> None:
        """A transient failure: leave the entry unacknowledged (it is reclaimed after the
        visibility timeout) unless this was the last allowed attempt. The error is noted on a
        pending job only: a job that expired meanwhile is not re-created."""
        if d.attempts >= self.settings.max_attempts:
            await self.fail(d, f"gave up after {d.attempts} deliveries: {error}")
            return
        await self._note(keys=[self.job_key(d.job_id)], args=[error[:500]])


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Reads batches, runs `handler` under the job timeout, settles every delivery."""

    def __init__(self, queue: JobQueue, handler: Handler, consumer: str | None = None) -> None:
        self.queue = queue
        self.handler = handler
        self.settings = queue.settings
        self.consumer = consumer or self.settings.consumer or default_consumer()
        self.redis_ok = False
        self.last_error: str | None = "not started"
        """Why the last read failed; None once a read succeeded."""
        self.last_read = time.monotonic()
        """When a read last succeeded (monotonic clock)."""
        self.failures = 0
        self.next_upkeep = 0.0

    def not_ready(self) -> str | None:
        """Why this worker is not consuming (for /readyz): its last read failed, or none
        succeeded for longer than a delivery may take plus the visibility timeout (a stuck
        loop). None while it reads."""
        if self.last_error is not None:
            return f"queue consumer: {self.last_error}"
        s = self.settings
        silent = time.monotonic() - self.last_read
        if silent > s.job_timeout_seconds + s.visibility_timeout_seconds + 5:
            return f"queue consumer: no read for {silent:.0f} s"
        return None

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Consume until `stopping()`; the batch in hand is finished first (anything left
        unacknowledged is reclaimed by another worker)."""
        while not stopping():
            try:
                batch = await self.poll()
            except Exception as exc:  # Redis down, or the stream unusable (say WRONGTYPE)
                await self._failed(exc, stopping)
                continue
            try:
                if batch:
                    await self.process(batch)
            except (*OUTAGE, OSError) as exc:
                await self._failed(exc, stopping)
            except Exception:  # a bug settling one batch must not stop the consumer: the
                # entries stay unacknowledged and are reclaimed after the visibility timeout
                log.exception("batch could not be settled")
                await asyncio.sleep(0.5)

    async def poll(self) -> list[Delivery]:
        """The next batch: the upkeep pass when due (gauges, dead consumers, reclaim), else a
        blocking XREADGROUP. A success clears `last_error` (readiness)."""
        s = self.settings
        if self.failures or not self.redis_ok:
            await self.queue.setup()
        batch: list[Delivery] = []
        if time.monotonic() >= self.next_upkeep:
            self.next_upkeep = time.monotonic() + s.reclaim_interval_seconds
            await self.queue.stats()
            await self.queue.prune_consumers(self.consumer)
            batch = await self.queue.reclaim(self.consumer, s.worker_batch)
            self._read_ok()
        if not batch:
            batch = await self.queue.read(self.consumer, s.worker_batch, block_ms=1000)
            self._read_ok()
        return batch

    def _read_ok(self) -> None:
        self.redis_ok, self.last_error, self.failures = True, None, 0
        self.last_read = time.monotonic()

    async def _failed(self, exc: Exception, stopping: Callable[[], bool]) -> None:
        """Record why reading failed (readiness says so), then back off."""
        self.failures += 1
        self.redis_ok = False
        if isinstance(exc, (*OUTAGE, OSError)):
            self.last_error = f"redis unreachable: {type(exc).__name__}"
            log.warning("queue unavailable", extra={"error": repr(exc)[:200]})
        else:
            self.last_error = f"cannot read the queue: {type(exc).__name__}: {str(exc)[:200]}"
            log.error("queue read failed", extra={"error": repr(exc)[:200]})
        await back_off(self.failures, stopping)

    async def process(self, batch: list[Delivery]) -> None:
        todo = await self.queue.begin(batch)
        if not todo:
            return
        try:
            outcomes = await asyncio.wait_for(self.handler(todo), self.settings.job_timeout_seconds)
        except TimeoutError:
            error = f"timed out after {self.settings.job_timeout_seconds:g} s"
            for d in todo:
                await self.queue.retry_later(d, error)
            return
        except (*OUTAGE, OSError):
            raise
        except Exception as exc:  # a transient failure: the entries stay for a retry
            log.exception("job batch failed", extra={"jobs": len(todo)})
            for d in todo:
                await self.queue.retry_later(d, f"{type(exc).__name__}: {exc}"[:500])
            return
        done = []
        for d, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                await self.queue.fail(d, outcome.error, rejected=True)
            else:
                done.append((d, outcome))
        await self.queue.complete_many(done)


async def wait_for_terminal(
    queue: JobQueue, job_id: str, wait_seconds: float, poll: float = 1.0
) -> dict[str, Any] | None:
    """The job once it is done or failed (pushed over pub/sub, polled as a fallback), else
    its last state after `wait_seconds`. None when it is unknown."""
    pubsub = queue.client.pubsub()
    await pubsub.subscribe(queue.channel(job_id))
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            job = await queue.get(job_id)  # after subscribing: no missed message
            if job is None or job["status"] != PENDING:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    pubsub.get_message(ignore_subscribe_messages=True, timeout=min(poll, left)),
                    min(poll, left) + 0.5,
                )
    finally:
        with contextlib.suppress(Exception):
            await pubsub.unsubscribe()
            await pubsub.aclose()  # type: ignore[no-untyped-call]
