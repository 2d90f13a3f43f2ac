"""Capacity search: the most load the target sustains within its SLO, on this machine.

A probe is one locust run holding N users for a few seconds. The search doubles N from
`start` until a probe breaks the SLO (any latency or error threshold; errors above 1% always
count) or N reaches `max_users`; then bisects between the last good and the first bad N until
they are within `tolerance` (10%) of each other; then runs the best good N twice more. Both
confirmations must hold, else that N counts as bad and the bisection goes on below it. Every
step is bounded: at most `max_probes` probes. Throughput floors of the SLO (rps > X) are left
out of the judgement: the sustainable RPS is what the search reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from patterns.load_test import slo as slo_mod
from patterns.load_test.run import figures_of
from patterns.load_test.slo import ALL, Slo, Threshold

ERROR_CEILING = Threshold("error_rate", "<=", 0.01, "errors <= 1%")
"""Errors above 1% break the search whatever the SLO says."""

Probe = Callable[[int], Mapping[str, Any]]
"""Runs `users` for the probe's seconds; returns the run's summary."""


@dataclass
class Attempt:
    users: int
    rps: float
    p99_ms: float
    error_rate: float
    breaches: list[str]
    purpose: str

    @property
    def ok(self) -> bool:
        return not self.breaches


@dataclass
class Capacity:
    attempts: list[Attempt] = field(default_factory=list)
    users: int | None = None
    """The sustainable users (None: even `start` breaks the SLO)."""
    rps: float | None = None
    """The lowest RPS of the confirmation runs at `users`."""
    capped: bool = False
    """`max_users` held: the real capacity is higher than measured."""
    exhausted: bool = False
    """Stopped at `max_probes` before the search converged."""


def with_ceiling(slo: Slo) -> Slo:
    overall = slo.thresholds.get(ALL, ())
    return Slo({**slo.thresholds, ALL: (*overall, ERROR_CEILING)}, slo.abort_after)


@dataclass
class _Search:
    probe: Probe
    slo: Slo
    max_probes: int
    say: Callable[[str], None]
    result: Capacity = field(default_factory=Capacity)

    def attempt(self, users: int, purpose: str) -> Attempt:
        summary = self.probe(users)
        totals = summary.get("totals", {})
        breaches = [str(b) for b in slo_mod.check(self.slo, figures_of(summary), floors=False)]
        if summary.get("aborted"):
            breaches.append(f"aborted: {summary['aborted']}")
        a = Attempt(
            users,
            float(totals.get("rps", 0.0)),
            float(totals.get("p99_ms", 0.0)),
            float(totals.get("error_rate", 0.0)),
            breaches,
            purpose,
        )
        self.result.attempts.append(a)
        verdict = "ok" if a.ok else "BREACH " + "; ".join(breaches)
        self.say(
            f"probe {len(self.result.attempts):>2} {purpose:8} {users:>4} users "
            f"{a.rps:>8.1f} rps p99 {a.p99_ms:>6.1f} ms errors {100 * a.error_rate:5.2f}%  "
            f"{verdict}"
        )
        return a

    def budget(self) -> bool:
        if len(self.result.attempts) >= self.max_probes:
            self.result.exhausted = True
            return False
        return True

    def raise_load(self, users: int, max_users: int) -> tuple[int | None, int | None]:
        """Double from `users` until a breach or max_users: (last good, first bad)."""
        good: int | None = None
        while self.budget():
            if not self.attempt(users, "raise").ok:
                return good, users
            good = users
            if users >= max_users:
                self.result.capped = True
                break
            users = min(users * 2, max_users)
        return good, None

    def bisect(self, good: int, bad: int | None, tolerance: float) -> int:
        while bad is not None and bad - good > max(1, int(good * tolerance)) and self.budget():
            mid = (good + bad) // 2
            if self.attempt(mid, "bisect").ok:
                good = mid
            else:
                bad = mid
        return good

    def confirm(self, users: int) -> list[Attempt]:
        """Two more runs at `users`; stops at the first that breaks."""
        confirmed: list[Attempt] = []
        while len(confirmed) < 2 and self.budget():
            a = self.attempt(users, "confirm")
            if not a.ok:
                break
            confirmed.append(a)
        return confirmed


def search(
    probe: Probe,
    slo: Slo,
    *,
    start: int = 5,
    max_users: int = 200,
    tolerance: float = 0.1,
    max_probes: int = 16,
    say: Callable[[str], None] = print,
) -> Capacity:
    s = _Search(probe, with_ceiling(slo), max_probes, say)
    result = s.result
    good, bad = s.raise_load(max(1, min(start, max_users)), max_users)
    while good is not None:
        good = s.bisect(good, bad, tolerance)
        confirmed = s.confirm(good)
        if len(confirmed) == 2:
            result.users = good
            result.rps = min(a.rps for a in confirmed)
            return result
        if result.exhausted:
            return result
        # a confirmation broke: `good` is not sustainable; look below it
        bad, result.capped = good, False
        below = [a.users for a in result.attempts if a.ok and a.users < good]
        good = max(below) if below else None
    return result
