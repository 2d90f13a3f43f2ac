"""Process declaration of batch_training (see patterns/declare.py).

Locally the labelled rows are in SQLite and the runner runs the seed and one training run
to completion; on Kubernetes the rows are in PostgreSQL, the seed is a Job and the training
run a CronJob (Forbid: one at a time; the database lock makes sure of it anyway).
"""

from patterns.declare import JobLog, Pattern, Process, Smoke, Verdict

DATABASE = "sqlite:///{data}/batch_training.db"
TRAINING = {
    "MLSP_DATABASE_URL": DATABASE,
    "MLSP_DATA_DIR": "{data}/batch_training",
    "MLFLOW_TRACKING_URI": "{mlflow}",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10",
    "MLSP_MIN_NEW_ROWS": "20",
    "MLSP_AUTO_PROMOTE": "true",
    "MLSP_TOLERANCE": "0.01",
    "MLSP_ACTOR": "batch-training",
}


def trained(log: str) -> Verdict:
    """The run's last line: promoted or registered (a first run), or skipped (a rerun on the
    same rows), never failed."""
    line = next((x for x in reversed(log.splitlines()) if '"training run"' in x), "")
    ok = any(f'"status": "{s}"' in line for s in ("promoted", "registered", "skipped"))
    return ok, line[:300] or log[-300:]


PATTERN = Pattern(
    id="batch_training",
    summary="Retrain on a schedule from accruing labelled rows; skip, quarantine, gate, audit",
    processes=(
        Process(
            "seed",
            "patterns.batch_training.seed",
            env={"MLSP_DATABASE_URL": DATABASE},
            port=None,
            init=True,
            kube_kind="Job",
        ),
        Process(
            "retrain",
            "patterns.batch_training.retrain",
            env=TRAINING,
            port=None,
            init=True,
            kube_kind="CronJob",
        ),
    ),
    needs=("mlflow",),
    smoke=Smoke(logs=(JobLog("retrain", trained, "retrain: a model trained and registered"),)),
)
