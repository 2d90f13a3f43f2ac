"""The load test as a Kubernetes Job (manifests/patterns/load_test/job.yaml): one stepped run
of the locustfile MLSP_LOCUSTFILE (a ConfigMap there) against MLSP_TARGET_URL, judged by
MLSP_SLO_FILE. It waits for the target's /readyz (a Job may start before its target), prints
the summary as one JSON log line (`"event": "summary"`), and exits as `run` does: 0 SLO met,
1 breached, 2 a bad SLO file or steps, 3 the load test could not be made.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from patterns.load_test.figures import DEFAULT_STEPS, parse_steps
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


def log(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "service": "load-test", **fields}), flush=True)


def main() -> int:
    host = os.environ.get("MLSP_TARGET_URL", "http://web-single:8000")
    locustfile = Path(os.environ.get("MLSP_LOCUSTFILE", "patterns/web_single/locustfile.py"))
    slo_file = os.environ.get("MLSP_SLO_FILE", "")
    out = Path(os.environ.get("MLSP_RESULTS_DIR", "load-test-results"))
    try:
        steps = parse_steps(os.environ.get("MLSP_STEPS", DEFAULT_STEPS))
        slo = load_slo(Path(slo_file)) if slo_file else None
    except (SloError, ValueError) as exc:
        log("error", message=str(exc))
        return USAGE
    try:
        wait_ready(host, float(os.environ.get("MLSP_READY_TIMEOUT_SECONDS", "120")))
        log("start", host=host, steps=os.environ.get("MLSP_STEPS", DEFAULT_STEPS))
        summary = run_locust(
            locustfile, host, steps, out, Path(slo_file) if slo_file else None,
            pattern="web_single", slo=slo,
        )  # fmt: skip
    except LoadTestError as exc:
        log("error", message=str(exc))
        return FAILED
    print_summary(summary, out=sys.stderr)
    passed = summary.get("slo", {}).get("passed", True)
    log(
        "summary",
        totals=summary["totals"],
        steps=[{"users": s["users"], **s["figures"].get("*", {})} for s in summary["steps"]],
        aborted=summary["aborted"],
        slo=summary.get("slo"),
        environment=summary["environment"],
    )
    return OK if passed else BREACH


if __name__ == "__main__":
    sys.exit(main())
