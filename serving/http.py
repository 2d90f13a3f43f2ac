"""HTTP client helpers for calls between services: timeouts always, retries only when safe.

Defaults follow the shared API conventions (docs/catalogue.md): 0.5 s to connect, 2 s to
read. `request` propagates the request id
and, for idempotent methods only, retries connection failures with exponential backoff and full
jitter, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 2.0
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def make_client(
    base_url: str = "",
    *,
    connect: float = CONNECT_TIMEOUT,
    read: float = READ_TIMEOUT,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """An AsyncClient with explicit timeouts and a bounded pool (create once per process)."""
    timeout = httpx.Timeout(read, connect=connect, pool=connect)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)


def backoff(attempt: int, base: float = 0.05, cap: float = 1.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2**attempt)))


async def back_off(
    attempt: int, stopping: Callable[[], bool], base: float = 0.2, cap: float = 5.0
) -> None:
    """Sleep a backoff after `attempt` failures of a read loop, waking early when `stopping()`
    (a flag set by a signal handler) turns true, so a shutdown never waits out a pause."""
    pause = time.monotonic() + backoff(attempt, base=base, cap=cap)
    while time.monotonic() < pause and not stopping():  # noqa: ASYNC110
        await asyncio.sleep(0.1)


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    request_id: str | None = None,
    retries: int = 1,
    idempotent: bool | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; retry connection errors up to `retries` times if it is idempotent."""
    headers = dict(kwargs.pop("headers", None) or {})
    if request_id:
        headers["X-Request-ID"] = request_id
    safe = method.upper() in IDEMPOTENT if idempotent is None else idempotent
    attempt = 0
    while True:
        try:
            return await client.request(method, url, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            if not safe or attempt >= retries:
                raise
            await asyncio.sleep(backoff(attempt))
            attempt += 1
