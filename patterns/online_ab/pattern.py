"""Process declaration of online_ab (see patterns/declare.py).

The proxy (the entry: assignment, outcomes, the report), variant A (iris-svc, the control)
and variant B (iris-rf, the challenger); the tables are SQLite locally, PostgreSQL on
Kubernetes.
"""

from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict

DATABASE = "sqlite:///{data}/online_ab.db"
EXPERIMENT_FILE = "{data}/online_ab/experiment.yaml"
"""Locally a file in the data folder (absent: the book's 60/40 experiment, the defaults); on
Kubernetes the ConfigMap online-ab-experiment, mounted as a folder."""


def assigned(out: Mapping[str, Any]) -> Verdict:
    """POST /predict: 200 with a variant and the model of that variant."""
    body = smoke.mapping(out.get("body"))
    variant = body.get("variant")
    model = smoke.mapping(body.get("model")).get("name")
    want = {"a": "iris-svc", "b": "iris-rf"}.get(str(variant))
    ok = out.get("status") == 200 and want is not None and model == want
    return ok, f"variant {variant}, answered by {model}"


def reported(out: Mapping[str, Any]) -> Verdict:
    """GET /ab/report: the tables answer; a decision is given."""
    body = smoke.mapping(out.get("body"))
    ok = out.get("status") == 200 and body.get("decision") in {"continue", "ship_a", "ship_b"}
    return ok, f"decision {body.get('decision')}: {body.get('why')}"


PATTERN = Pattern(
    id="online_ab",
    summary="Sticky A/B assignment, outcomes, and a report safe to read at every look",
    processes=(
        Process(
            "proxy",
            "patterns.online_ab.proxy",
            env={
                "MLSP_SERVICE": "online-ab-proxy",
                "MLSP_VARIANT_A_URL": "{url:variant-a}",
                "MLSP_VARIANT_B_URL": "{url:variant-b}",
                "MLSP_EXPERIMENT_FILE": EXPERIMENT_FILE,
                "MLSP_DATABASE_URL": DATABASE,
            },
        ),
        Process(
            "variant-a",
            "patterns.online_ab.backend",
            env={"MLSP_SERVICE": "online-ab-variant-a", "MLSP_MODEL_DIR": "{model:iris-svc}"},
        ),
        Process(
            "variant-b",
            "patterns.online_ab.backend",
            env={"MLSP_SERVICE": "online-ab-variant-b", "MLSP_MODEL_DIR": "{model:iris-rf}"},
        ),
    ),
    models=("iris-svc", "iris-rf"),
    entry="proxy",
    aliases=("ab",),
    smoke=Smoke(
        calls=(
            Call("predict", (smoke.IRIS_ROW,), assigned, "POST {service}/predict: a variant"),
            Call("get", ("/ab/report",), reported, "GET {service}/ab/report: a decision"),
        )
    ),
)
