"""Process declaration of web_single (see patterns/declare.py)."""

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

PATTERN = Pattern(
    id="web_single",
    summary="One model behind one web API (FastAPI + ONNX Runtime), with OIP v2",
    processes=(
        Process(
            "api",
            "patterns.web_single.app",
            env={
                "MLSP_SERVICE": "web-single",
                "MLSP_MODEL_DIR": "{model:iris-svc}",
            },
        ),
    ),
    models=("iris-svc",),
    smoke=Smoke(calls=(smoke.predict(),)),
)
