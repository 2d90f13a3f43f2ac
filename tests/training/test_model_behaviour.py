"""Model-behaviour tests on fixed inputs: invariance and directional expectations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.model import OnnxModel


def _model(data_dir: Path, name: str) -> OnnxModel:
    return OnnxModel.load(data_dir / "models" / name)


def test_invariance_small_sepal_noise_keeps_a_clear_setosa(data_dir: Path) -> None:
    model = _model(data_dir, "iris-svc")
    base = np.array([5.0, 3.4, 1.5, 0.2], dtype=np.float32)
    rows = np.stack(
        [base + np.array([d, -d, 0, 0], dtype=np.float32) for d in (-0.1, -0.05, 0, 0.05, 0.1)]
    )
    assert set(model.predict(rows).class_ids.tolist()) == {0}


def test_direction_longer_petals_raise_virginica(data_dir: Path) -> None:
    model = _model(data_dir, "iris-svc")
    rows = np.array(
        [[6.3, 2.9, p, w] for p, w in [(1.5, 0.2), (3.5, 1.0), (4.5, 1.5), (5.5, 2.0), (6.5, 2.4)]],
        dtype=np.float32,
    )
    out = model.predict(rows)
    virginica = out.scores[:, 2]
    assert out.class_ids[0] == 0 and out.class_ids[-1] == 2
    assert np.all(np.diff(virginica) >= -1e-3), virginica


def test_outlier_detector_flags_far_points_and_not_typical_ones(data_dir: Path) -> None:
    model = _model(data_dir, "iris-ocsvm")
    typical = np.array([[5.1, 3.5, 1.4, 0.2], [6.5, 3.0, 5.5, 1.8]], dtype=np.float32)
    far = np.array([[12.0, 9.0, 15.0, 8.0], [0.1, 0.1, 0.1, 0.1]], dtype=np.float32)
    assert model.predict(typical).class_ids.tolist() == [0, 0]
    assert model.predict(far).class_ids.tolist() == [1, 1]
