"""Process declaration of batch_inference (see patterns/declare.py).

Locally the database is SQLite (one scorer); on Kubernetes it is PostgreSQL, where several
scorers may run at once. The seed and score steps run to completion before the API starts
(a seed Job and a scoring CronJob on Kubernetes).
"""

from patterns.declare import Pattern, Process

DATABASE = "sqlite:///{data}/batch_inference.db"

PATTERN = Pattern(
    id="batch_inference",
    summary="Score every stored record periodically, in chunks, restartably, without duplicates",
    processes=(
        Process(
            "seed",
            "patterns.batch_inference.seed",
            env={"MLSP_DATABASE_URL": DATABASE, "MLSP_SEED_ROWS": "10000"},
            port=None,
            init=True,
            kube_kind="Job",
        ),
        Process(
            "score",
            "patterns.batch_inference.score",
            env={"MLSP_DATABASE_URL": DATABASE, "MLSP_MODEL_DIR": "{model:iris-svc}"},
            port=None,
            init=True,
            kube_kind="CronJob",
        ),
        Process(
            "api",
            "patterns.batch_inference.api",
            env={"MLSP_SERVICE": "batch-api", "MLSP_DATABASE_URL": DATABASE},
        ),
    ),
    models=("iris-svc",),
    aliases=("batch",),
)
