"""A circuit breaker and a bulkhead in front of one dependency, for any proxy (circuit_breaker).

The breaker follows Resilience4j's state machine:

- CLOSED: every call goes through and its outcome is recorded in a time-based sliding window
  (`window_seconds`, one bucket per second). It trips to OPEN when the window holds at least
  `minimum_calls` calls and the failure rate is at least `failure_rate` % (a failure: a 5xx, a
  timeout, a connection error; a 4xx is the caller's fault and is not recorded), or, with the
  slow-call criterion on, when the rate of calls slower than `slow_call_seconds` is at least
  `slow_call_rate` %. It also trips after `consecutive_failures` failures in a row, so a dead
  dependency is cut off after a few calls even when traffic is too thin to fill the window.
- OPEN: no call goes through (`acquire` returns None) for `open_seconds`; the caller answers
  from its fallback at once.
- HALF_OPEN: the first call after `open_seconds` moves the breaker here, and exactly
  `half_open_calls` probe calls are admitted, however many callers arrive together; the others
  are refused as in OPEN. Every probe succeeding closes the breaker (with an empty window); one
  failing (or slow, with the slow criterion on) opens it again for another `open_seconds`.

A call's outcome only counts in the state it was admitted in: a call admitted while CLOSED that
fails after the breaker opened changes nothing. A permit given back without an outcome
(`release`: the caller went away, the dependency refused the input) frees its probe slot.

The clock is injectable (monotonic seconds), so tests drive time by hand. Transitions are
logged, and exported as `mlsp_breaker_state`, `mlsp_breaker_transitions_total`,
`mlsp_breaker_calls_total`.

The bulkhead caps the calls in progress towards the dependency; a call above the cap is not
queued: it gets the fallback at once, so a slow dependency holds at most `limit` requests.
`Guard` puts the two in front of one call that returns a serving/upstream.py `Outcome`.

`Fallback` answers when the guard did not call the dependency or the call failed, in order: the
dependency's own recent answer to the same input (a `LocalTier` keyed by the canonical input,
serving/cache.py), then an in-process model (a predictor, serving/predictor.py), else a 503 with
Retry-After (when the breaker lets a probe through) naming the dependency. Every answer says
where it came from: `source` (primary, cache, fallback_model) and `degraded`; fallbacks are
counted in `mlsp_fallbacks_total{source, reason}`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from prometheus_client import Counter, Gauge
from pydantic import Field

from serving.cache import LocalTier, canonical_rows, digest
from serving.errors import Unavailable
from serving.inference import encode, prediction_body
from serving.predictor import Batch, Call, Predictor
from serving.settings import MlspSettings
from serving.upstream import Outcome

log = logging.getLogger("serving")

State = Literal["closed", "open", "half_open"]
STATES: tuple[State, ...] = ("closed", "open", "half_open")
Clock = Callable[[], float]
"""Monotonic seconds (time.monotonic, or a test's hand-driven clock)."""

BREAKER_STATE = Gauge(
    "mlsp_breaker_state",
    "1 for the breaker's current state (closed, open, half_open), 0 for the others.",
    ["service", "breaker", "state"],
    multiprocess_mode="max",
)
BREAKER_TRANSITIONS = Counter(
    "mlsp_breaker_transitions", "State changes of a breaker.", ["service", "breaker", "from", "to"]
)
BREAKER_CALLS = Counter(
    "mlsp_breaker_calls",
    "Calls through a breaker by outcome: success, slow (a success slower than the slow-call "
    "threshold), failure, ignored (a 4xx, or given back), not_permitted (open, or half-open with "
    "every probe out), bulkhead_full.",
    ["service", "breaker", "outcome"],
)
FALLBACKS = Counter(
    "mlsp_fallbacks",
    "Answers not given by the dependency, by source (cache, fallback_model, none: a 503) and "
    "reason (open, bulkhead_full, failed).",
    ["service", "dependency", "source", "reason"],
)


class BreakerSettings(MlspSettings):
    """A breaker's thresholds (`MLSP_` prefix); Resilience4j's names in brackets."""

    breaker_failure_rate: float = Field(50.0, gt=0, le=100)
    """Percent of failed calls in the window at or above which the breaker opens
    (failureRateThreshold)."""
    breaker_window_seconds: int = Field(10, ge=1, le=3600)
    """Length of the time-based sliding window, in seconds (slidingWindowSize, TIME_BASED)."""
    breaker_minimum_calls: int = Field(20, ge=1, le=1_000_000)
    """Calls the window must hold before its rates can open the breaker
    (minimumNumberOfCalls)."""
    breaker_consecutive_failures: int | None = Field(5, ge=1, le=10_000)
    """Failures in a row that open the breaker whatever the window holds (unset: off)."""
    open_seconds: float = Field(10.0, gt=0, le=3600)
    """How long the breaker stays open before it lets probes through
    (waitDurationInOpenState)."""
    breaker_half_open_calls: int = Field(3, ge=1, le=1000)
    """Probe calls admitted in half-open; all must succeed to close
    (permittedNumberOfCallsInHalfOpenState)."""
    breaker_slow_call_ms: float | None = Field(None, gt=0, le=600_000)
    """A successful call slower than this counts as slow (slowCallDurationThreshold); unset:
    the slow-call criterion is off."""
    breaker_slow_call_rate: float = Field(100.0, gt=0, le=100)
    """Percent of slow calls in the window at or above which the breaker opens
    (slowCallRateThreshold); only with MLSP_BREAKER_SLOW_CALL_MS."""


@dataclass(frozen=True)
class BreakerConfig:
    failure_rate: float = 50.0
    window_seconds: int = 10
    minimum_calls: int = 20
    consecutive_failures: int | None = 5
    open_seconds: float = 10.0
    half_open_calls: int = 3
    slow_call_seconds: float | None = None
    slow_call_rate: float = 100.0

    @classmethod
    def from_settings(cls, s: BreakerSettings) -> BreakerConfig:
        slow = s.breaker_slow_call_ms
        return cls(
            failure_rate=s.breaker_failure_rate,
            window_seconds=s.breaker_window_seconds,
            minimum_calls=s.breaker_minimum_calls,
            consecutive_failures=s.breaker_consecutive_failures,
            open_seconds=s.open_seconds,
            half_open_calls=s.breaker_half_open_calls,
            slow_call_seconds=None if slow is None else slow / 1000,
            slow_call_rate=s.breaker_slow_call_rate,
        )


@dataclass(frozen=True, slots=True)
class Permit:
    """One admitted call: recorded once, with `success`, `failure` or `release`."""

    epoch: int
    """The breaker's state epoch when admitted (each transition starts a new one)."""
    started: float
    probe: bool


class Window:
    """Calls, failures and slow calls of the last `seconds` seconds, in one-second buckets."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.buckets: deque[list[int]] = deque()  # [second, calls, failures, slow]
        self.calls = self.failures = self.slow = 0

    def _expire(self, now: float) -> None:
        oldest = math.floor(now) - self.seconds + 1
        while self.buckets and self.buckets[0][0] < oldest:
            _, calls, failures, slow = self.buckets.popleft()
            self.calls -= calls
            self.failures -= failures
            self.slow -= slow

    def add(self, now: float, *, failed: bool, slow: bool) -> None:
        self._expire(now)
        second = math.floor(now)
        if not self.buckets or self.buckets[-1][0] != second:
            self.buckets.append([second, 0, 0, 0])
        bucket = self.buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def rates(self, now: float) -> tuple[int, float, float]:
        """(calls, failure %, slow %) of the window at `now`."""
        self._expire(now)
        if not self.calls:
            return 0, 0.0, 0.0
        return self.calls, 100 * self.failures / self.calls, 100 * self.slow / self.calls


class CircuitBreaker:
    """The state machine of the module docstring, for one dependency."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        service: str = "proxy",
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self.clock = clock
        self.service = service
        self._state: State = "closed"
        self.epoch = 0
        self.window = Window(self.config.window_seconds)
        self.consecutive = 0
        self.opened_at: float | None = None
        self.probes = 0
        """Probes admitted in this half-open epoch (given-back ones not counted)."""
        self.probes_ok = 0
        self.wait = self.config.open_seconds
        self._gauges = {s: BREAKER_STATE.labels(service, name, s) for s in STATES}
        self._calls = {
            o: BREAKER_CALLS.labels(service, name, o)
            for o in ("success", "slow", "failure", "ignored", "not_permitted", "bulkhead_full")
        }
        self._publish()

    def _publish(self) -> None:
        for state, gauge in self._gauges.items():
            gauge.set(1 if state == self._state else 0)

    def count(self, outcome: str) -> None:
        self._calls[outcome].inc()

    @property
    def state(self) -> State:
        """The current state; OPEN becomes HALF_OPEN here once `open_seconds` have passed."""
        opened = self.opened_at
        if opened is not None and self._state == "open" and self.clock() - opened >= self.wait:
            self._move("half_open", "open for its full wait")
        return self._state

    def _move(self, to: State, why: str) -> None:
        was, self._state = self._state, to
        self.epoch += 1
        self.probes = self.probes_ok = 0
        if to == "open":
            self.opened_at = self.clock()
        else:  # half-open and closed start counting afresh
            self.consecutive = 0
        if to == "closed":
            self.opened_at = None
            self.window = Window(self.config.window_seconds)
        BREAKER_TRANSITIONS.labels(self.service, self.name, was, to).inc()
        self._publish()
        log.warning(
            "breaker state changed",
            extra={"breaker": self.name, "from": was, "to": to, "why": why},
        )

    def retry_after(self) -> int:
        """Whole seconds until the breaker lets a probe through (at least 1)."""
        if self._state != "open" or self.opened_at is None:
            return 1
        left = self.config.open_seconds - (self.clock() - self.opened_at)
        return max(1, math.ceil(left))

    def acquire(self) -> Permit | None:
        """A permit to call the dependency now, or None: answer from the fallback."""
        state = self.state
        if state == "open":
            self.count("not_permitted")
            return None
        if state == "half_open":
            if self.probes >= self.config.half_open_calls:
                self.count("not_permitted")
                return None
            self.probes += 1
            return Permit(self.epoch, self.clock(), probe=True)
        return Permit(self.epoch, self.clock(), probe=False)

    def _slow(self, permit: Permit) -> bool:
        limit = self.config.slow_call_seconds
        return limit is not None and self.clock() - permit.started > limit

    def success(self, permit: Permit) -> None:
        """The call succeeded (a slow success may still count against the dependency)."""
        slow = self._slow(permit)
        self.count("slow" if slow else "success")
        if permit.epoch != self.epoch:
            return
        if permit.probe:
            if slow:
                self._move("open", "a half-open probe was slow")
                return
            self.probes_ok += 1
            if self.probes_ok >= self.config.half_open_calls:
                self._move("closed", f"{self.probes_ok} half-open probes succeeded")
            return
        self.consecutive = 0
        self.window.add(self.clock(), failed=False, slow=slow)
        self._check()

    def failure(self, permit: Permit) -> None:
        """The call failed: a 5xx, a timeout, a connection error, an unusable answer."""
        self.count("failure")
        if permit.epoch != self.epoch:
            return
        if permit.probe:
            self._move("open", "a half-open probe failed")
            return
        self.consecutive += 1
        self.window.add(self.clock(), failed=True, slow=self._slow(permit))
        self._check()

    def release(self, permit: Permit) -> None:
        """The call ended without an outcome that says anything about the dependency (the
        caller left, the input was refused): nothing recorded, a probe slot freed."""
        self.count("ignored")
        if permit.epoch == self.epoch and permit.probe:
            self.probes -= 1

    def _check(self) -> None:
        c = self.config
        if c.consecutive_failures is not None and self.consecutive >= c.consecutive_failures:
            self._move("open", f"{self.consecutive} consecutive failures")
            return
        calls, failure_rate, slow_rate = self.window.rates(self.clock())
        if calls < c.minimum_calls:
            return
        if failure_rate >= c.failure_rate:
            self._move("open", f"failure rate {failure_rate:.0f}% of {calls} calls")
        elif c.slow_call_seconds is not None and slow_rate >= c.slow_call_rate:
            self._move("open", f"slow-call rate {slow_rate:.0f}% of {calls} calls")

    def snapshot(self) -> dict[str, Any]:
        """What GET /breaker shows."""
        state = self.state
        calls, failure_rate, slow_rate = self.window.rates(self.clock())
        c = self.config
        out: dict[str, Any] = {
            "dependency": self.name,
            "state": state,
            "window": {
                "seconds": c.window_seconds,
                "calls": calls,
                "failure_rate": round(failure_rate, 1),
                "slow_rate": round(slow_rate, 1),
                "minimum_calls": c.minimum_calls,
            },
            "consecutive_failures": self.consecutive,
            "thresholds": {
                "failure_rate": c.failure_rate,
                "consecutive_failures": c.consecutive_failures,
                "slow_call_ms": None if c.slow_call_seconds is None else c.slow_call_seconds * 1000,
                "slow_call_rate": c.slow_call_rate,
                "open_seconds": c.open_seconds,
                "half_open_calls": c.half_open_calls,
            },
        }
        if state == "open":
            out["retry_after"] = self.retry_after()
        if state == "half_open":
            out["probes"] = {"admitted": self.probes, "succeeded": self.probes_ok}
        return out


class Bulkhead:
    """At most `limit` calls in progress; `try_enter` says no at once rather than queueing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def try_enter(self) -> bool:
        if self.inflight >= self.limit:
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1


Refusal = Literal["open", "bulkhead_full"]


@dataclass(frozen=True)
class Refused:
    """The guard did not call the dependency: the breaker is open (or half-open with every
    probe out), or the bulkhead is full."""

    reason: Refusal


class Guard:
    """A breaker and a bulkhead in front of calls to one dependency."""

    def __init__(self, breaker: CircuitBreaker, bulkhead: Bulkhead) -> None:
        self.breaker = breaker
        self.bulkhead = bulkhead

    async def run(self, attempt: Callable[[], Awaitable[Outcome]]) -> Outcome | Refused:
        """The call's outcome, recorded by the breaker; or Refused, without calling it. A 4xx
        with an error body (the input refused) is not recorded; a cancelled call gives its
        permit back."""
        if not self.bulkhead.try_enter():
            self.breaker.count("bulkhead_full")
            return Refused("bulkhead_full")
        try:
            permit = self.breaker.acquire()
            if permit is None:
                return Refused("open")
            try:
                outcome = await attempt()
            except BaseException:
                self.breaker.release(permit)
                raise
            if outcome.ok:
                self.breaker.success(permit)
            elif outcome.client_error:
                self.breaker.release(permit)
            else:
                self.breaker.failure(permit)
            return outcome
        finally:
            self.bulkhead.leave()

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.breaker.snapshot(),
            "bulkhead": {"inflight": self.bulkhead.inflight, "limit": self.bulkhead.limit},
        }


Source = Literal["primary", "cache", "fallback_model"]


def answer_key(x: Batch) -> str:
    """The recent-answers key of a batch: the digest of its canonical float32 form."""
    return digest(canonical_rows(x))


class Fallback:
    """Degraded answers for calls to `dependency` (the module docstring): its recent answers,
    then `model()` (None: no model, or not ready), then 503."""

    def __init__(
        self,
        dependency: str,
        *,
        recent: LocalTier | None,
        model: Callable[[], Predictor | None],
        service: str = "proxy",
    ) -> None:
        self.dependency = dependency
        self.recent = recent
        self.model = model
        self.service = service

    def remember(self, key: str, answer: dict[str, Any]) -> None:
        """Keep the dependency's answer (`model`, `predictions`) for this input."""
        if self.recent is not None:
            self.recent.keep(key, encode(answer))

    def _count(self, source: str, reason: str) -> None:
        FALLBACKS.labels(self.service, self.dependency, source, reason).inc()

    async def answer(
        self, x: Batch, key: str, call: Call, *, reason: str, why: str, retry_after: int
    ) -> dict[str, Any]:
        """The degraded body for `x`, or Unavailable. `reason`: open, bulkhead_full or failed
        (the metric's label); `why`: what happened, in words (the body's `reason`)."""
        extra = {"degraded": True, "reason": why}
        cached = self.recent.get(key) if self.recent is not None else None
        if cached is not None:
            self._count("cache", reason)
            call.log["source"] = "cache"
            return {
                "request_id": call.request_id,
                **orjson.loads(cached),
                "source": "cache",
                **extra,
            }
        model = self.model()
        if model is not None:
            out = await model.predict(x, call)
            self._count("fallback_model", reason)
            call.log["source"] = "fallback_model"
            body = prediction_body(call.request_id, model.card, out)
            return {**body, "source": "fallback_model", **extra}
        self._count("none", reason)
        raise Unavailable(
            f"{self.dependency} is unavailable ({why}) and no fallback answered",
            dependency=self.dependency,
            retry_after=retry_after,
            reason=reason,
        )
