"""Step `data`: load a dataset scikit-learn ships, split it (seeded), hash it, describe it.

Digits images go through the serving preprocessing contract (`serving.preprocessing`), so the
model is trained on exactly the features a served image produces.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import train_test_split

from serving import preprocessing
from training.steps import write_json

SAMPLE_ROWS = 1000
Array = npt.NDArray[Any]


def load(dataset: str) -> tuple[Array, Array, list[str], list[str], dict[str, Any] | None]:
    """Features (float32), targets, feature names, class names, preprocessing contract."""
    if dataset == "iris":
        iris = load_iris()
        names = [n.replace(" (cm)", "").replace(" ", "_") for n in iris.feature_names]
        return (
            iris.data.astype(np.float32),
            iris.target,
            names,
            [str(c) for c in iris.target_names],
            None,
        )
    if dataset == "digits":
        digits = load_digits()
        # The 8x8 images hold 0..16; render them to 0..255 gray and apply the serving contract.
        x = np.stack(
            [
                preprocessing.to_features(img.astype(np.float32) * (255.0 / 16.0))
                for img in digits.images
            ]
        )
        contract = {
            "name": preprocessing.PREPROCESS_NAME,
            "version": preprocessing.PREPROCESS_VERSION,
            "params": preprocessing.PARAMS,
        }
        return (
            x,
            digits.target,
            [f"pixel_{i}" for i in range(64)],
            [str(c) for c in digits.target_names],
            contract,
        )
    raise ValueError(f"unknown dataset {dataset!r}")


def reference_stats(x: Array, y: Array, n_classes: int, seed: int) -> dict[str, Any]:
    """What monitoring compares live traffic with: deciles, a sample, the class prior."""
    edges = np.quantile(x, np.linspace(0.1, 0.9, 9), axis=0).T  # (features, 9)
    counts = [
        np.bincount(np.searchsorted(e, col, side="right"), minlength=10).tolist()
        for e, col in zip(edges, x.T, strict=True)
    ]
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), size=min(SAMPLE_ROWS, len(x)), replace=False)
    prior = np.bincount(y, minlength=n_classes) / len(y)
    return {
        "decile_edges": np.round(edges, 6).tolist(),
        "decile_counts": counts,
        "sample": np.round(x[np.sort(idx)], 6).tolist(),
        "class_prior": np.round(prior, 6).tolist(),
        "outlier_rate": None,
        "n_rows": len(x),
    }


def run(out: Path, dataset: str, *, seed: int, test_size: float) -> None:
    x, y, features, classes, contract = load(dataset)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    arrays = {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test}
    digest = hashlib.sha256()
    for name, arr in arrays.items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    np.savez(out / "data.npz", **arrays)
    write_json(
        out / "data.json",
        {
            "dataset": dataset,
            "data_hash": digest.hexdigest(),
            "feature_names": features,
            "class_names": classes,
            "preprocess": contract,
            "n_train": len(x_train),
            "n_test": len(x_test),
            "reference": reference_stats(x_train, y_train, len(classes), seed),
        },
    )


def read(folder: Path) -> dict[str, Array]:
    with np.load(folder / "data.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
