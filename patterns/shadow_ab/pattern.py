"""Process declaration of shadow_ab (see patterns/declare.py).

The proxy (the entry), the primary (iris-svc, whose answers clients get) and the shadow
(iris-rf, the candidate, called in the shadow); the pairs go to the shadow_log table (SQLite
locally, PostgreSQL on Kubernetes).
"""

from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict

DATABASE = "sqlite:///{data}/shadow_ab.db"


def primary_answers(out: Mapping[str, Any]) -> Verdict:
    """200 with the expected labels, answered by the primary (iris-svc), not the shadow."""
    body = smoke.mapping(out.get("body"))
    model = smoke.mapping(body.get("model")).get("name")
    got = smoke.labels(body)
    ok = out.get("status") == 200 and got == out.get("expected") and model == "iris-svc"
    return ok, f"labels {got}, expected {out.get('expected')}, answered by {model}"


def reported(out: Mapping[str, Any]) -> Verdict:
    """GET /shadow/report: the table answers and holds the smoke's pair."""
    body = smoke.mapping(out.get("body"))
    ok = out.get("status") == 200 and int(body.get("pairs") or 0) >= 1
    return ok, f"{body.get('pairs')} pairs, verdict {body.get('verdict')}"


PATTERN = Pattern(
    id="shadow_ab",
    summary="A candidate (iris-rf) answers in the shadow of iris-svc; both recorded, compared",
    processes=(
        Process(
            "proxy",
            "patterns.shadow_ab.proxy",
            env={
                "MLSP_SERVICE": "shadow-ab-proxy",
                "MLSP_PRIMARY_URL": "{url:primary}",
                "MLSP_SHADOW_URL": "{url:shadow}",
                "MLSP_DATABASE_URL": DATABASE,
            },
        ),
        Process(
            "primary",
            "patterns.shadow_ab.backend",
            env={"MLSP_SERVICE": "shadow-ab-primary", "MLSP_MODEL_DIR": "{model:iris-svc}"},
        ),
        Process(
            "shadow",
            "patterns.shadow_ab.backend",
            env={"MLSP_SERVICE": "shadow-ab-shadow", "MLSP_MODEL_DIR": "{model:iris-rf}"},
        ),
    ),
    models=("iris-svc", "iris-rf"),
    entry="proxy",
    aliases=("shadow",),
    smoke=Smoke(
        calls=(
            Call(
                "predict",
                (smoke.IRIS_ROW,),
                primary_answers,
                "POST {service}/predict: the primary's answer (iris-svc)",
            ),
            Call(
                "get",
                ("/shadow/report",),
                reported,
                "GET {service}/shadow/report: the pair is in the table",
                retries=6,
                until_judged=True,  # the proxy writes its pairs in batches, off the request path
            ),
        )
    ),
)
