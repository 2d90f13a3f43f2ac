"""Process declaration of asynchronous (see patterns/declare.py)."""

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

PATTERN = Pattern(
    id="asynchronous",
    summary="Submit a job, get a ticket, fetch the result later (Redis Streams queue)",
    processes=(
        Process(
            "api",
            "patterns.asynchronous.api",
            env={
                "MLSP_SERVICE": "async-api",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_INPUT_FEATURES": "64",
            },
        ),
        Process(
            "worker",
            "patterns.asynchronous.worker",
            env={
                "MLSP_SERVICE": "async-worker",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_MODEL_DIR": "{model:digits-svc}",
            },
        ),
    ),
    needs=("redis",),
    models=("digits-svc",),
    aliases=("async",),
    smoke=Smoke(calls=(smoke.job(smoke.card("worker"), durable=True),)),
)
