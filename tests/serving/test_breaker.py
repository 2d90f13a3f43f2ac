"""serving/breaker.py under a hand-driven clock: the breaker's states, the window, the probes,
the bulkhead and the fallback chain. No wall time is measured: the clock moves when a test
moves it, and concurrency is ordered by events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from serving.breaker import (
    BreakerConfig,
    Bulkhead,
    CircuitBreaker,
    Fallback,
    Guard,
    Refused,
    answer_key,
)
from serving.cache import LocalTier
from serving.errors import Unavailable
from serving.predictor import Call, OnnxPredictor
from serving.settings import ServingSettings
from serving.upstream import Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


OK = Outcome("primary", True, 1.0, 200, {"predictions": []})
FAILED = Outcome("primary", False, 1.0, 503, None, error="status 503")
REFUSED = Outcome(
    "primary", False, 1.0, 422, {"error": {"code": "invalid_input", "message": "x"}}, error="422"
)


class Dependency:
    """Counts the calls the guard lets through and answers with `outcome`; with `gate`
    cleared, each call waits for it (a slow dependency)."""

    def __init__(self, clock: Clock, outcome: Outcome = OK) -> None:
        self.clock = clock
        self.outcome = outcome
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.takes = 0.0
        """Seconds of the fake clock each call lasts."""

    def attempt(self) -> Callable[[], Awaitable[Outcome]]:
        async def run() -> Outcome:
            self.calls += 1
            await self.gate.wait()
            self.clock.advance(self.takes)
            return self.outcome

        return run


async def trip(guard: Guard, dep: Dependency) -> None:
    """Five failed calls in a row: the consecutive-failure criterion opens the breaker."""
    for _ in range(5):
        await guard.run(dep.attempt())


def make(
    clock: Clock, limit: int = 100, **config: float | int | None
) -> tuple[CircuitBreaker, Guard]:
    breaker = CircuitBreaker("primary", BreakerConfig(**config), clock=clock, service="test")  # type: ignore[arg-type]
    return breaker, Guard(breaker, Bulkhead(limit))


def test_a_failing_dependency_opens_the_breaker_and_calls_stop() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock)
        dep = Dependency(clock, FAILED)
        for _ in range(5):
            assert await guard.run(dep.attempt()) == FAILED
        assert breaker.state == "open" and dep.calls == 5
        for _ in range(50):
            assert await guard.run(dep.attempt()) == Refused("open")
        assert dep.calls == 5  # not one call while open
        clock.advance(9.9)
        assert breaker.state == "open" and breaker.retry_after() == 1
        assert await guard.run(dep.attempt()) == Refused("open") and dep.calls == 5

    asyncio.run(main())


def test_half_open_after_the_wait_then_closed_after_every_probe_succeeds() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, open_seconds=10)
        dep = Dependency(clock, FAILED)
        await trip(guard, dep)
        assert breaker.state == "open" and breaker.retry_after() == 10
        clock.advance(6.5)
        assert breaker.retry_after() == 4  # whole seconds until a probe may go, rounded up
        clock.advance(3.5)
        assert breaker.state == "half_open"
        dep.outcome = OK
        for i in range(3):
            assert await guard.run(dep.attempt()) == OK
            assert breaker.state == ("closed" if i == 2 else "half_open")
        assert breaker.window.calls == 0 and breaker.consecutive == 0  # a fresh start

    asyncio.run(main())


def test_a_failed_probe_opens_the_breaker_again_for_a_full_wait() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, open_seconds=10)
        dep = Dependency(clock, FAILED)
        await trip(guard, dep)
        clock.advance(10)
        dep.outcome = OK
        await guard.run(dep.attempt())
        dep.outcome = FAILED
        await guard.run(dep.attempt())
        assert breaker.state == "open" and breaker.retry_after() == 10
        assert await guard.run(dep.attempt()) == Refused("open")

    asyncio.run(main())


def test_exactly_three_probes_among_50_concurrent_callers() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, open_seconds=10, half_open_calls=3)
        dep = Dependency(clock, FAILED)
        await trip(guard, dep)
        clock.advance(10)
        dep.outcome, before = OK, dep.calls
        dep.gate.clear()  # the probes hang until released: all 50 callers arrive meanwhile
        tasks = [asyncio.create_task(guard.run(dep.attempt())) for _ in range(50)]
        await asyncio.sleep(0)  # every task has asked the guard
        refused = [t.result() for t in tasks if t.done()]
        assert len(refused) == 47 and set(refused) == {Refused("open")}
        assert dep.calls - before == 3 and breaker.state == "half_open"
        dep.gate.set()
        results = await asyncio.gather(*tasks)
        assert results.count(OK) == 3 and breaker.state == "closed"
        assert dep.calls - before == 3

    asyncio.run(main())


def test_a_probe_given_back_frees_its_slot() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, half_open_calls=3)
        dep = Dependency(clock, FAILED)
        await trip(guard, dep)
        clock.advance(10)
        dep.outcome = REFUSED  # the input was refused: says nothing about the dependency
        for _ in range(5):
            assert await guard.run(dep.attempt()) == REFUSED
        assert breaker.state == "half_open" and breaker.probes == 0
        dep.outcome, dep.gate = OK, asyncio.Event()
        task = asyncio.create_task(guard.run(dep.attempt()))
        await asyncio.sleep(0)
        task.cancel()  # the caller went away
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.probes == 0
        dep.gate.set()
        for _ in range(3):
            await guard.run(dep.attempt())
        assert breaker.state == "closed"

    asyncio.run(main())


def test_the_minimum_number_of_calls_is_respected() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, consecutive_failures=None, minimum_calls=20)
        dep = Dependency(clock, FAILED)
        for _ in range(19):
            await guard.run(dep.attempt())
        assert breaker.state == "closed"  # 100% failed, but only 19 calls
        await guard.run(dep.attempt())
        assert breaker.state == "open"

    asyncio.run(main())


def test_the_rate_opens_at_fifty_percent() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, consecutive_failures=None, minimum_calls=20)
        ok, failed = Dependency(clock, OK), Dependency(clock, FAILED)
        for _ in range(10):
            await guard.run(ok.attempt())
        for _ in range(9):
            await guard.run(failed.attempt())
        assert breaker.state == "closed"  # 9 of 19: too few calls anyway
        await guard.run(ok.attempt())
        assert breaker.state == "closed"  # 9 of 20: 45%
        await guard.run(failed.attempt())
        assert breaker.state == "closed"  # 10 of 21: 47.6%
        await guard.run(failed.attempt())
        assert breaker.state == "open"  # 11 of 22: 50%

    asyncio.run(main())


def test_the_window_forgets_calls_older_than_its_length() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, consecutive_failures=None, minimum_calls=20)
        failed, ok = Dependency(clock, FAILED), Dependency(clock, OK)
        for _ in range(15):
            await guard.run(failed.attempt())
        clock.advance(10)  # those 15 failures leave the 10 s window
        for _ in range(19):
            await guard.run(ok.attempt())
        await guard.run(failed.attempt())
        assert breaker.window.calls == 20 and breaker.state == "closed"  # 1 of 20 failed

    asyncio.run(main())


def test_consecutive_failures_open_even_with_a_good_rate() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, consecutive_failures=5)
        ok, failed = Dependency(clock, OK), Dependency(clock, FAILED)
        for _ in range(100):
            await guard.run(ok.attempt())
        for _ in range(4):
            await guard.run(failed.attempt())
        await guard.run(ok.attempt())  # a success resets the run
        for _ in range(4):
            await guard.run(failed.attempt())
        assert breaker.state == "closed"
        await guard.run(failed.attempt())
        assert breaker.state == "open"  # 5 in a row, though 9 of 110 failed

    asyncio.run(main())


def test_slow_calls_open_the_breaker_when_the_criterion_is_on() -> None:
    async def main() -> None:
        clock = Clock()
        off, off_guard = make(clock, minimum_calls=20)
        slow = Dependency(clock, OK)
        slow.takes = 2.0
        for _ in range(20):
            await off_guard.run(slow.attempt())
        assert off.state == "closed"  # no slow criterion: slow successes are successes
        on, guard = make(clock, minimum_calls=20, slow_call_seconds=0.1, slow_call_rate=50)
        slow.takes = 0.01
        for _ in range(10):
            await guard.run(slow.attempt())
        slow.takes = 0.11  # all 20 calls within the 10 s window
        for _ in range(9):
            await guard.run(slow.attempt())
        assert on.state == "closed" and on.window.slow == 9  # 19 calls: too few
        await guard.run(slow.attempt())
        assert on.state == "open"  # 10 of 20 slower than 100 ms

    asyncio.run(main())


def test_an_outcome_from_an_older_state_changes_nothing() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock)
        late = Dependency(clock, FAILED)
        late.gate.clear()
        pending = asyncio.create_task(guard.run(late.attempt()))
        await asyncio.sleep(0)
        failed = Dependency(clock, FAILED)
        await trip(guard, failed)
        clock.advance(10)
        assert breaker.state == "half_open"
        late.gate.set()
        await pending  # admitted while closed, failed now: ignored
        assert breaker.state == "half_open" and breaker.probes == 0

    asyncio.run(main())


def test_the_bulkhead_refuses_at_once_without_calling() -> None:
    async def main() -> None:
        clock = Clock()
        breaker, guard = make(clock, limit=2)
        slow = Dependency(clock, OK)
        slow.gate.clear()
        first = [asyncio.create_task(guard.run(slow.attempt())) for _ in range(2)]
        await asyncio.sleep(0)
        third = await guard.run(slow.attempt())  # returns while the other two still wait
        assert third == Refused("bulkhead_full") and slow.calls == 2
        assert not any(t.done() for t in first)
        slow.gate.set()
        assert await asyncio.gather(*first) == [OK, OK]
        assert guard.bulkhead.inflight == 0 and breaker.state == "closed"
        assert await guard.run(slow.attempt()) == OK

    asyncio.run(main())


def test_the_fallback_chain_cache_then_model_then_503(tmp_path: Path, data_dir: Path) -> None:
    model = OnnxPredictor(ServingSettings(model_dir=data_dir / "models" / "iris-lr"))
    asyncio.run(model.load())
    clock = Clock()
    recent = LocalTier(1 << 20, 600, clock=clock)
    x = np.asarray([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    key = answer_key(x)
    assert key == answer_key(np.asarray([[5.10, 3.50, 1.40, 0.20]], dtype=np.float64).astype("f4"))
    use_model = True
    chain = Fallback(
        "primary", recent=recent, model=lambda: model if use_model else None, service="t"
    )
    answer = {"model": {"name": "iris-svc", "version": "1"}, "predictions": [{"label": "setosa"}]}

    async def ask() -> dict[str, object]:
        return await chain.answer(
            x, key, Call("rid"), reason="open", why="breaker open", retry_after=7
        )

    first = asyncio.run(ask())
    assert (first["source"], first["degraded"]) == ("fallback_model", True)
    assert first["model"] == {"name": "iris-lr", "version": model.card.version}
    chain.remember(key, answer)
    cached = asyncio.run(ask())
    assert cached == {
        "request_id": "rid",
        **answer,
        "source": "cache",
        "degraded": True,
        "reason": "breaker open",
    }
    clock.advance(601)  # the recent answer expired
    use_model = False
    with pytest.raises(Unavailable) as info:
        asyncio.run(ask())
    assert info.value.extra["dependency"] == "primary" and info.value.headers() == {
        "Retry-After": "7"
    }
