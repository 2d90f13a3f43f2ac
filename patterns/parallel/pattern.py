"""Process declaration of parallel (see patterns/declare.py)."""

import json

from patterns.declare import Pattern, Process

BACKENDS = json.dumps(
    [
        {"name": c, "url": "{url:" + c + "}", "timeout": 0.5}
        for c in ("setosa", "versicolor", "virginica")
    ]
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
)
