"""Process declaration of model_load (see patterns/declare.py)."""

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

MODEL_DIR = "{workdir}/models/iris-svc"

PATTERN = Pattern(
    id="model_load",
    summary="An init step resolves an MLflow alias to a version, verifies it; then the server",
    processes=(
        Process(
            "model-loader",
            "serving.loader",
            env={
                "MLSP_MODEL_URI": "models:/iris-svc@production",
                "MLFLOW_TRACKING_URI": "{mlflow}",
                "MLSP_MODEL_DIR": MODEL_DIR,
                "MLSP_LOAD_DEADLINE_SECONDS": "120",
            },
            port=None,
            init=True,
        ),
        Process(
            "api",
            "patterns.model_load.app",
            env={"MLSP_SERVICE": "model-load", "MLSP_MODEL_DIR": MODEL_DIR},
        ),
    ),
    needs=("mlflow",),
    models=("iris-svc",),
    smoke=Smoke(calls=(smoke.predict(),)),
)
