"""Process declaration of parallel (see patterns/declare.py)."""

import json

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

BACKENDS = json.dumps(
    [
        {"name": c, "url": "{url:" + c + "}", "timeout": 0.5}
        for c in ("setosa", "versicolor", "virginica")
    ]
)

# One iris of each class; each one-vs-rest model gives its own class the highest probability.
SMOKE_ROWS = json.dumps(
    {
        "instances": [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]],
        "labels": ["setosa", "versicolor", "virginica"],
    }
)

PATTERN = Pattern(
    id="parallel",
    summary="Three one-vs-rest models scored concurrently; latency of the slowest, not the sum",
    processes=(
        Process(
            "setosa",
            "patterns.parallel.backend",
            env={"MLSP_SERVICE": "parallel-setosa", "MLSP_MODEL_DIR": "{model:iris-ovr-setosa}"},
        ),
        Process(
            "versicolor",
            "patterns.parallel.backend",
            env={
                "MLSP_SERVICE": "parallel-versicolor",
                "MLSP_MODEL_DIR": "{model:iris-ovr-versicolor}",
            },
        ),
        Process(
            "virginica",
            "patterns.parallel.backend",
            env={
                "MLSP_SERVICE": "parallel-virginica",
                "MLSP_MODEL_DIR": "{model:iris-ovr-virginica}",
            },
        ),
        Process(
            "proxy",
            "patterns.parallel.proxy",
            env={
                "MLSP_SERVICE": "parallel-proxy",
                "MLSP_BACKENDS": BACKENDS,
                "MLSP_AGGREGATION": "require_all",
            },
        ),
    ),
    models=("iris-ovr-setosa", "iris-ovr-versicolor", "iris-ovr-virginica"),
    entry="proxy",
    smoke=Smoke(calls=(smoke.predict(SMOKE_ROWS),)),
)
