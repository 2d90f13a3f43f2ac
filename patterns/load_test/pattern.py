"""Process declaration of load_test (see patterns/declare.py).

web_single's API (three replicas on Kubernetes) and the load test Job that runs headless
locust against it: web_single's locustfile (a ConfigMap on Kubernetes), stepped users, the SLO
of patterns/load_test/slo.yaml. Locally the Job is a short smoke run; on Kubernetes it runs
the book's steps, 10 -> 50 -> 100 users.
"""

import json
from dataclasses import replace

from patterns import smoke
from patterns.declare import JobLog, Pattern, Process, Smoke, Verdict
from patterns.web_single.pattern import PATTERN as WEB_SINGLE


def clean_run(log: str) -> Verdict:
    """The Job's summary line: requests made, none failed, the SLO met."""
    lines = (ln for ln in reversed(log.splitlines()) if '"event": "summary"' in ln)
    summary = smoke.mapping(json.loads(next(lines, "null")))
    totals = smoke.mapping(summary.get("totals"))
    slo = smoke.mapping(summary.get("slo"))
    ok = totals.get("requests", 0) > 0 and totals.get("failures") == 0 and slo.get("passed")
    shown = {k: totals.get(k) for k in ("requests", "failures", "rps", "p99_ms")}
    return bool(ok), json.dumps({**shown, "slo": slo}) if summary else log[-300:]


PATTERN = Pattern(
    id="load_test",
    summary="Stepped headless locust against web_single: an SLO gate and a capacity search",
    processes=(
        *WEB_SINGLE.processes,
        Process(
            "locust",
            "patterns.load_test.job",
            env={
                "MLSP_TARGET_URL": "{url:api}",
                "MLSP_LOCUSTFILE": "patterns/web_single/locustfile.py",
                "MLSP_SLO_FILE": "patterns/load_test/slo.yaml",
                "MLSP_STEPS": "2:5",
                "MLSP_RESULTS_DIR": "{workdir}/load-test",
            },
            port=None,
            kube_kind="Job",
        ),
    ),
    models=WEB_SINGLE.models,
    entry="api",
    # the entry Service is web_single's own (web-single), open to clients as there
    public=("api",),
    smoke=Smoke(
        calls=(replace(smoke.predict(), service="web-single"),),
        logs=(JobLog("locust", clean_run, "load test Job: requests made, no errors, SLO met"),),
    ),
)
