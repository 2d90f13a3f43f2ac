"""The model contract: verified load, golden self-test, refusal of tampered artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serving.model import ModelError, ModelMissing, OnnxModel


def test_load_and_self_test(iris_dir: Path) -> None:
    model = OnnxModel.load(iris_dir)
    model.self_test()
    out = model.predict(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    assert model.card.labels[int(out.class_ids[0])] == "setosa"
    assert out.scores.shape == (1, 3) and abs(float(out.scores.sum()) - 1) < 1e-4


def test_missing_artifact(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing):
        OnnxModel.load(tmp_path)


def test_tampered_onnx_is_refused(model_copy: Path) -> None:
    data = bytearray((model_copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (model_copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        OnnxModel.load(model_copy)


def test_wrong_golden_output_fails_self_test(model_copy: Path) -> None:
    card = json.loads((model_copy / "model.json").read_text())
    card["golden"][0]["class_id"] = (card["golden"][0]["class_id"] + 1) % 3
    (model_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="golden example 0"):
        OnnxModel.load(model_copy).self_test()


def test_invalid_card_is_a_model_error(model_copy: Path) -> None:
    (model_copy / "model.json").write_text('{"name": "iris-svc"}')
    with pytest.raises(ModelError, match="not a valid model card"):
        OnnxModel.load(model_copy)
