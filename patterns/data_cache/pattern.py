"""Process declaration of data_cache (see patterns/declare.py)."""

from patterns.declare import Pattern, Process

DATABASE = {"MLSP_DATABASE_URL": "sqlite:///{data}/data_cache.db"}

PATTERN = Pattern(
    id="data_cache",
    summary="Preprocessed tensors cached in Redis by preprocessing version and item id",
    processes=(
        Process(
            "seed",
            "patterns.data_cache.seed",
            env={**DATABASE, "MLSP_MODEL_DIR": "{model:digits-lr}", "MLSP_SEED_ITEMS": "200"},
            port=None,
            init=True,
            kube_kind="Job",
        ),
        Process(
            "warmup",
            "patterns.data_cache.warmup",
            env={
                **DATABASE,
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_WARMUP_LIMIT": "100",
                "MLSP_CACHE_TTL_SECONDS": "86400",
            },
            port=None,
            init=True,
            kube_kind="Job",
        ),
        Process(
            "api",
            "patterns.data_cache.api",
            env={
                **DATABASE,
                "MLSP_SERVICE": "data-cache",
                "MLSP_MODEL_DIR": "{model:digits-lr}",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_CACHE_TTL_SECONDS": "86400",
            },
        ),
    ),
    needs=("redis",),
    models=("digits-lr",),
    entry="api",
)
