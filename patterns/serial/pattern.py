"""Process declaration of serial (see patterns/declare.py)."""

import json

from patterns.declare import Pattern, Process

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
)
