"""serving/expect.py: a model whose card is not the configured one is refused at load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from serving.expect import ExpectedModel, Expecting, mismatches
from serving.model import ModelError, read_card
from serving.predictor import OnnxPredictor
from serving.settings import ServingSettings

IRIS = {
    "MLSP_EXPECT_MODEL": "iris-rf",
    "MLSP_EXPECT_INPUT": "X",
    "MLSP_EXPECT_FEATURES": "sepal_length,sepal_width,petal_length,petal_width",
    "MLSP_EXPECT_LABELS": "setosa,versicolor,virginica",
    "MLSP_EXPECT_PREPROCESS": "none",
}


def expected(monkeypatch: pytest.MonkeyPatch, **changes: str) -> ExpectedModel:
    for key, value in {**IRIS, **changes}.items():
        monkeypatch.setenv(key, value)
    return ExpectedModel()


def test_the_settings_read_comma_separated_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    exp = expected(monkeypatch)
    assert exp.expect_labels == ["setosa", "versicolor", "virginica"]
    assert exp.expect_features is not None and len(exp.expect_features) == 4


def test_the_configured_card_matches(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert mismatches(read_card(data_dir / "models" / "iris-rf"), expected(monkeypatch)) == []
    assert mismatches(read_card(data_dir / "models" / "iris-rf"), ExpectedModel()) == []


def test_each_difference_is_named(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = read_card(data_dir / "models" / "digits-lr")
    found = mismatches(card, expected(monkeypatch))
    assert [f.split(":")[0] for f in found] == ["model", "features", "labels", "preprocess"]
    assert "'digits-8x8@1', the service is configured for 'none'" in found[-1]


def test_a_model_with_other_labels_is_refused_at_load(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ServingSettings(model_dir=data_dir / "models" / "iris-rf")
    swapped = expected(monkeypatch, MLSP_EXPECT_LABELS="versicolor,setosa,virginica")
    with pytest.raises(ModelError, match="labels: the model has"):
        asyncio.run(Expecting(OnnxPredictor(settings), swapped).load())
    predictor = Expecting(OnnxPredictor(settings), expected(monkeypatch))
    asyncio.run(predictor.load())
    assert predictor.not_ready() is None and predictor.card.name == "iris-rf"
