"""The load test as a Kubernetes Job (manifests/patterns/load_test/job.yaml): one stepped run
of the locustfile MLSP_LOCUSTFILE (a ConfigMap there) against MLSP_TARGET_URL, judged by
MLSP_SLO_FILE. It waits for the target's /readyz (a Job may start before its target), prints
the summary as one JSON log line (`"event": "summary"`), and exits as `run` does: 0 SLO met,
1 breached, 2 a bad SLO file or steps, 3 the load test could not be made.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from patterns.load_test.figures import DEFAULT_STEPS, describe, parse_steps
from patterns.load_test.run import (
    BREACH,
    FAILED,
    OK,
    USAGE,
    LoadTestError,
    print_summary,
    run_locust,
    wait_ready,
)
from patterns.load_test.slo import SloError
from patterns.load_test.slo import load as load_slo
from serving.settings import MlspSettings


class LoadTestJobSettings(MlspSettings):
    """The load test Job's knobs (manifests/patterns/load_test/job.yaml sets them)."""

    target_url: str = "http://web-single:8000"
    """Base URL the load test loads; its /readyz is awaited first."""
    locustfile: Path = Path("patterns/web_single/locustfile.py")
    """The locustfile run (on Kubernetes: from the ConfigMap load-test-locust)."""
    slo_file: str = ""
    """SLO file the run is judged by (exit 1 on a breach); empty: no gate."""
    steps: str = DEFAULT_STEPS
    """USERS:SECONDS per step, comma-separated (the book's 10 -> 50 -> 100 users)."""
    results_dir: Path = Path("load-test-results")
    """Folder for locust's CSV files, its HTML report and summary.json."""
    ready_timeout_seconds: float = 120.0
    """How long to wait for the target's /readyz before giving up (exit 3)."""


def log(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "service": "load-test", **fields}), flush=True)


def main() -> int:
    try:
        cfg = LoadTestJobSettings()
        steps = parse_steps(cfg.steps)
        slo_file = Path(cfg.slo_file) if cfg.slo_file else None
        slo = load_slo(slo_file) if slo_file else None
    except (SloError, ValueError) as exc:  # a pydantic ValidationError is a ValueError
        log("error", message=str(exc))
        return USAGE
    try:
        wait_ready(cfg.target_url, cfg.ready_timeout_seconds)
        log("start", host=cfg.target_url, steps=cfg.steps)
        summary = run_locust(
            cfg.locustfile, cfg.target_url, steps, cfg.results_dir, slo_file,
            pattern="web_single", slo=slo,
        )  # fmt: skip
    except LoadTestError as exc:
        log("error", message=str(exc))
        return FAILED
    print_summary(summary)
    passed = summary.get("slo", {}).get("passed", True)
    # the last line, short enough for a log tail (kube/play.py reads the last 1500 bytes)
    keys = ("requests", "failures", "error_rate", "rps", "p50_ms", "p95_ms", "p99_ms")
    log(
        "summary",
        totals={k: summary["totals"].get(k) for k in keys},
        steps=[
            {"users": st["users"], **{k: st["figures"].get("*", {}).get(k) for k in keys[2:]}}
            for st in summary["steps"]
        ],
        aborted=summary["aborted"],
        slo=summary.get("slo"),
        machine=describe(summary["environment"]),
    )
    return OK if passed else BREACH


if __name__ == "__main__":
    sys.exit(main())
