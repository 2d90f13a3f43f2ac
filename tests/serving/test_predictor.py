"""The model contract (serving/predictor.py): the ONNX predictor's lifecycle on real
artifacts, and a wrapper that every route (rows, images, OIP) goes through without any route
being replaced."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.errors import Unavailable
from serving.model import ModelError, ModelMissing, Prediction
from serving.predictor import Batch, Call, OnnxPredictor, Predictor, Wrapper
from serving.preprocessing import render_digit
from serving.settings import ServingSettings
from tests.serving.test_app import wait_ready

SETOSA = [5.1, 3.5, 1.4, 0.2]


def test_onnx_predictor_is_ready_only_after_load(iris_dir: Path) -> None:
    predictor = OnnxPredictor(ServingSettings(model_dir=iris_dir))
    assert predictor.not_ready() == "model loading"
    with pytest.raises(Unavailable, match="model not ready"):
        _ = predictor.card
    asyncio.run(predictor.load())
    assert predictor.not_ready() is None
    assert predictor.card.name == "iris-svc"
    out = asyncio.run(predictor.predict(np.asarray([SETOSA], dtype=np.float32), Call()))
    assert out.class_ids.tolist() == [0] and out.scores.shape == (1, 3)


def test_onnx_predictor_refuses_a_tampered_model(model_copy: Path) -> None:
    with (model_copy / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        asyncio.run(OnnxPredictor(ServingSettings(model_dir=model_copy)).load())


def test_onnx_predictor_waits_for_a_missing_model_then_gives_up(tmp_path: Path) -> None:
    settings = ServingSettings(model_dir=tmp_path / "nothing", model_wait_seconds=0.6)
    predictor = OnnxPredictor(settings)
    with pytest.raises(ModelMissing):
        asyncio.run(predictor.load())
    assert "no model.onnx" in (predictor.not_ready() or "")


class Counting(Wrapper):
    """Counts the batches it sees, marks each answer with a header, adds a log field."""

    def __init__(self, inner: Predictor) -> None:
        super().__init__(inner)
        self.rows: list[int] = []

    async def predict(self, x: Batch, call: Call) -> Prediction:
        self.rows.append(len(x))
        call.headers.append((b"x-wrapped", b"yes"))
        call.log["wrapped"] = True
        return await self.inner.predict(x, call)


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi-route"])
def test_a_wrapper_serves_every_prediction_route(data_dir: Path, fast_path: bool) -> None:
    """Rows, images and OIP tensors all reach the predictor passed to create_app."""
    settings = ServingSettings(
        model_dir=data_dir / "models" / "digits-lr", access_log=False, fast_path=fast_path
    )
    wrapped = Counting(OnnxPredictor(settings))
    with TestClient(create_app(settings, predictor=wrapped)) as client:
        wait_ready(client)
        card = wrapped.card
        row = card.golden[0].input
        rows = client.post("/predict", json={"instances": [row, row]})
        image = client.post(
            "/predict/image",
            content=render_digit(row),
            headers={"Content-Type": "image/png"},
        )
        tensor = {"name": card.input.name, "datatype": "FP32", "shape": [1, 64], "data": row}
        oip = client.post(f"/v2/models/{card.name}/infer", json={"inputs": [tensor]})
        bad = client.post("/predict", json={"instances": [[1.0]]})
    assert [r.status_code for r in (rows, image, oip)] == [200, 200, 200]
    assert all(r.headers["x-wrapped"] == "yes" for r in (rows, image, oip))
    assert rows.json()["predictions"][0]["label"] == card.golden[0].label
    assert wrapped.rows == [2, 1, 1]  # the 422 never reached the predictor
    assert bad.status_code == 422 and "x-wrapped" not in bad.headers


def test_a_wrapper_keeps_the_models_lifecycle(tmp_path: Path) -> None:
    """A wrapped model that is missing is not ready, and /predict says why (503)."""
    settings = ServingSettings(model_dir=tmp_path / "nothing", model_wait_seconds=30)
    with TestClient(create_app(settings, predictor=Counting(OnnxPredictor(settings)))) as client:
        answer = client.post("/predict", json={"instances": [SETOSA]})
        ready = client.get("/readyz").json()
    assert answer.status_code == 503 and "no model.onnx" in answer.json()["error"]["message"]
    assert not ready["ready"] and "no model.onnx" in ready["reasons"][0]
