"""pipeline_training as real processes: the steps, a real MLflow server, the loader, the api.

The steps run as `python -m training` with the step in MLSP_STEP, exactly as the Job's
containers run them; the gate, the resume and the lineage are checked from the outside.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from patterns.runner import start_pattern
from training.register import mlflow_client
from training.settings import TrainingSettings
from training.steps import MANIFEST

pytestmark = pytest.mark.slow

MODEL = "iris-rf"


def training(data_dir: Path, step: str, **env: str) -> subprocess.CompletedProcess[str]:
    """One container of the Job: `python -m training` configured by the environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLSP_", "MLFLOW_"))}
    full = {
        **clean,
        "MLSP_STEP": step,
        "MLSP_TRAIN_MODELS": env.pop("MLSP_TRAIN_MODELS", MODEL),
        "MLSP_DATA_DIR": str(data_dir),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "training"], env=full, capture_output=True, text=True, timeout=300
    )


def lineage(url: str, tracking: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    return subprocess.run(
        [sys.executable, "-m", "patterns.pipeline_training.lineage", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def manifests(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob(MANIFEST)}


def test_the_job_registers_a_candidate_the_api_serves_and_lineage_traces(tmp_path: Path) -> None:
    with start_pattern("pipeline_training", data_dir=tmp_path) as run:
        meta = httpx.get(f"{run.url()}/metadata").json()
        assert (meta["name"], meta["version"]) == (MODEL, "1")
        answer = httpx.post(f"{run.url()}/predict", json={"instances": [[6.3, 3.3, 6.0, 2.5]]})
        assert answer.json()["model"] == {"name": MODEL, "version": "1"}

        traced = lineage(run.url(), run.deps["mlflow"])
        assert traced.returncode == 0, traced.stdout + traced.stderr
        assert traced.stdout.count(": yes") == 3
        assert f"data hash {meta['data_hash']}" in traced.stdout
        assert meta["mlflow_run_id"] in traced.stdout

        # the whole Job again: every step is a no-op, the same artifact the same version
        artifacts = tmp_path / "pipeline_training"
        before = manifests(artifacts)
        assert len(before) == 4  # data, train, evaluate, export
        again = training(artifacts, "register", MLFLOW_TRACKING_URI=run.deps["mlflow"])
        assert again.returncode == 0, again.stderr
        assert again.stderr.count(": cached") == 4
        assert "already registered as version 1" in again.stderr
        assert manifests(artifacts) == before

        # a registry record that no longer matches what is served: lineage says so, exit 1
        client = mlflow_client(TrainingSettings(mlflow_tracking_uri=run.deps["mlflow"]))
        client.set_model_version_tag(MODEL, "1", "sha256", "0" * 64)
        broken = lineage(run.url(), run.deps["mlflow"])
        assert broken.returncode == 1
        assert "served sha256 == registry tag == run tag: NO" in broken.stdout


def test_a_failed_gate_registers_nothing_and_a_rerun_resumes_at_it(tmp_path: Path) -> None:
    failed = training(tmp_path, "run", MLSP_TRAIN_MODELS="iris-lr", MLSP_MIN_ACCURACY="1.01")
    assert failed.returncode != 0
    assert "nothing is registered" in failed.stderr
    assert not (tmp_path / "models").exists()
    assert not (tmp_path / "mlflow").exists()  # the registry was never opened
    steps = tmp_path / "pipeline"
    done = manifests(steps)
    assert sorted(Path(p).parent.name for p in done) == ["iris", "train"]

    passed = training(tmp_path, "run", MLSP_TRAIN_MODELS="iris-lr")
    assert passed.returncode == 0, passed.stderr
    assert "step data: cached" in passed.stderr and "step train: cached" in passed.stderr
    assert "step evaluate: done" in passed.stderr
    assert "iris-lr: registered version 1 (@candidate)" in passed.stdout
    assert {k: v for k, v in manifests(steps).items() if k in done} == done
    client = mlflow_client(TrainingSettings(data_dir=tmp_path))
    assert str(client.get_model_version_by_alias("iris-lr", "candidate").version) == "1"
