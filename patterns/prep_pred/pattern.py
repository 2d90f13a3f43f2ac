"""Process declaration of prep_pred (see patterns/declare.py)."""

from patterns.declare import Pattern, Process

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
)
