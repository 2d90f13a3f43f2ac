"""A Redis stream used as a log (prediction_log): bounded appends from a server, and a consumer
group that reads in batches, reclaims a dead consumer's entries and acknowledges after the
work is durable elsewhere.

The job queue (serving/queue.py) tracks one job per entry (a hash, a status, a result); a log
needs none of that: an entry is a fact to store once. What is shared is the Redis side: the
client (serving/redis_client.py, bounded timeouts, one retry on a broken connection), the
`mlsp:<pattern>:` key prefix, a lost group rebuilt on the spot (`missing_group`), and the
consumer names (`default_consumer`).

- `append_many` sends a pipeline of XADDs bounded by a timeout; it raises on an outage or a
  timeout and the caller decides what to do with the entries (prediction_log spills them to
  stdout). A timeout may still have written some of them: readers must be idempotent.
- `read` (XREADGROUP), `claim` (XAUTOCLAIM of entries idle past a bound: a consumer that died
  before its ack), `prune` (the names of consumers that died, holding nothing), `settle`
  (XACK + XDEL of a batch, with dead letters copied to `dead` in the same transaction),
  `backlog` (entries in the stream, entries pending).
- No MAXLEN trimming: trimming drops entries nobody stored. Settled entries are deleted, so the
  stream holds only what is not stored yet; its length bounds writes instead (`backlog`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc

from serving.queue import PRUNE, missing_group, prune_idle

T = TypeVar("T")
Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: its id and its fields."""


class LogStream:
    """The stream `mlsp:<pattern>:<name>` and its dead letters `mlsp:<pattern>:dead`."""

    def __init__(self, client: aioredis.Redis, pattern: str, name: str = "entries") -> None:
        self.client = client
        self.key = f"mlsp:{pattern}:{name}"
        self.dead = f"mlsp:{pattern}:dead"
        self._prune = client.register_script(PRUNE)

    async def append_many(self, entries: Sequence[Mapping[str, bytes | str]], within: float) -> int:
        """XADD each entry (its fields), then XLEN, in one round trip, within `within` seconds
        (TimeoutError past it; a Redis error as raised). Returns the stream's length."""
        async with self.client.pipeline(transaction=False) as pipe:
            for fields in entries:
                pipe.xadd(self.key, dict(fields))  # type: ignore[arg-type]  # redis-py's Mapping is invariant
            pipe.xlen(self.key)
            replies = await asyncio.wait_for(pipe.execute(), within)
        return int(replies[-1])

    async def setup(self, group: str) -> None:
        """Create the stream and the group (id 0: entries added before the group count)."""
        try:
            await self.client.xgroup_create(self.key, group, id="0", mkstream=True)
        except rexc.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _in_group(self, group: str, command: Callable[[], Awaitable[T]]) -> T:
        """Run a group command; if the group is gone (FLUSHALL, the stream deleted), create
        it again and retry once."""
        try:
            return await command()
        except rexc.ResponseError as exc:
            if not missing_group(exc):
                raise
        await self.setup(group)
        return await command()

    async def read(self, group: str, consumer: str, count: int, block_ms: int) -> list[Entry]:
        reply: Any = await self._in_group(
            group,
            lambda: self.client.xreadgroup(
                group, consumer, {self.key: ">"}, count=count, block=block_ms
            ),
        )
        return [(i, f) for i, f in reply[0][1] if f is not None] if reply else []

    async def claim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries delivered to any consumer and unacknowledged for `min_idle_ms`."""
        reply: Any = await self._in_group(
            group,
            lambda: self.client.xautoclaim(
                self.key, group, consumer, min_idle_ms, start_id="0-0", count=count
            ),
        )
        return [(i, f) for i, f in reply[1] if f is not None]

    async def settle(
        self,
        group: str,
        ids: Sequence[bytes],
        dead: Sequence[tuple[bytes, Mapping[bytes, bytes], str]] = (),
    ) -> None:
        """Acknowledge and delete `ids`; each (id, fields, error) of `dead` is copied to the
        dead-letter stream first, in the same transaction."""
        if not ids:
            return
        async with self.client.pipeline(transaction=True) as pipe:
            for entry_id, fields, error in dead:
                copy: Any = {**fields, b"error": error.encode(), b"entry": entry_id}
                pipe.xadd(self.dead, copy)
            pipe.xack(self.key, group, *ids)
            pipe.xdel(self.key, *ids)
            await pipe.execute()

    async def prune(self, group: str, keep: str, idle_ms: float) -> list[str]:
        """Remove the group's consumers idle past `idle_ms` that hold no pending entry (readers
        that died), with the queue's check-and-delete script: one that holds entries is never
        removed (they would never be reclaimed). Returns their names."""
        consumers: Any = await self._in_group(
            group, lambda: self.client.xinfo_consumers(self.key, group)
        )
        return await prune_idle(self._prune, self.key, group, consumers, keep, idle_ms)

    async def backlog(self, group: str) -> tuple[int, int]:
        """(entries in the stream, entries delivered and not acknowledged)."""
        depth = int(await self.client.xlen(self.key))
        try:
            pending = int((await self.client.xpending(self.key, group))["pending"])
        except rexc.ResponseError:  # no group yet
            pending = 0
        return depth, pending
