"""Process declaration of model_in_image (see patterns/declare.py).

Locally the server reads the trained model folder; in the image the same folder is baked in
at /models/iris-svc at build time (docker/model-in-image.Dockerfile).
"""

from patterns import smoke
from patterns.declare import Pattern, Process, Smoke

PATTERN = Pattern(
    id="model_in_image",
    summary="The model version is baked into the image at build time; no network at start",
    processes=(
        Process(
            "api",
            "patterns.model_in_image.app",
            env={"MLSP_SERVICE": "model-in-image", "MLSP_MODEL_DIR": "{model:iris-svc}"},
        ),
    ),
    models=("iris-svc",),
    smoke=Smoke(calls=(smoke.predict(),)),
)
