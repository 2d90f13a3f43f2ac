"""Process declaration of sync_async (see patterns/declare.py)."""

from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict


def fast_then_final(out: Mapping[str, Any]) -> Verdict:
    """A fast answer for every row now, then the final one done with the worker's labels."""
    answer, final = smoke.mapping(out.get("answer")), smoke.mapping(out.get("final"))
    fast, got = smoke.labels(answer.get("fast")), smoke.labels(final.get("result"))
    expected = out.get("expected") or []
    ok = (
        out.get("status") == 200
        and len(fast) == len(expected)
        and final.get("status") == "done"
        and got == expected
    )
    return ok, (
        f"fast {fast} in {out.get('fast_ms')} ms, final {final.get('status')} {got} "
        f"(expected {expected}), revised {smoke.mapping(final.get('result')).get('revised')}"
    )


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
    smoke=Smoke(
        calls=(
            Call(
                "sync_async",
                (smoke.card("worker"), smoke.POLL_SECONDS),
                fast_then_final,
                "POST {service}/predict: fast answer, then the final one by polling",
            ),
        )
    ),
)
