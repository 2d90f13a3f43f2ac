"""Process declaration of condition_based (see patterns/declare.py).

The router and the three models its rules may name: iris-svc (the default), iris-rf (the
`mountain` segment, requests that pin it, and the night window) and digits-lr (images).
"""

import json
from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict

MODELS = ("iris-svc", "iris-rf", "digits-lr")
BACKENDS = json.dumps(
    [{"name": m, "url": "{url:" + m + "}", "timeout": 10.0} for m in MODELS]  # the book's 10 s
)
ROUTES_FILE = "manifests/patterns/condition_based/routes.yaml"
"""Locally the overlay's own file (the runner starts processes at the repository root); on
Kubernetes the ConfigMap condition-based-routes made from it, mounted as a folder."""


def pinned_to_rf(out: Mapping[str, Any]) -> Verdict:
    """POST /predict?model=iris-rf with a setosa row: iris-rf answers setosa."""
    body = smoke.mapping(out.get("body"))
    model = smoke.mapping(body.get("model")).get("name")
    got = smoke.labels(body)
    ok = out.get("status") == 200 and model == "iris-rf" and got == ["setosa"]
    return ok, f"model {model}, labels {got}"


def explains_night(out: Mapping[str, Any]) -> Verdict:
    """GET /routes/explain?at=23:30: the night rule, iris-rf."""
    body = smoke.mapping(out.get("body"))
    ok = out.get("status") == 200 and (body.get("rule"), body.get("backend")) == (
        "night",
        "iris-rf",
    )
    return ok, f"rule {body.get('rule')}, backend {body.get('backend')}"


PATTERN = Pattern(
    id="condition_based",
    summary="Ordered routing rules (header, query, content type, local time) pick the model",
    processes=(
        Process(
            "router",
            "patterns.condition_based.router",
            env={
                "MLSP_SERVICE": "condition-based-router",
                "MLSP_BACKENDS": BACKENDS,
                "MLSP_ROUTES_FILE": ROUTES_FILE,
                "MLSP_DEFAULT_BUDGET_MS": "10000",
            },
        ),
        *(
            Process(
                m,
                "patterns.condition_based.backend",
                env={"MLSP_SERVICE": f"condition-based-{m}", "MLSP_MODEL_DIR": "{model:" + m + "}"},
            )
            for m in MODELS
        ),
    ),
    models=MODELS,
    entry="router",
    smoke=Smoke(
        calls=(
            Call(
                "post",
                ("/predict?model=iris-rf", json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})),
                pinned_to_rf,
                "POST {service}/predict?model=iris-rf: answered by iris-rf",
            ),
            Call(
                "get",
                ("/routes/explain?at=23:30",),
                explains_night,
                "GET {service}/routes/explain?at=23:30: night",
            ),
        )
    ),
)
