"""Step `export`: prove the ONNX graph reproduces scikit-learn, then write the model card.

Parity on the test set: labels equal and scores within 1e-5, or the step fails. The card
(`model.json`) carries what serving and monitoring need: input spec, labels, golden examples
recorded from ONNX Runtime, reference statistics, metrics, library versions and lineage.
"""

from __future__ import annotations

import platform
import shutil
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from serving.model import ModelCard, OnnxModel, sha256_file
from training import train
from training.catalog import ModelSpec
from training.steps import git_sha, read_json, write_json

PARITY_ATOL = 1e-5
N_GOLDEN = 5
UNREGISTERED = "unregistered"


class ParityError(SystemExit):
    """ONNX and scikit-learn disagree: the model must not ship."""


def check_parity(spec: ModelSpec, onnx_path: Path, outputs: dict[str, Any]) -> float:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    sets = ["test", "shifted"] if spec.task == "outlier" else ["test"]
    for s in sets:
        labels, scores = session.run(None, {name: outputs[f"{s}_x"]})
        labels = np.asarray(labels).reshape(-1)
        ref_scores = np.asarray(outputs[f"{s}_scores"], dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64).reshape(ref_scores.shape)
        mismatched = int(np.sum(labels != outputs[f"{s}_labels"]))
        diff = float(np.max(np.abs(scores - ref_scores)))
        worst = max(worst, diff)
        if mismatched or diff > PARITY_ATOL:
            raise ParityError(
                f"{spec.name}: ONNX/scikit-learn parity failed on {s}: "
                f"{mismatched} labels differ, max score diff {diff:.2e} "
                f"(limit {PARITY_ATOL:.0e})"
            )
    return worst


def golden_rows(y: np.ndarray[Any, Any], n: int) -> list[int]:
    """Indices covering every class first, then the next rows in order."""
    picked: list[int] = []
    for cls in np.unique(y):
        picked.append(int(np.flatnonzero(y == cls)[0]))
    picked += [i for i in range(len(y)) if i not in picked]
    return sorted(picked[:n])


def libraries() -> dict[str, str]:
    names = ["scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy"]
    return {"python": platform.python_version(), **{n: pkg_version(n) for n in names}}


def run(out: Path, spec: ModelSpec, data_dir: Path, train_dir: Path, eval_dir: Path) -> None:
    onnx_path = out / "model.onnx"
    shutil.copyfile(train_dir / "model.onnx", onnx_path)
    outputs = train.read_outputs(train_dir)
    worst = check_parity(spec, onnx_path, outputs)

    meta = read_json(data_dir / "data.json")
    trained = read_json(train_dir / "train.json")
    metrics = {**read_json(eval_dir / "metrics.json"), "parity_max_abs_diff": worst}
    graph = onnx.load(str(onnx_path))
    reference = dict(meta["reference"])
    if spec.task == "outlier":
        reference["outlier_rate"] = metrics["test_outlier_rate"]
    elif spec.positive_class is not None:
        prior = reference["class_prior"][spec.positive_class]
        reference["class_prior"] = [round(1 - prior, 6), prior]
    card: dict[str, Any] = {
        "name": spec.name,
        "version": UNREGISTERED,
        "sha256": sha256_file(onnx_path),
        "opset": {d.domain or "ai.onnx": int(d.version) for d in graph.opset_import},
        "task": spec.task,
        "input": {
            "name": graph.graph.input[0].name,
            "shape": [None, len(meta["feature_names"])],
            "dtype": "float32",
        },
        "outputs": {"label": graph.graph.output[0].name, "scores": graph.graph.output[1].name},
        "feature_names": meta["feature_names"],
        "labels": trained["labels"],
        "preprocess": meta["preprocess"],
        "golden": [],
        "metrics": metrics,
        "params": {**spec.params, "seed": trained["seed"]},
        "libraries": libraries(),
        "git_sha": git_sha(),
        "data_hash": meta["data_hash"],
        "dataset": meta["dataset"],
        "reference": reference,
    }
    # Golden outputs come from ONNX Runtime itself, through the same code path as serving.
    x_test = outputs["test_x"]
    rows = golden_rows(outputs["test_labels"], N_GOLDEN)
    model = OnnxModel(
        ModelCard.model_validate(card),
        ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]),
    )
    pred = model.predict(x_test[rows])
    card["golden"] = [
        {
            "input": [float(str(v)) for v in x_test[r]],
            "class_id": int(pred.class_ids[i]),
            "label": card["labels"][int(pred.class_ids[i])],
            "scores": pred.scores[i].tolist(),
        }
        for i, r in enumerate(rows)
    ]
    ModelCard.model_validate(card)
    write_json(out / "model.json", card)
