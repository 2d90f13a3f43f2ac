"""Process declaration of serial (see patterns/declare.py)."""

import json
from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict

STAGES = json.dumps(
    [
        {
            "name": "outlier",
            "url": "{url:outlier}",
            "timeout": 0.3,
            "on_error": "fail",
            "stop_below": 0.0,
        },
        {"name": "classify", "url": "{url:classify}", "timeout": 0.5, "on_error": "fail"},
    ]
)

# An inlier (iris-ocsvm score 0.42) and an outlier (-0.20, below the gate's 0.0): the outlier
# is "unknown" and never reaches stage 2.
SMOKE_ROWS = json.dumps(
    {"instances": [[5.1, 3.4, 1.5, 0.2], [7.0, 3.2, 4.7, 1.4]], "labels": ["setosa", "unknown"]}
)


def gate_stops_outlier(out: Mapping[str, Any]) -> Verdict:
    """The expected labels, and stage 2 (classify) received only the inlier rows."""
    body = smoke.mapping(out.get("body"))
    got, expected = smoke.labels(body), out.get("expected") or []
    stages = [smoke.mapping(s) for s in body.get("stages") or []]
    reached = {s.get("name"): s.get("rows") for s in stages}
    inliers = sum(label != "unknown" for label in expected)
    ok = out.get("status") == 200 and got == expected and reached.get("classify") == inliers
    return ok, f"labels {got}, expected {expected}; rows per stage {reached}"


PATTERN = Pattern(
    id="serial",
    summary="Models in order: an outlier gate (iris-ocsvm), then the classifier (iris-svc)",
    processes=(
        Process(
            "outlier",
            "patterns.serial.stage",
            env={"MLSP_SERVICE": "serial-outlier", "MLSP_MODEL_DIR": "{model:iris-ocsvm}"},
        ),
        Process(
            "classify",
            "patterns.serial.stage",
            env={"MLSP_SERVICE": "serial-classify", "MLSP_MODEL_DIR": "{model:iris-svc}"},
        ),
        Process(
            "proxy",
            "patterns.serial.proxy",
            env={
                "MLSP_SERVICE": "serial-proxy",
                "MLSP_STAGES": STAGES,
                "MLSP_DEFAULT_BUDGET_MS": "1000",
            },
        ),
    ),
    models=("iris-ocsvm", "iris-svc"),
    entry="proxy",
    smoke=Smoke(
        calls=(
            Call(
                "predict",
                (SMOKE_ROWS,),
                gate_stops_outlier,
                "POST {service}/predict: the outlier is unknown and stops at the gate",
            ),
        )
    ),
)
