"""Process declaration of synchronous (see patterns/declare.py)."""

from patterns.declare import Pattern, Process

PATTERN = Pattern(
    id="synchronous",
    summary="The client waits: deadline propagation, overload shedding, a fail-safe client",
    processes=(
        Process(
            "server",
            "patterns.synchronous.server",
            env={
                "MLSP_SERVICE": "sync-server",
                "MLSP_MODEL_DIR": "{model:digits-lr}",
                "MLSP_MAX_INFLIGHT": "32",
            },
        ),
        Process(
            "client",
            "patterns.synchronous.client",
            env={
                "MLSP_SERVER_URL": "{url:server}",
                "MLSP_MODEL_DIR": "{model:digits-lr}",
                "MLSP_ITEMS": "200",
            },
            port=None,
            kube_kind="Job",
        ),
    ),
    models=("digits-lr",),
    aliases=("sync",),
)
