"""The step load, loaded by locust next to a pattern's locustfile (`locust -f LOCUSTFILE,THIS`).

`SteppedLoad` holds each step's users for its seconds (MLSP_LOADTEST_STEPS, e.g.
10:20,50:20,100:20), snapshots every endpoint's counts at each step's end, and stops the run
after the last step, or early when the SLO (MLSP_LOADTEST_SLO) has been breached for its
`abort_after` seconds on a sliding window of the last WINDOW seconds. When locust quits it
writes MLSP_LOADTEST_OUT/raw.json: the figures of each step and of the whole run (read by
patterns/load_test/run.py, which adds the machine and the SLO verdict).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from locust import LoadTestShape, events
from locust.stats import RequestStats, StatsEntry

from patterns.load_test import slo as slo_mod
from patterns.load_test.figures import DEFAULT_STEPS, Counts, all_figures, parse_steps
from patterns.load_test.slo import ALL

WINDOW = 5.0
"""Seconds of traffic an early-abort check judges (shorter windows are noise)."""


def counts_of(entry: StatsEntry) -> Counts:
    return Counts(
        entry.num_requests,
        entry.num_failures,
        float(entry.total_response_time),
        float(entry.max_response_time or 0),
        dict(entry.response_times),
    )


def snapshot(stats: RequestStats) -> dict[str, Counts]:
    out = {f"{method} {name}": counts_of(e) for (name, method), e in stats.entries.items()}
    out[ALL] = counts_of(stats.total)
    return out


def minus(later: dict[str, Counts], earlier: dict[str, Counts]) -> dict[str, Counts]:
    return {k: c.minus(earlier.get(k, Counts())) for k, c in later.items()}


class SteppedLoad(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.steps = parse_steps(os.environ.get("MLSP_LOADTEST_STEPS", DEFAULT_STEPS))
        self.out = Path(os.environ.get("MLSP_LOADTEST_OUT", "."))
        path = os.environ.get("MLSP_LOADTEST_SLO", "")
        self.slo = slo_mod.load(Path(path)) if path else None
        self.done: list[dict[str, Any]] = []
        self.step_start: tuple[float, dict[str, Counts]] | None = None
        self.window: deque[tuple[float, dict[str, Counts]]] = deque()
        self.breach_since: float | None = None
        self.aborted: str | None = None
        self.written = False
        events.quit.add_listener(lambda **_: self.write())  # type: ignore[no-untyped-call]

    def run_time(self) -> float:
        return time.perf_counter() - float(self.start_time)

    def _stats(self) -> RequestStats:
        assert self.runner is not None
        return self.runner.stats

    def _close_step(self, now: float) -> None:
        if self.step_start is None:
            return
        started, before = self.step_start
        step = self.steps[len(self.done)]
        seconds = max(now - started, 1e-9)
        self.done.append(
            {
                "users": step.users,
                "planned_seconds": step.seconds,
                "seconds": round(seconds, 2),
                "figures": all_figures(minus(snapshot(self._stats()), before), seconds),
            }
        )
        self.step_start = None

    def _judge(self, now: float) -> bool:
        """Whether the SLO has been breached on the sliding window for abort_after seconds."""
        if self.slo is None or self.slo.abort_after is None:
            return False
        self.window.append((now, snapshot(self._stats())))
        while self.window and now - self.window[0][0] > WINDOW:
            self.window.popleft()
        first_t, first = self.window[0]
        if now < WINDOW or now - first_t < WINDOW - 1.5:
            return False
        breaches = slo_mod.check(
            self.slo, all_figures(minus(self.window[-1][1], first), now - first_t)
        )
        if not breaches:
            self.breach_since = None
            return False
        if self.breach_since is None:
            self.breach_since = now
        if now - self.breach_since >= self.slo.abort_after:
            self.aborted = f"SLO breached for {self.slo.abort_after:g} s: " + "; ".join(
                str(b) for b in breaches
            )
            return True
        return False

    def tick(self) -> tuple[int, float] | None:
        now = self.run_time()
        elapsed = 0.0
        for i, step in enumerate(self.steps):
            if now < elapsed + step.seconds:
                if len(self.done) < i:  # a step ended since the last tick
                    self._close_step(now)
                if self.step_start is None:
                    self.step_start = (now, snapshot(self._stats()))
                if self._judge(now):
                    self._close_step(now)
                    return None
                return step.users, float(step.users)
            elapsed += step.seconds
        self._close_step(now)
        return None

    def write(self) -> None:
        if self.written:
            return
        self.written = True
        if self.step_start is not None:
            self._close_step(self.run_time())
        seconds = sum(s["seconds"] for s in self.done) or self.run_time()
        raw = {
            "planned": [{"users": s.users, "seconds": s.seconds} for s in self.steps],
            "steps": self.done,
            "seconds": round(seconds, 2),
            "figures": all_figures(snapshot(self._stats()), seconds),
            "aborted": self.aborted,
            "finished_at": time.time(),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "raw.json").write_text(json.dumps(raw, indent=2) + "\n")
