"""Every model the project trains (docs/catalogue.md), from the datasets scikit-learn ships."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, OneClassSVM

IRIS_CLASSES = ("setosa", "versicolor", "virginica")


def _svc(seed: int) -> BaseEstimator:
    # SVC(probability=True) is deprecated since scikit-learn 1.9; this is its replacement.
    return CalibratedClassifierCV(
        SVC(gamma="scale", random_state=seed), ensemble=False, method="sigmoid"
    )


@dataclass(frozen=True)
class ModelSpec:
    """One model: its dataset, estimator and (for one-vs-rest) the positive class."""

    name: str
    dataset: Literal["iris", "digits"]
    task: Literal["classification", "outlier"]
    build: Callable[[int], BaseEstimator]
    params: dict[str, Any] = field(default_factory=dict)
    positive_class: int | None = None
    """For binary one-vs-rest models: the dataset class that is label 1."""


def _ovr(index: int, cls: str) -> ModelSpec:
    return ModelSpec(
        f"iris-ovr-{cls}",
        "iris",
        "classification",
        _svc,
        {"estimator": "SVC(rbf)+sigmoid calibration", "positive": cls},
        index,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "iris-svc",
            "iris",
            "classification",
            _svc,
            {"estimator": "SVC(rbf)+sigmoid calibration"},
        ),
        ModelSpec(
            "iris-rf",
            "iris",
            "classification",
            lambda seed: RandomForestClassifier(n_estimators=100, max_depth=4, random_state=seed),
            {"estimator": "RandomForest", "n_estimators": 100, "max_depth": 4},
        ),
        ModelSpec(
            "iris-lr",
            "iris",
            "classification",
            lambda seed: LogisticRegression(max_iter=1000, random_state=seed),
            {"estimator": "LogisticRegression"},
        ),
        ModelSpec(
            "iris-ocsvm",
            "iris",
            "outlier",
            lambda seed: OneClassSVM(nu=0.1, gamma="auto"),
            {"estimator": "OneClassSVM", "nu": 0.1, "gamma": "auto"},
        ),
        *(_ovr(i, c) for i, c in enumerate(IRIS_CLASSES)),
        ModelSpec(
            "digits-lr",
            "digits",
            "classification",
            lambda seed: make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=3000, random_state=seed)
            ),
            {"estimator": "StandardScaler+LogisticRegression"},
        ),
        ModelSpec(
            "digits-svc",
            "digits",
            "classification",
            _svc,
            {"estimator": "SVC(rbf)+sigmoid calibration"},
        ),
    ]
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise SystemExit(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
