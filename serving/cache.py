"""A Redis cache as a soft dependency, with single-flight (prediction_cache, data_cache).

- Every Redis call is bounded by `timeout` (50 ms by default, socket and pool wait): an error or
  a timeout is a BYPASS, never a failed request. After `trip_after` failures in a row the cache
  is skipped for `cooldown` seconds, so an outage costs a few timeouts, not one per request,
  while one slow call under a burst does not switch the cache off for everybody.
- A small in-process tier (`local_bytes`, LRU bounded in bytes, `local_ttl` seconds) answers
  repeats without a Redis round trip. Where a key names everything its value depends on (model
  and version, preprocessing version, the input's digest: prediction_cache) a value never
  changes under its key and the local TTL can be the cache's; where a key names an item whose
  data may change (data_cache), keep the local TTL short: it bounds how stale a replica can be.
- Concurrent misses for the same key share one computation (`SingleFlight`): 50 identical
  requests arriving together make one model call (or one store read), and one SET.
- Keys are namespaced `mlsp:<pattern>:` and written with a TTL; the caller puts whatever
  invalidates an entry (a model version, a preprocessing version) into the key itself.

Outcomes are counted in `mlsp_cache_requests_total{cache, outcome}` and reported to the caller,
which sends them as `X-Cache: HIT|MISS|BYPASS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from cachetools import TTLCache
from prometheus_client import Counter
from pydantic import Field
from redis.exceptions import RedisError

from serving import metrics, redis_client
from serving.settings import RedisSettings

log = logging.getLogger("serving")

T = TypeVar("T")
Outcome = Literal["HIT", "MISS", "BYPASS"]

CACHE_REQUESTS = Counter(
    "mlsp_cache_requests", "Cache lookups by outcome (HIT, MISS, BYPASS).", ["cache", "outcome"]
)
CACHE_LOCAL_HITS = Counter(
    "mlsp_cache_local_hits", "HITs answered by the in-process tier, without Redis.", ["cache"]
)
CACHE_ERRORS = Counter("mlsp_cache_errors", "Redis errors and timeouts (then BYPASS).", ["cache"])


class SingleFlight(Generic[T]):
    """Run one computation per key at a time; callers arriving meanwhile share its result.

    The computation runs as its own task: a caller that gives up (client gone, deadline) does
    not cancel it for the others. Its exception, if any, reaches every caller.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[T]] = {}
        self.shared = 0
        """Calls served by another caller's computation (for metrics and tests)."""

    async def do(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        task = self._flights.get(key)
        if task is None:

            async def run() -> T:
                return await compute()

            task = asyncio.ensure_future(run())
            self._flights[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        else:
            self.shared += 1
        return await asyncio.shield(task)

    def _done(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here too: no "never retrieved" warning if all left


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_rows(x: npt.NDArray[np.float32]) -> bytes:
    """The canonical form of feature rows: their shape, then float32 little-endian values.
    5.1 and 5.10 parse to the same float32, so they share a key."""
    rows, cols = x.shape
    return f"{rows}x{cols}:".encode() + np.ascontiguousarray(x, dtype="<f4").tobytes()


def cache_key(name: str, *parts: str) -> str:
    """`mlsp:<name>:<part>:<part>...`: every cache key of a pattern, in its own namespace."""
    return f"mlsp:{name}:" + ":".join(parts)


def glob_escape(text: str) -> str:
    """`text` matched literally in a Redis MATCH pattern (`*`, `?`, `[`, `]`, `\\` escaped)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class SoftCacheSettings(RedisSettings):
    """The settings of a `SoftCache` (`MLSP_` prefix); a pattern sets its own defaults."""

    cache_ttl_seconds: int = Field(3600, ge=1, le=30 * 86400)
    """How long an entry stays cached."""
    cache_timeout_ms: int = Field(50, ge=1, le=1000)
    """Longest a cache lookup may take before the request bypasses the cache."""
    cache_local_bytes: int = Field(32 << 20, ge=0, le=1 << 34)
    """Entries also kept in this process (LRU), bounded in bytes; 0: no local tier."""
    cache_local_ttl_seconds: int | None = Field(None, ge=1, le=30 * 86400)
    """How long this process keeps an entry without asking Redis (default: the cache TTL)."""


ENTRY_OVERHEAD = 400
"""Bytes an entry of the local tier costs beside its value: the key (a ~100-character str),
the dict slot and the TTL bookkeeping (measured: ~380 bytes), so the tier's byte bound holds
for small answers too."""


def entry_bytes(value: bytes) -> int:
    return len(value) + ENTRY_OVERHEAD


class LocalTier:
    """Values kept in this process: LRU bounded in bytes (ENTRY_OVERHEAD counted per entry),
    each expiring `ttl` seconds after it was stored; a value above 1/16 of the bound is not
    kept (not worth the slots it would evict). SoftCache's in-process tier, and the recent
    answers a proxy falls back on (circuit_breaker)."""

    def __init__(
        self, max_bytes: int, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.entries: TTLCache[str, bytes] = TTLCache(
            maxsize=max_bytes, ttl=ttl, timer=clock, getsizeof=entry_bytes
        )

    def get(self, key: str) -> bytes | None:
        return self.entries.get(key)

    def keep(self, key: str, value: bytes) -> None:
        if entry_bytes(value) <= self.entries.maxsize // 16:
            self.entries[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)


class SoftCache:
    """GET/SET with a TTL where any Redis problem means "no cache", never an error."""

    @classmethod
    def from_settings(cls, s: SoftCacheSettings, *, name: str, service: str) -> SoftCache:
        return cls(
            s.redis_url,
            name=name,
            service=service,
            ttl_seconds=s.cache_ttl_seconds,
            timeout=s.cache_timeout_ms / 1000,
            local_bytes=s.cache_local_bytes,
            local_ttl=s.cache_local_ttl_seconds,
        )

    def __init__(
        self,
        url: str,
        *,
        name: str,
        service: str,
        ttl_seconds: int,
        timeout: float = 0.05,
        cooldown: float = 1.0,
        trip_after: int = 3,
        local_bytes: int = 0,
        local_ttl: float | None = None,
        max_connections: int = 64,
    ) -> None:
        self.client = redis_client.connect(
            url, connect_timeout=timeout, timeout=timeout, max_connections=max_connections
        )
        self.timeout = timeout
        self.name = name
        self.ttl = ttl_seconds
        self.cooldown = cooldown
        self.trip_after = trip_after
        self._failures = 0
        self._skip_until = 0.0
        self.local = LocalTier(local_bytes, local_ttl or ttl_seconds) if local_bytes > 0 else None
        self._up = metrics.DEPENDENCY_UP.labels(service, "redis")
        self._counters = {o: CACHE_REQUESTS.labels(name, o) for o in ("HIT", "MISS", "BYPASS")}
        self._local_hits = CACHE_LOCAL_HITS.labels(name)
        self._errors = CACHE_ERRORS.labels(name)
        self.flights: SingleFlight[bytes] = SingleFlight()

    def key(self, *parts: str) -> str:
        return cache_key(self.name, *parts)

    def _failed(self, exc: BaseException) -> None:
        self._errors.inc()
        self._failures += 1
        if self._failures >= self.trip_after:
            self._up.set(0)
            self._skip_until = time.monotonic() + self.cooldown
            self._failures = 0
            log.warning(
                "cache switched off", extra={"cache": self.name, "error": type(exc).__name__}
            )

    def _answered(self) -> None:
        self._failures = 0
        self._up.set(1)

    def _keep(self, key: str, value: bytes) -> None:
        if self.local is not None:
            self.local.keep(key, value)

    def available(self) -> bool:
        return time.monotonic() >= self._skip_until

    async def get(self, key: str) -> bytes | None:
        """The cached value, or None; raises CacheDown when Redis does not answer."""
        if not self.available():
            raise CacheDown
        try:  # one bound for the whole call: pool wait, connect, handshake and reply
            async with asyncio.timeout(self.timeout):
                value = await self.client.get(key)
        except (RedisError, OSError) as exc:  # any error reply too (OOM, MISCONF): bypass
            self._failed(exc)
            raise CacheDown from None
        self._answered()
        assert value is None or isinstance(value, bytes)  # the client never decodes
        return value

    async def set(self, key: str, value: bytes) -> None:
        self._keep(key, value)
        if not self.available():
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.set(key, value, ex=self.ttl)
        except (RedisError, OSError) as exc:  # any error reply too (OOM, MISCONF): bypass
            self._failed(exc)

    async def get_or_compute(
        self, key: str, compute: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, Outcome]:
        """HIT: the cached bytes. MISS: compute once per key (single-flight), store, return.
        BYPASS: Redis is unavailable; still computed once per key (kept in the local tier).
        A HIT may come from the local tier (`mlsp_cache_local_hits_total`) or from Redis."""
        if self.local is not None and (near := self.local.get(key)) is not None:
            self._counters["HIT"].inc()
            self._local_hits.inc()
            return near, "HIT"
        try:
            cached = await self.get(key)
        except CacheDown:
            self._counters["BYPASS"].inc()

            async def compute_and_keep() -> bytes:
                value = await compute()
                self._keep(key, value)
                return value

            return await self.flights.do(key, compute_and_keep), "BYPASS"
        if cached is not None:
            self._counters["HIT"].inc()
            self._keep(key, cached)
            return cached, "HIT"

        async def compute_and_store() -> bytes:
            value = await compute()
            await self.set(key, value)
            return value

        self._counters["MISS"].inc()
        return await self.flights.do(key, compute_and_store), "MISS"

    async def sweep(self, pattern: str, keep_prefix: str, batch: int = 500) -> int:
        """UNLINK keys matching `pattern` that do not start with `keep_prefix` (entries of an
        older model or preprocessing version), by SCAN so Redis never blocks. Returns the
        count; stops quietly if Redis is down (the TTL removes them anyway)."""
        removed = 0
        try:
            stale: list[bytes] = []
            async for key in self.client.scan_iter(match=pattern, count=batch):
                if not key.decode().startswith(keep_prefix):
                    stale.append(key)
                if len(stale) >= batch:
                    removed += await self.client.unlink(*stale)
                    stale = []
            if stale:
                removed += await self.client.unlink(*stale)
        except (RedisError, OSError) as exc:  # any error reply too (OOM, MISCONF): bypass
            log.warning("cache sweep stopped", extra={"cache": self.name, "error": repr(exc)})
        return removed

    async def close(self) -> None:
        await self.client.aclose()


class CacheDown(Exception):
    """Redis did not answer (or is in its cooldown): bypass the cache."""


def x_cache(outcome: Outcome) -> list[tuple[bytes, bytes]]:
    return [(b"x-cache", outcome.encode())]
