"""Process declaration of synchronous (see patterns/declare.py)."""

import json

from patterns import smoke
from patterns.declare import JobLog, Pattern, Process, Smoke, Verdict


def routed_every_item(log: str) -> Verdict:
    """The client's summary line: every item routed (ship or recheck) and some shipped (a Job
    that sent everything to recheck because the server never answered exits 0 too)."""
    lines = (ln for ln in reversed(log.splitlines()) if '"event": "summary"' in ln)
    summary = smoke.mapping(json.loads(next(lines, "null")))
    items, ship = summary.get("items", 0), summary.get("ship", 0)
    ok = ship + summary.get("recheck", 0) == items > 0 and ship > 0
    return ok, json.dumps(summary) if summary else log[-300:]


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
                # requests kept waiting past 20 ms before they run are shed (CoDel)
                "MLSP_QUEUE_TARGET_MS": "20",
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
    smoke=Smoke(
        calls=(smoke.predict(smoke.card("server")),),
        logs=(
            JobLog(
                "client",
                routed_every_item,
                "client routed every item (ship or recheck) and shipped some",
            ),
        ),
    ),
)
