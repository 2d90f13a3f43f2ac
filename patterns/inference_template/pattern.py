"""Process declaration of inference_template (see patterns/declare.py): the example service
rendered from examples/iris-rf.yaml, its environment taken from that spec, as the ConfigMap's
is (spec.config_env), so the local run and the overlay cannot disagree."""

from pathlib import Path

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke
from patterns.inference_template.spec import LOADER_CONFIG, config_env, load_spec

EXAMPLE = Path(__file__).resolve().parent / "examples" / "iris-rf.yaml"
SPEC = load_spec(EXAMPLE)
CONFIG = config_env(SPEC)
MODEL_DIR = f"{{workdir}}/models/{SPEC.model.name}"

PATTERN = Pattern(
    id="inference_template",
    summary="A spec renders a model service's overlay, config and tests; one shared server",
    processes=(
        Process(
            "model-loader",
            "serving.loader",
            env={
                **{k: CONFIG[k] for k in LOADER_CONFIG},
                "MLFLOW_TRACKING_URI": "{mlflow}",
                "MLSP_MODEL_DIR": MODEL_DIR,
            },
            port=None,
            init=True,
        ),
        Process(
            "api",
            "patterns.inference_template.app",
            env={
                "MLSP_SERVICE": SPEC.name,
                "MLSP_MODEL_DIR": MODEL_DIR,
                **{k: v for k, v in CONFIG.items() if k not in LOADER_CONFIG},
            },
        ),
    ),
    needs=("mlflow",),
    models=(SPEC.model.name,),
    public=("api",),
    aliases=("template",),
    smoke=Smoke(
        calls=(
            Call(
                "predict",
                (smoke.IRIS_ROW,),
                smoke.same_labels,
                "POST {service}/predict gives the model's labels",
                service=SPEC.name,
            ),
        )
    ),
)
