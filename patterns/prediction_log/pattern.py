"""Process declaration of prediction_log (see patterns/declare.py).

Locally the log's database is SQLite (`data/prediction_log.db`); on Kubernetes PostgreSQL.
The retention step runs to completion before the others start (a CronJob on Kubernetes).
"""

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

DATABASE = "sqlite:///{data}/prediction_log.db"

PATTERN = Pattern(
    id="prediction_log",
    summary="Every prediction logged through a Redis stream, stored once by a batch writer",
    processes=(
        Process(
            "retention",
            "patterns.prediction_log.retention",
            env={"MLSP_DATABASE_URL": DATABASE},
            port=None,
            init=True,
            kube_kind="CronJob",
        ),
        Process(
            "api",
            "patterns.prediction_log.api",
            env={
                "MLSP_SERVICE": "predlog-api",
                "MLSP_MODEL_DIR": "{model:iris-svc}",
                "MLSP_OUTLIER_MODEL_DIR": "{model:iris-ocsvm}",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_DATABASE_URL": DATABASE,
            },
        ),
        Process(
            "log-writer",
            "patterns.prediction_log.writer",
            env={
                "MLSP_SERVICE": "predlog-writer",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_DATABASE_URL": DATABASE,
            },
        ),
    ),
    needs=("redis",),
    models=("iris-svc", "iris-ocsvm"),
    entry="api",
    smoke=Smoke(
        calls=(
            smoke.predict(),
            smoke.requests(
                [
                    {
                        "path": "/feedback",
                        "json": {"request_id": "smoke-1", "outcome": "setosa"},
                        "expect": {"status": 202},
                    },
                    {
                        "path": "/feedback",
                        "json": {"request_id": "smoke-1"},
                        "expect": {"status": 422},
                    },
                ]
            ),
        )
    ),
)
