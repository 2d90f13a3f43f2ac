"""Step `evaluate`: score scikit-learn's test outputs and stop the pipeline below the gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss

from training import data, train
from training.catalog import ModelSpec
from training.steps import write_json


class GateFailed(SystemExit):
    """The model is not good enough to register; the pipeline exits non-zero."""


def metrics(spec: ModelSpec, data_dir: Path, train_dir: Path) -> dict[str, float]:
    arrays = data.read(data_dir)
    outputs = train.read_outputs(train_dir)
    if spec.task == "outlier":
        # In-distribution test rows should be inliers (+1); shifted rows outliers (-1).
        pred = np.concatenate([outputs["test_labels"], outputs["shifted_labels"]])
        truth = np.concatenate(
            [np.ones(len(outputs["test_labels"])), -np.ones(len(outputs["shifted_labels"]))]
        )
        return {
            "accuracy": float(accuracy_score(truth, pred)),
            "test_outlier_rate": float(np.mean(outputs["test_labels"] < 0)),
            "shifted_detection_rate": float(np.mean(outputs["shifted_labels"] < 0)),
        }
    y = train.targets(spec, arrays["y_test"])
    pred = outputs["test_labels"]
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1_macro": float(f1_score(y, pred, average="macro")),
        "log_loss": float(
            log_loss(y, outputs["test_scores"], labels=list(range(outputs["test_scores"].shape[1])))
        ),
    }


def run(
    out: Path, spec: ModelSpec, data_dir: Path, train_dir: Path, *, min_accuracy: float
) -> None:
    scores = metrics(spec, data_dir, train_dir)
    write_json(out / "metrics.json", scores)
    if scores["accuracy"] < min_accuracy:
        raise GateFailed(
            f"{spec.name}: accuracy {scores['accuracy']:.4f} is below "
            f"MIN_ACCURACY {min_accuracy}; nothing is registered"
        )
