"""Process declaration of sync_async (see patterns/declare.py)."""

from patterns.declare import Pattern, Process

PATTERN = Pattern(
    id="sync_async",
    summary="A fast answer now (digits-lr), a better one later (digits-svc via the queue)",
    processes=(
        Process(
            "fast",
            "patterns.sync_async.fast",
            env={"MLSP_SERVICE": "sync-async-fast", "MLSP_MODEL_DIR": "{model:digits-lr}"},
        ),
        Process(
            "worker",
            "patterns.sync_async.worker",
            env={
                "MLSP_SERVICE": "sync-async-worker",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_MODEL_DIR": "{model:digits-svc}",
            },
        ),
        Process(
            "proxy",
            "patterns.sync_async.proxy",
            env={
                "MLSP_SERVICE": "sync-async-proxy",
                "MLSP_REDIS_URL": "{redis}",
                "MLSP_FAST_URL": "{url:fast}",
                "MLSP_INPUT_FEATURES": "64",
            },
        ),
    ),
    needs=("redis",),
    models=("digits-lr", "digits-svc"),
    entry="proxy",
)
