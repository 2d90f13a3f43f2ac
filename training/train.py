"""Step `train`: fit the estimator, convert it to ONNX, record scikit-learn's own test outputs.

ONNX is the only format a model is ever saved in (no pickle). scikit-learn's outputs on the
evaluation sets are saved beside it, so `evaluate` can score them and `export` can prove the ONNX
graph reproduces them, without keeping the Python object around.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from skl2onnx import to_onnx

from training import data
from training.catalog import ModelSpec
from training.steps import read_json, write_json

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def targets(spec: ModelSpec, y: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    out: npt.NDArray[np.int64] = (
        (y == spec.positive_class) if spec.positive_class is not None else y
    ).astype(np.int64)
    return out


def shifted(
    x_test: npt.NDArray[np.float32], x_train: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Known outliers for evaluating an outlier detector: the test set moved 3 std away."""
    out: npt.NDArray[np.float32] = (x_test + 3.0 * x_train.std(axis=0)).astype(np.float32)
    return out


def sklearn_outputs(
    spec: ModelSpec, model: Any, x: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    if spec.task == "outlier":
        return model.predict(x), model.decision_function(x)
    return model.predict(x), model.predict_proba(x)


def run(out: Path, spec: ModelSpec, data_dir: Path, *, seed: int) -> None:
    arrays = data.read(data_dir)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    model = spec.build(seed)
    started = time.perf_counter()
    if spec.task == "outlier":
        model.fit(x_train)  # unsupervised: labels are never seen
    else:
        model.fit(x_train, targets(spec, arrays["y_train"]))
    fit_seconds = time.perf_counter() - started

    options = {"zipmap": False} if spec.task == "classification" else None
    with warnings.catch_warnings():
        # skl2onnx reads SVC attributes scikit-learn 1.9 marks deprecated; harmless here.
        warnings.simplefilter("ignore", FutureWarning)
        onx = to_onnx(model, x_train[:1], options=options, target_opset=TARGET_OPSET)
    (out / "model.onnx").write_bytes(onx.SerializeToString())

    sets = {"test": x_test}
    if spec.task == "outlier":
        sets["shifted"] = shifted(x_test, x_train)
    outputs: dict[str, npt.NDArray[Any]] = {}
    for name, x in sets.items():
        labels, scores = sklearn_outputs(spec, model, x)
        outputs[f"{name}_labels"] = labels
        outputs[f"{name}_scores"] = scores
        outputs[f"{name}_x"] = x
    np.savez(out / "sklearn_outputs.npz", **outputs)  # type: ignore[arg-type]
    classes = read_json(data_dir / "data.json")["class_names"]
    if spec.positive_class is not None:
        classes = ["rest", classes[spec.positive_class]]
    elif spec.task == "outlier":
        classes = ["inlier", "outlier"]
    write_json(
        out / "train.json",
        {
            "fit_seconds": round(fit_seconds, 4),
            "labels": classes,
            "params": spec.params,
            "seed": seed,
        },
    )


def read_outputs(folder: Path) -> dict[str, npt.NDArray[Any]]:
    with np.load(folder / "sklearn_outputs.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
