"""One headless locust run of stepped load, and its summary.

`run_locust` starts `python -m locust` on a pattern's locustfile plus
patterns/load_test/shape/locustfile.py (the step shape), waits for it (bounded: the steps'
time plus a margin), and writes into its folder: locust's CSV files (locust_stats.csv,
locust_stats_history.csv, locust_failures.csv), locust's HTML report (report.html), its log
(locust.log) and summary.json: per step and in all, per endpoint, RPS, p50/p90/p95/p99/p99.9,
mean, max and errors; the machine (CPU model, cores, load average, Python, locust, git sha);
the SLO verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx

from patterns.load_test import slo as slo_mod
from patterns.load_test.figures import Step, describe, environment, format_steps
from patterns.load_test.slo import ALL, Slo

ROOT = Path(__file__).resolve().parents[2]
STEPS_FILE = Path(__file__).parent / "shape" / "locustfile.py"
MARGIN_SECONDS = 60
"""Locust may take this long beyond its steps (start, stop, reports) before it is killed."""


OK, BREACH, USAGE, FAILED = 0, 1, 2, 3
"""Exit codes: done (SLO met or none given), SLO breached, bad usage or SLO file, the load
test could not be made."""


class LoadTestError(RuntimeError):
    """The load test could not be made (target not ready, locust failed): exit code 3."""


def wait_ready(host: str, timeout: float) -> None:
    """Wait until `host`/readyz answers 200 (a Job may start before its target)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            resp = httpx.get(f"{host.rstrip('/')}/readyz", timeout=httpx.Timeout(2.0, connect=0.5))
            if resp.status_code == 200:
                return
            last = f"{resp.status_code} {resp.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise LoadTestError(f"target {host} is not ready: {last}")
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def run_locust(
    locustfile: Path,
    host: str,
    steps: tuple[Step, ...],
    out: Path,
    slo_path: Path | None = None,
    *,
    pattern: str = "",
    slo: Slo | None = None,
) -> dict[str, Any]:
    """Run the steps against `host`; return the summary (also written to out/summary.json)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw.json").unlink(missing_ok=True)
    env = {
        **os.environ,
        "MLSP_LOADTEST_STEPS": format_steps(steps),
        "MLSP_LOADTEST_OUT": str(out.resolve()),
        "MLSP_LOADTEST_SLO": str(slo_path.resolve()) if slo_path else "",
    }
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        f"{locustfile.resolve()},{STEPS_FILE}",
        "--headless",
        "--host",
        host,
        "--csv",
        str(out / "locust"),
        "--html",
        str(out / "report.html"),
        "--only-summary",
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",
    ]
    seconds = sum(s.seconds for s in steps)
    started = time.time()
    with (out / "locust.log").open("w") as log:
        try:
            done = subprocess.run(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                timeout=seconds + MARGIN_SECONDS,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise LoadTestError(f"locust ran past {seconds + MARGIN_SECONDS} s") from exc
    raw_path = out / "raw.json"
    if not raw_path.exists():
        tail = (out / "locust.log").read_text(errors="replace")[-2000:]
        raise LoadTestError(f"locust exited {done.returncode} without results:\n{tail}")
    raw = json.loads(raw_path.read_text())
    summary: dict[str, Any] = {
        "pattern": pattern,
        "host": host,
        "locustfile": str(locustfile),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "planned": raw["planned"],
        "seconds": raw["seconds"],
        "aborted": raw["aborted"],
        "totals": raw["figures"].get(ALL, {}),
        "endpoints": {k: v for k, v in raw["figures"].items() if k != ALL},
        "steps": raw["steps"],
        "environment": environment(ROOT),
        "files": {
            "summary": str(out / "summary.json"),
            "csv": str(out / "locust_stats.csv"),
            "history_csv": str(out / "locust_stats_history.csv"),
            "html": str(out / "report.html"),
        },
    }
    if slo is not None:
        summary["slo"] = verdict(slo, slo_path, summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def figures_of(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Endpoint ("*" for all) -> figures, as the SLO check reads them."""
    return {ALL: summary.get("totals", {}), **summary.get("endpoints", {})}


def verdict(slo: Slo, path: Path | None, summary: Mapping[str, Any]) -> dict[str, Any]:
    breaches = slo_mod.check(slo, figures_of(summary))
    return {
        "file": str(path) if path else None,
        "passed": not breaches and not summary.get("aborted"),
        "breaches": [str(b) for b in breaches],
    }


def ms(value: Any) -> str:
    return f"{float(value):.1f}" if value is not None else "-"


def table(summary: Mapping[str, Any]) -> list[str]:
    """The summary as printed lines: one per step, then the whole run per endpoint."""
    head = f"{'':32} {'users':>5} {'requests':>9} {'rps':>8} {'p50':>6} {'p95':>6} {'p99':>6} "
    lines = [head + f"{'errors':>7}  (ms)"]

    def row(label: str, users: Any, f: Mapping[str, Any]) -> str:
        return (
            f"{label:32} {users!s:>5} {f.get('requests', 0):>9} {f.get('rps', 0):>8.1f} "
            f"{ms(f.get('p50_ms')):>6} {ms(f.get('p95_ms')):>6} {ms(f.get('p99_ms')):>6} "
            f"{100 * f.get('error_rate', 0):>6.2f}%"
        )

    for i, step in enumerate(summary.get("steps", []), 1):
        lines.append(row(f"step {i}", step["users"], step["figures"].get(ALL, {})))
    for name, f in summary.get("endpoints", {}).items():
        lines.append(row(name[:32], "", f))
    lines.append(row("all", "", summary.get("totals", {})))
    return lines


def print_summary(summary: Mapping[str, Any], out: TextIO = sys.stdout) -> None:
    for line in table(summary):
        print(line, file=out)
    print(f"machine: {describe(summary.get('environment', {}))}", file=out)
    if summary.get("aborted"):
        print(f"aborted early: {summary['aborted']}", file=out)
    print(f"results: {summary['files']['summary']} (CSV and report.html beside it)", file=out)
