"""Process declaration of data_cache (see patterns/declare.py)."""

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

DATABASE = {"MLSP_DATABASE_URL": "sqlite:///{data}/data_cache.db"}

# After the seed (MLSP_SEED_ITEMS=200) and warm-up (MLSP_WARMUP_LIMIT=100, in id order):
# digit-0001 was warmed up (a hit on its first request), digit-0150 was not (a miss, then a
# hit); an unknown id is 404, an id that could be a path 422.
SMOKE_REQUESTS = [
    {"path": "/predict/item", "json": {"item_id": item}, "expect": expect}
    for item, expect in (
        ("digit-0001", {"status": 200, "x_cache": "HIT"}),
        ("digit-0150", {"status": 200, "x_cache": "MISS"}),
        ("digit-0150", {"status": 200, "x_cache": "HIT"}),
        ("digit-9999", {"status": 404}),
        ("../x", {"status": 422}),
    )
]

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
    smoke=Smoke(calls=(smoke.requests(SMOKE_REQUESTS),)),
)
