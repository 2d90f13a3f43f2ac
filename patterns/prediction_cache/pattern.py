"""Process declaration of prediction_cache (see patterns/declare.py)."""

from patterns.declare import Pattern, Process

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
)
