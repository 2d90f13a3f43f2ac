"""Pipeline tests: parity for every model, step cache and resume, the gate, the registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from serving.model import OnnxModel
from training import export as export_step
from training import register
from training.catalog import MODELS, get_spec
from training.evaluate import GateFailed
from training.pipeline import run_model, step_dirs
from training.settings import TrainingSettings
from training.steps import MANIFEST


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> TrainingSettings:
    """Every model in the catalogue through data..export (no registry)."""
    settings = TrainingSettings(data_dir=tmp_path_factory.mktemp("pipeline"))
    for name in MODELS:
        run_model(get_spec(name), settings, until="export")
    return settings


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_exports_with_parity_and_a_complete_card(
    exported: TrainingSettings, name: str
) -> None:
    spec = get_spec(name)
    folder = step_dirs(spec, exported)["export"]
    card = json.loads((folder / "model.json").read_text())
    assert card["metrics"]["parity_max_abs_diff"] <= export_step.PARITY_ATOL
    assert card["metrics"]["accuracy"] >= 0.9
    assert len(card["golden"]) == 5
    assert {"decile_edges", "decile_counts", "sample", "class_prior"} <= card["reference"].keys()
    assert len(card["reference"]["decile_edges"]) == len(card["feature_names"])
    assert all(len(e) == 9 for e in card["reference"]["decile_edges"])
    assert abs(sum(card["reference"]["class_prior"]) - 1) < 1e-5
    assert card["libraries"]["skl2onnx"] and card["data_hash"]
    card["version"] = "test"
    (folder / "model.json").write_text(json.dumps(card))
    model = OnnxModel.load(folder)
    model.self_test()  # the golden examples reproduce through the serving code path


def test_outlier_model_flags_shifted_rows(exported: TrainingSettings) -> None:
    card = json.loads(
        (step_dirs(get_spec("iris-ocsvm"), exported)["export"] / "model.json").read_text()
    )
    assert card["task"] == "outlier" and card["labels"] == ["inlier", "outlier"]
    assert card["metrics"]["shifted_detection_rate"] > 0.9
    assert 0.0 < card["reference"]["outlier_rate"] < 0.25


def test_parity_failure_stops_export(exported: TrainingSettings) -> None:
    spec = get_spec("iris-lr")
    dirs = step_dirs(spec, exported)
    outputs = dict(np.load(dirs["train"] / "sklearn_outputs.npz"))
    outputs["test_scores"] = outputs["test_scores"] + 1e-3  # scikit-learn "disagrees" now
    with pytest.raises(export_step.ParityError, match="parity failed"):
        export_step.check_parity(spec, dirs["train"] / "model.onnx", outputs)


def test_rerun_skips_cached_steps_and_a_param_change_reruns(tmp_path: Path) -> None:
    settings = TrainingSettings(data_dir=tmp_path)
    spec = get_spec("iris-lr")
    run_model(spec, settings, until="export")
    dirs = step_dirs(spec, settings)
    stamps = {k: (d / MANIFEST).stat().st_mtime_ns for k, d in dirs.items()}
    run_model(spec, settings, until="export")
    assert {k: (d / MANIFEST).stat().st_mtime_ns for k, d in dirs.items()} == stamps
    run_model(spec, TrainingSettings(data_dir=tmp_path, seed=1), until="export")
    assert (dirs["data"] / MANIFEST).stat().st_mtime_ns != stamps["data"]


def test_gate_failure_exits_nonzero_and_registers_nothing(tmp_path: Path) -> None:
    settings = TrainingSettings(data_dir=tmp_path, min_accuracy=1.01)
    with pytest.raises(GateFailed) as failed:
        run_model(get_spec("iris-lr"), settings)
    assert failed.value.code != 0
    dirs = step_dirs(get_spec("iris-lr"), settings)
    assert not dirs["evaluate"].exists() and not dirs["export"].exists()
    assert not (tmp_path / "models" / "iris-lr").exists()
    assert not (tmp_path / "mlflow").exists()


def test_register_is_idempotent_and_promote_moves_the_alias(data_dir: Path) -> None:
    from mlflow.tracking import MlflowClient

    settings = TrainingSettings(data_dir=data_dir)
    spec = get_spec("iris-svc")
    uri = settings.tracking_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = client.get_model_version_by_alias("iris-svc", register.CANDIDATE).version
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    assert run_model(spec, settings) == str(first)  # same artifact: same version
    assert os.environ.get("MLFLOW_TRACKING_URI") == env_before  # no process-wide side effect
    assert register.promote("iris-svc", settings) == str(first)
    mv = client.get_model_version_by_alias("iris-svc", register.PRODUCTION)
    assert str(mv.version) == str(first)
    run = client.get_run(mv.run_id)
    assert run.data.metrics["accuracy"] >= 0.9
    assert run.data.tags["sha256"] == mv.tags["sha256"]
    assert {"step.data", "step.train", "step.export", "data_hash"} <= run.data.tags.keys()
    files = {f.path for f in client.list_artifacts(mv.run_id, "model")}
    assert files == {"model/model.onnx", "model/model.json"}
    served = json.loads((data_dir / "models" / "iris-svc" / "model.json").read_text())
    assert served["version"] == str(first)
