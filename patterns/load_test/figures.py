"""What a load test measures, without locust: the step plan, per-endpoint counts and
response-time histograms (`Counts`), the figures computed from them, and the machine.

The histograms are locust's own (milliseconds, rounded as locust rounds: to 1 ms below 100
ms, 10 ms below 1 s), so percentiles here are those of locust's CSV and HTML report; a step's
figures are the difference of two snapshots taken at its start and its end.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from patterns.load_test.slo import PERCENTILES

MAX_STEPS = 10
MAX_USERS = 1000
MAX_STEP_SECONDS = 600
MAX_TOTAL_SECONDS = 1800
DEFAULT_STEPS = "10:20,50:20,100:20"
"""The book's steps: 10, 50, then 100 users, 20 seconds each (60 s, as the book's run)."""


@dataclass(frozen=True)
class Step:
    users: int
    seconds: int


def parse_steps(text: str) -> tuple[Step, ...]:
    """`USERS:SECONDS,...` (10:20,50:20,100:20), bounded in count, users and time."""
    steps = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*s?\s*", part)
        if m is None:
            raise ValueError(f"steps: {part.strip()!r} is not USERS:SECONDS (e.g. 10:20)")
        users, seconds = int(m[1]), int(m[2])
        if not 1 <= users <= MAX_USERS:
            raise ValueError(f"steps: {users} users is outside 1..{MAX_USERS}")
        if not 1 <= seconds <= MAX_STEP_SECONDS:
            raise ValueError(f"steps: {seconds} s is outside 1..{MAX_STEP_SECONDS}")
        steps.append(Step(users, seconds))
    if len(steps) > MAX_STEPS:
        raise ValueError(f"steps: more than {MAX_STEPS}")
    if sum(s.seconds for s in steps) > MAX_TOTAL_SECONDS:
        raise ValueError(f"steps: more than {MAX_TOTAL_SECONDS} s in all")
    return tuple(steps)


def format_steps(steps: tuple[Step, ...]) -> str:
    return ",".join(f"{s.users}:{s.seconds}" for s in steps)


@dataclass
class Counts:
    """An endpoint's cumulative counts at one moment (locust's StatsEntry, copied)."""

    requests: int = 0
    failures: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    hist: dict[int, int] = field(default_factory=dict)
    """Response time (ms, rounded as locust does) -> number of requests."""

    def minus(self, earlier: Counts) -> Counts:
        hist = {k: v - earlier.hist.get(k, 0) for k, v in self.hist.items()}
        hist = {k: v for k, v in hist.items() if v > 0}
        return Counts(
            self.requests - earlier.requests,
            self.failures - earlier.failures,
            self.total_ms - earlier.total_ms,
            float(max(hist, default=0)),
            hist,
        )


def percentile(hist: Mapping[int, int], requests: int, q: float) -> float:
    """The response time below which a share `q` of the requests fall (locust's rule)."""
    if requests <= 0:
        return 0.0
    keep = int(requests * q)
    seen = 0
    for ms in sorted(hist, reverse=True):
        seen += hist[ms]
        if requests - seen <= keep:
            return float(ms)
    return 0.0


def figures(counts: Counts, seconds: float) -> dict[str, Any]:
    """The summary figures of one endpoint over `seconds`."""
    n = counts.requests
    out: dict[str, Any] = {
        "requests": n,
        "failures": counts.failures,
        "error_rate": round(counts.failures / n, 6) if n else 0.0,
        "rps": round(n / seconds, 2) if seconds > 0 else 0.0,
        "mean_ms": round(counts.total_ms / n, 3) if n else 0.0,
        "max_ms": round(counts.max_ms, 1),
    }
    for p in PERCENTILES:
        out[f"p{p}_ms"] = percentile(counts.hist, n, float(p) / 100)
    return out


def all_figures(counts: Mapping[str, Counts], seconds: float) -> dict[str, dict[str, Any]]:
    return {name: figures(c, seconds) for name, c in counts.items()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_sha(root: Path) -> str:
    """The commit the code came from (MLSP_GIT_SHA in an image without .git)."""
    if sha := os.environ.get("MLSP_GIT_SHA"):
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def environment(root: Path) -> dict[str, Any]:
    """The machine a figure was measured on: without it a number means little."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    try:  # not `import locust`: that monkey-patches this process for gevent
        locust_version = metadata.version("locust")
    except metadata.PackageNotFoundError:
        locust_version = "not installed"
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": load,
        "python": platform.python_version(),
        "locust": locust_version,
        "platform": platform.platform(),
        "git_sha": git_sha(root),
    }


def describe(env: Mapping[str, Any]) -> str:
    """One line: `<cpu> x N cores, load average a b c, Python x, git abcdef1`."""
    load = " ".join(str(x) for x in env.get("load_average") or []) or "unknown"
    return (
        f"{env.get('cpu_model')} x {env.get('cores')} cores, load average {load}, "
        f"Python {env.get('python')}, locust {env.get('locust')}, "
        f"git {str(env.get('git_sha'))[:12]}"
    )
