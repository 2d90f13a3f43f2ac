"""pipeline_training's worked example: the README's output, produced by running it
(patterns/example.py). The run starts its own MLflow server over data/mlflow; the training
steps (init processes, the Job's initContainers on Kubernetes) run on data/pipeline_training,
then the loader fetches the candidate and the api serves it.

make example PATTERN=pipeline_training
"""

from __future__ import annotations

import re

from patterns.example import Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
MLFLOW = "MLFLOW_TRACKING_URI=$(make url PATTERN=pipeline_training PROCESS=mlflow)"
STEPS = "data/pipeline_training/pipeline/models/iris-rf"
JOB = "MLSP_TRAIN_MODELS=iris-rf MLSP_DATA_DIR=data/pipeline_training MLSP_STEP=register"
DEMO = "MLSP_TRAIN_MODELS=iris-lr MLSP_DATA_DIR=data/pipeline-demo MLSP_STEP=run"
# what the steps log, without the timestamps and paths around it, and the exit code
STEP_LINES = (
    "2>&1 | grep -o 'step [a-z]*: [a-z]*\\|registered version.*\\|already registered.*\\|"
    'accuracy .* registered\'; echo "exit code ${PIPESTATUS[0]}"'
)

VOLATILE = [
    (re.compile(r"\b[0-9a-f]{40}\b"), "<git-sha>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<run-id>"),
]
"""The commit the models were trained from, and MLflow's run ids."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the steps ran in order (data, train, evaluate, export, then register), each writing")
    w.note("one folder atomically with a manifest of what it was made from")
    w.sh(f"ls {STEPS}", expect=lambda out: out.split() == ["evaluate", "export", "train"])
    w.sh(
        f"python3 -m json.tool {STEPS}/evaluate/manifest.json",
        expect=lambda out: '"min_accuracy": 0.9' in out and '"train": "' in out,
    )
    w.note("the api serves the registered candidate; every answer names the version")
    w.sh(
        curl_json(f"{URL}/predict", {"instances": [[6.3, 3.3, 6.0, 2.5]]}),
        expect=re.compile(r'"model":\{"name":"iris-rf","version":"\d+"\}.*"label":"virginica"'),
    )
    w.note("lineage: from the served version back to the run, the code and the data")
    w.sh(
        f"{MLFLOW} .venv/bin/python -m patterns.pipeline_training.lineage {URL}",
        expect=lambda out: out.count(": yes") == 3 and "status FINISHED" in out,
        timeout=60,
    )
    w.note("the whole Job again: every manifest matches, nothing is recomputed, and the same")
    w.note("artifact is the same registry version")
    w.sh(
        f"{MLFLOW} {JOB} .venv/bin/python -m training {STEP_LINES}",
        expect=lambda out: out.count(": cached") == 4 and "already registered" in out,
        timeout=120,
    )

    w.section("failure")
    w.note("the evaluation gate, on a scratch folder with its own embedded registry: nothing")
    w.note("below MLSP_MIN_ACCURACY reaches the registry")
    w.sh(
        f"rm -rf data/pipeline-demo && MLSP_MIN_ACCURACY=1.01 {DEMO} .venv/bin/python "
        f"-m training {STEP_LINES}",
        expect=lambda out: "nothing is registered" in out and "exit code 1" in out,
        timeout=180,
    )
    w.sh("ls data/pipeline-demo", expect=lambda out: out.split() == ["pipeline"])
    w.note("the rerun resumes at the failed step: data and train come from their manifests")
    w.sh(
        f"{DEMO} .venv/bin/python -m training {STEP_LINES}",
        expect=lambda out: (
            "step data: cached" in out
            and "step train: cached" in out
            and "step evaluate: done" in out
            and "registered version 1" in out
            and "exit code 0" in out
        ),
        timeout=180,
    )
