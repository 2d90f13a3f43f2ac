"""Process declaration of prediction_cache (see patterns/declare.py)."""

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

# The same row twice: the model's answer, then the cached one (a fresh Redis).
SMOKE_REQUESTS = [
    {"path": "/predict", "json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}, "expect": expect}
    for expect in (
        {"status": 200, "x_cache": "MISS", "labels": ["setosa"]},
        {"status": 200, "x_cache": "HIT", "labels": ["setosa"]},
    )
]

PATTERN = Pattern(
    id="prediction_cache",
    summary="Answers cached in Redis by model version and canonical input (single-flight)",
    processes=(
        Process(
            "api",
            "patterns.prediction_cache.api",
            env={
                "MLSP_SERVICE": "prediction-cache",
                "MLSP_MODEL_DIR": "{model:iris-svc}",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_CACHE_TTL_SECONDS": "3600",
            },
        ),
    ),
    needs=("redis",),
    models=("iris-svc",),
    aliases=("cache",),
    smoke=Smoke(calls=(smoke.requests(SMOKE_REQUESTS),)),
)
