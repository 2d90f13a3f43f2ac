"""Shared fixtures: models trained by the real pipeline into a temporary data folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from training.catalog import get_spec
from training.pipeline import run_model
from training.settings import TrainingSettings

SERVED_MODELS = ("iris-svc", "iris-ocsvm", "digits-lr")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with SERVED_MODELS trained, exported and registered (embedded MLflow)."""
    root = tmp_path_factory.mktemp("data")
    settings = TrainingSettings(data_dir=root)
    for name in SERVED_MODELS:
        run_model(get_spec(name), settings)
    return root


@pytest.fixture(scope="session")
def iris_dir(data_dir: Path) -> Path:
    return data_dir / "models" / "iris-svc"


@pytest.fixture
def model_copy(iris_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the iris-svc artifact a test may tamper with."""
    target = tmp_path / "iris-svc"
    shutil.copytree(iris_dir, target)
    yield target
