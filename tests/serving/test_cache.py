"""serving/cache.py against a real redis-server: single-flight, canonical keys, soft failure."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from patterns.runner import free_port
from serving.cache import SingleFlight, SoftCache, canonical_rows, entry_bytes, glob_escape
from tests.conftest import RedisServer


def test_single_flight_runs_one_computation_per_key_and_shares_it() -> None:
    calls = 0

    async def compute() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"answer"

    async def main() -> list[bytes]:
        flights: SingleFlight[bytes] = SingleFlight()
        out = await asyncio.gather(*(flights.do("k", compute) for _ in range(20)))
        assert flights.shared == 19
        out.append(await flights.do("k", compute))  # later: a new flight
        return out

    assert asyncio.run(main()) == [b"answer"] * 21
    assert calls == 2


def test_single_flight_errors_reach_every_caller_and_a_leaver_cancels_nothing() -> None:
    async def failing() -> bytes:
        await asyncio.sleep(0.02)
        raise ValueError("bad input")

    async def slow() -> bytes:
        await asyncio.sleep(0.1)
        return b"done"

    async def main() -> None:
        flights: SingleFlight[bytes] = SingleFlight()
        results = await asyncio.gather(
            *(flights.do("bad", failing) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, ValueError) for r in results)
        leader = asyncio.ensure_future(flights.do("slow", slow))
        await asyncio.sleep(0.01)
        follower = asyncio.ensure_future(flights.do("slow", slow))
        leader.cancel()  # the first caller gives up (client gone, deadline)
        assert await follower == b"done"

    asyncio.run(main())


def test_canonical_rows_make_equal_numbers_one_key() -> None:
    a = np.asarray([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    b = np.asarray([[5.10, 3.50, 1.40, 0.20]], dtype=np.float64).astype(np.float32)
    assert canonical_rows(a) == canonical_rows(b)
    assert canonical_rows(a) != canonical_rows(a.reshape(2, 2))
    assert canonical_rows(a) != canonical_rows(a + np.float32(1e-6))


def test_hit_miss_and_ttl_on_a_real_redis(redis_server: RedisServer) -> None:
    async def main() -> None:
        cache = SoftCache(redis_server.url, name="unit", service="test", ttl_seconds=60)
        calls = 0

        async def compute() -> bytes:
            nonlocal calls
            calls += 1
            return b"v"

        key = cache.key("m", "1", "abc")
        assert key == "mlsp:unit:m:1:abc"
        assert await cache.get_or_compute(key, compute) == (b"v", "MISS")
        assert await cache.get_or_compute(key, compute) == (b"v", "HIT")
        assert calls == 1
        assert 0 < await cache.client.ttl(key) <= 60
        await cache.client.set("mlsp:unit:m:0:old", b"x")
        assert await cache.sweep("mlsp:unit:m:*", "mlsp:unit:m:1:") == 1
        assert await cache.client.exists(key) == 1
        # a model name with glob characters matches only itself
        await cache.client.set("mlsp:unit:m*:0:old", b"x")
        await cache.client.set("mlsp:unit:mX:0:other", b"x")
        assert await cache.sweep(cache.key(glob_escape("m*"), "*"), "mlsp:unit:m*:1:") == 1
        assert await cache.client.exists("mlsp:unit:mX:0:other", key) == 2
        await cache.close()

    asyncio.run(main())


def test_an_unreachable_redis_is_a_bypass_with_a_cooldown() -> None:
    async def main() -> None:
        url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        cache = SoftCache(url, name="unit", service="test", ttl_seconds=60, cooldown=60)

        async def compute() -> bytes:
            return b"v"

        for i in range(3):
            assert cache.available()  # one failure does not switch the cache off
            assert await cache.get_or_compute(f"k{i}", compute) == (b"v", "BYPASS")
        assert not cache.available()  # three in a row do: the next requests do not even try
        assert await cache.get_or_compute("k9", compute) == (b"v", "BYPASS")
        await cache.close()

    asyncio.run(main())


@pytest.mark.parametrize("value", [b"", b"x" * 10_000])
def test_values_round_trip_as_bytes(redis_server: RedisServer, value: bytes) -> None:
    async def main() -> None:
        cache = SoftCache(redis_server.url, name="unit", service="test", ttl_seconds=5)
        await cache.set("mlsp:unit:k", value)
        assert await cache.get("mlsp:unit:k") == value
        await cache.close()

    asyncio.run(main())


def test_the_local_tier_answers_repeats_without_redis(redis_server: RedisServer) -> None:
    async def main() -> None:
        cache = SoftCache(
            redis_server.url,
            name="unit",
            service="test",
            ttl_seconds=60,
            local_bytes=16 * entry_bytes(b"vv"),
        )
        calls = 0

        async def compute() -> bytes:
            nonlocal calls
            calls += 1
            return b"vv"

        assert await cache.get_or_compute("mlsp:unit:a", compute) == (b"vv", "MISS")
        redis_server.stop()
        assert await cache.get_or_compute("mlsp:unit:a", compute) == (b"vv", "HIT")
        assert calls == 1
        for i in range(16):  # the tier holds 16 entries of 2-byte values: LRU drops "a"
            await cache.get_or_compute(f"mlsp:unit:{i}", compute)
        assert await cache.get_or_compute("mlsp:unit:a", compute) == (b"vv", "BYPASS")

        async def big() -> bytes:
            return b"x" * 3  # above 1/16 of the tier: never kept locally

        await cache.get_or_compute("mlsp:unit:big", big)
        assert "mlsp:unit:big" not in (cache.local or {})
        await cache.close()

    asyncio.run(main())


def test_an_error_reply_from_redis_is_a_bypass_too(redis_server: RedisServer) -> None:
    """Redis refusing a write (full, or its disk failing) must not fail the request."""
    import redis as sync_redis

    admin = sync_redis.Redis.from_url(redis_server.url)
    admin.config_set("maxmemory", "1")  # every write is now an OOM error reply
    admin.config_set("maxmemory-policy", "noeviction")

    async def main() -> None:
        cache = SoftCache(redis_server.url, name="unit", service="test", ttl_seconds=60)

        async def compute() -> bytes:
            return b"v" * 100

        assert await cache.get_or_compute("mlsp:unit:k", compute) == (b"v" * 100, "MISS")
        await cache.close()

    asyncio.run(main())
    assert admin.get("mlsp:unit:k") is None
