"""Process declaration of prediction_monitoring (see patterns/declare.py).

prediction_log's processes (the api that logs every prediction, the log writer, the retention
step) plus the monitor, which reads the log's window and compares it with the training data,
and a bounded traffic generator (a Job: in-distribution rows of the card's reference sample).
A local run also starts Prometheus, which scrapes every process and evaluates the overlay's
alert rules, and Alertmanager with a webhook receiver (patterns/alerting.py); on Kubernetes the
cluster's own monitoring stack plays those parts.
"""

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict
from patterns.prediction_log.pattern import PATTERN as LOG

DATABASE = "sqlite:///{data}/prediction_monitoring.db"
"""The log of this pattern's run, locally: not prediction_log's own (its example empties it)."""
LOG_PROCESSES = tuple(
    replace(p, env={**p.env, "MLSP_DATABASE_URL": DATABASE}) if "MLSP_DATABASE_URL" in p.env else p
    for p in LOG.processes
)

TRAFFIC_COUNT = "400"
MIN_INSTANCES = "200"
"""The monitor's minimum for a verdict (MLSP_MONITOR_MIN_INSTANCES)."""


def in_distribution(out: Mapping[str, Any]) -> Verdict:
    """POST /drift/run after the traffic Job: the window holds enough of its instances for a
    verdict (the last of them may still be on their way through the log: it is asynchronous),
    and the verdict on rows drawn from the training sample is not critical on any feature."""
    body = smoke.mapping(smoke.mapping(out.get("body")).get("result"))
    features = [smoke.mapping(f) for f in body.get("features") or []]
    psi = {f.get("name"): f.get("psi") for f in features}
    ok = (
        out.get("status") == 200
        and int(body.get("instances") or 0) >= int(out.get("expected") or 1)
        and body.get("verdict") in {"ok", "warning"}
        and all(isinstance(v, float) and v < 0.25 for v in psi.values())
        and len(psi) == 4
    )
    return ok, f"verdict {body.get('verdict')}, {body.get('instances')} instances, PSI {psi}"


PATTERN = Pattern(
    id="prediction_monitoring",
    summary="Drift of the logged predictions against training, as gauges, alerts and a report",
    processes=(
        *LOG_PROCESSES,
        Process(
            "monitor",
            "patterns.prediction_monitoring.monitor",
            env={
                "MLSP_SERVICE": "drift-monitor",
                "MLSP_DATABASE_URL": DATABASE,
                "MLSP_MODEL_DIR": "{model:iris-svc}",
            },
        ),
        Process(
            "traffic",
            "patterns.prediction_monitoring.traffic",
            env={
                "MLSP_TRAFFIC_URL": "{url:api}",
                "MLSP_MODEL_DIR": "{model:iris-svc}",
                "MLSP_TRAFFIC_COUNT": TRAFFIC_COUNT,
                "MLSP_TRAFFIC_RATE": "50",
                "MLSP_TRAFFIC_WAIT_SECONDS": "120",
            },
            port=None,
            kube_kind="Job",
        ),
    ),
    needs=("redis", "alertmanager", "prometheus"),
    models=("iris-svc", "iris-ocsvm"),
    aliases=("monitoring",),
    entry="monitor",
    public=("api",),  # clients send their predictions to it
    smoke=Smoke(
        calls=(
            Call(
                "post",
                ("/drift/run", "{}", MIN_INSTANCES),
                in_distribution,
                "POST /drift/run after {env:traffic:MLSP_TRAFFIC_COUNT} in-distribution "
                f"requests: a verdict on at least {MIN_INSTANCES} instances, no feature drifted",
                retries=3,
            ),
        )
    ),
)
