"""Process declaration of pipeline_training (see patterns/declare.py).

The training steps run in order, each as its own process (on Kubernetes: the initContainers
data, train, evaluate, export of one Job, whose main container is register), all on one
artifacts folder (a PVC there). Each step's manifest makes a rerun skip what is already done.
Then the loader fetches the registered candidate and the api serves it.
"""

from patterns import smoke
from patterns.declare import JobLog, KubeKind, Pattern, Process, Smoke, Verdict

MODEL = "iris-rf"
ARTIFACTS = "{data}/pipeline_training"
MODEL_DIR = "{workdir}/models/" + MODEL


def _step(name: str, kube_kind: KubeKind | None = None) -> Process:
    env = {
        "MLSP_STEP": name,
        "MLSP_TRAIN_MODELS": MODEL,
        "MLSP_DATA_DIR": ARTIFACTS,
        "MLFLOW_TRACKING_URI": "{mlflow}",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10",
        "MLSP_MIN_ACCURACY": "0.9",
    }
    return Process(name, "training", env=env, port=None, init=True, kube_kind=kube_kind)


def registered(log: str) -> Verdict:
    """The register container's log names the version it registered as the candidate."""
    ok = f"{MODEL}: registered version " in log and "(@candidate)" in log
    line = next((x for x in log.splitlines() if "registered version" in x), log[-300:])
    return ok, line.strip()


PATTERN = Pattern(
    id="pipeline_training",
    summary="Train in resumable, traceable steps: data, train, evaluate, export, register",
    processes=(
        _step("data"),
        _step("train"),
        _step("evaluate"),
        _step("export"),
        _step("register", kube_kind="Job"),
        Process(
            "model-loader",
            "serving.loader",
            env={
                "MLSP_MODEL_URI": f"models:/{MODEL}@candidate",
                "MLFLOW_TRACKING_URI": "{mlflow}",
                "MLSP_MODEL_DIR": MODEL_DIR,
                "MLSP_LOAD_DEADLINE_SECONDS": "300",
            },
            port=None,
            init=True,
        ),
        Process(
            "api",
            "patterns.pipeline_training.app",
            env={"MLSP_SERVICE": "pipeline-training", "MLSP_MODEL_DIR": MODEL_DIR},
        ),
    ),
    needs=("mlflow",),
    smoke=Smoke(
        calls=(smoke.predict(),),
        logs=(JobLog("register", registered, f"register: {MODEL} registered as @candidate"),),
    ),
)
