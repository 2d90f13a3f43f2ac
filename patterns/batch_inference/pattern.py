"""Process declaration of batch_inference (see patterns/declare.py).

Locally the database is SQLite (one scorer); on Kubernetes it is PostgreSQL, where several
scorers may run at once. The seed and score steps run to completion before the API starts
(a seed Job and a scoring CronJob on Kubernetes).
"""

import json
from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict

DATABASE = "sqlite:///{data}/batch_inference.db"


def every_item_scored(out: Mapping[str, Any]) -> Verdict:
    """GET /summary after the seed and one scoring run: each of the `expected` seeded items
    has exactly one prediction or error per model version, none is unscored."""
    body = smoke.mapping(out.get("body"))
    rows = int(out.get("expected") or 0)
    versions = smoke.mapping(body.get("model_versions"))
    complete = bool(versions) and all(
        v.get("unscored") == 0 and v.get("scored", 0) + v.get("errors", 0) == rows
        for v in versions.values()
    )
    ok = out.get("status") == 200 and body.get("items") == rows and complete
    return ok, f"{out.get('ms')} ms: {json.dumps(body)[:400]}"


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
    smoke=Smoke(
        calls=(
            Call(
                "get",
                ("/summary", "{env:seed:MLSP_SEED_ROWS}"),
                every_item_scored,
                "GET /summary: {env:seed:MLSP_SEED_ROWS} items seeded, each scored once (or "
                "failed) per model version",
                retries=2,  # a 503 says when to come back (Retry-After): a client does
            ),
        )
    ),
)
