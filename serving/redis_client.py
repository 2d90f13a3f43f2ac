"""The Redis client every pattern uses: bounded timeouts, a readiness check, one outage error.

Every call has a socket timeout, so a stalled Redis gives a 503 naming `redis`, never a hang.

A command that meets a broken connection (`ConnectionError`: the pooled socket of a Redis that
restarted, a refused connect) is sent once more on a fresh connection, with redis-py's own
`Retry`; a timeout is never retried (the command may still be running). The repeat is safe for
every caller: reads, cache writes (a SET of the same value) and the queue's scripts
(serving/queue.py), which check the job's state first, so a repeated enqueue (same job id) or
completion changes nothing; at worst a repeated start of a delivery counts one attempt more.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from serving import metrics
from serving.errors import Unavailable
from serving.state import ReadyCheck

OUTAGE = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, rexc.ReadOnlyError)
"""Errors that mean "Redis is not answering", as opposed to a bug in a command."""


def connect(
    url: str, *, connect_timeout: float = 0.5, timeout: float = 2.0, max_connections: int = 64
) -> aioredis.Redis:
    """An asyncio client; binary-safe (responses are bytes). The pool is bounded and a caller
    waits up to `timeout` for a free connection (the default pool raises at once instead); a
    `ConnectionError` is retried once on a new connection."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        health_check_interval=10,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[rexc.ConnectionError],
    )
    return aioredis.Redis(connection_pool=pool)


def ready_check(client: aioredis.Redis, service: str, name: str = "redis") -> ReadyCheck:
    """A hard-dependency check for /readyz that also sets mlsp_dependency_up."""
    gauge = metrics.DEPENDENCY_UP.labels(service, name)

    async def check() -> str | None:
        try:
            await client.ping()
        except (*OUTAGE, OSError) as exc:
            gauge.set(0)
            return f"{name} unreachable: {type(exc).__name__}"
        gauge.set(1)
        return None

    return check


@contextlib.asynccontextmanager
async def outage_as_503(name: str = "redis") -> AsyncIterator[None]:
    """Turn a Redis outage inside the block into 503 `{"dependency": name}`."""
    try:
        yield
    except (*OUTAGE, OSError) as exc:
        raise Unavailable(
            f"{name} is unavailable: {type(exc).__name__}", dependency=name, retry_after=2
        ) from None
