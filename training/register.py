"""Step `register`: log the run to MLflow, register the artifact, point the `candidate` alias.

Idempotent: an artifact whose sha256 is already a version of the model reuses that version.
The card's `version` is set to the registry version before upload, so a served model reports
the version it came from. A failure after the version was created deletes it again: a failed
run registers nothing. Promotion (`production` alias) is a separate command.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from training.catalog import ModelSpec
from training.settings import TrainingSettings
from training.steps import code_sha, hash_tree, read_json, write_json

log = logging.getLogger("training")

CANDIDATE = "candidate"
PRODUCTION = "production"
ARTIFACT_PATH = "model"


def mlflow_client(settings: TrainingSettings) -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri()
    if uri.startswith("sqlite:"):
        (settings.data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _run_tags(spec: ModelSpec, card: dict[str, Any], step_dirs: dict[str, Path]) -> dict[str, str]:
    return {
        "model": spec.name,
        "git_sha": card["git_sha"],
        "code_sha": code_sha(),
        "data_hash": card["data_hash"],
        "sha256": card["sha256"],
        **{f"step.{k}": hash_tree(v) for k, v in step_dirs.items()},
        **{f"lib.{k}": v for k, v in card["libraries"].items()},
    }


def _experiment_id(client: Any, settings: TrainingSettings) -> str:
    exp = client.get_experiment_by_name(settings.experiment)
    if exp is not None:
        return str(exp.experiment_id)
    return str(
        client.create_experiment(
            settings.experiment, artifact_location=settings.artifact_location()
        )
    )


def _existing_version(client: Any, name: str, sha256: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    for mv in versions:
        if mv.tags.get("sha256") == sha256:
            return str(mv.version)
    return None


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"ml-system-patterns model {name}")


def materialise(export_dir: Path, card: dict[str, Any], target: Path) -> None:
    """Write model.onnx + model.json (with its registry version) to `target`, atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    shutil.copyfile(export_dir / "model.onnx", tmp / "model.onnx")
    write_json(tmp / "model.json", card)
    if target.exists():
        stale = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        target.rename(stale)
        shutil.rmtree(stale)
    tmp.rename(target)


def run(spec: ModelSpec, settings: TrainingSettings, step_dirs: dict[str, Path]) -> str:
    """Register the exported artifact; returns the registry version."""
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow_client(settings)
    export_dir = step_dirs["export"]
    card = read_json(export_dir / "model.json")
    version = _existing_version(client, spec.name, card["sha256"])
    created = version is None
    if version is not None:
        log.info("register %s: sha256 already registered as version %s", spec.name, version)
    else:
        _ensure_registered_model(client, spec.name)
        experiment_id = _experiment_id(client, settings)
        # The client API, never mlflow's fluent API: mlflow.set_tracking_uri also exports
        # MLFLOW_TRACKING_URI to the whole process, which would leak into the next caller.
        run = client.create_run(experiment_id, run_name=spec.name)
        run_id = run.info.run_id
        status = "FAILED"
        try:
            client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), _now_ms(), 0) for k, v in card["metrics"].items()],
                params=[Param(k, str(v)) for k, v in card["params"].items()],
                tags=[RunTag(k, str(v)) for k, v in _run_tags(spec, card, step_dirs).items()],
            )
            source = f"{run.info.artifact_uri}/{ARTIFACT_PATH}"
            mv = client.create_model_version(
                spec.name, source, run_id=run_id, tags={"sha256": card["sha256"]}
            )
            version = str(mv.version)
            try:
                card["version"] = version
                card["mlflow_run_id"] = run_id
                with tempfile.TemporaryDirectory() as tmp:
                    shutil.copyfile(export_dir / "model.onnx", Path(tmp) / "model.onnx")
                    write_json(Path(tmp) / "model.json", card)
                    client.log_artifacts(run_id, tmp, artifact_path=ARTIFACT_PATH)
            except BaseException:
                client.delete_model_version(spec.name, version)
                raise
            status = "FINISHED"
        finally:
            client.set_terminated(run_id, status)
        log.info("register %s: version %s", spec.name, version)
    card["version"] = version
    try:
        materialise(export_dir, card, settings.models_dir / spec.name)
        client.set_registered_model_alias(spec.name, CANDIDATE, version)
    except BaseException:
        if created:  # a run that fails registers nothing, up to its last step
            client.delete_model_version(spec.name, version)
        raise
    return version


def promote(
    name: str, settings: TrainingSettings, version: str | None = None, alias: str = PRODUCTION
) -> str:
    """Point `alias` at `version` (default: the current candidate)."""
    client = mlflow_client(settings)
    if version is None:
        version = str(client.get_model_version_by_alias(name, CANDIDATE).version)
    client.get_model_version(name, version)  # raises if it does not exist
    client.set_registered_model_alias(name, alias, version)
    log.info("promote %s: @%s -> version %s", name, alias, version)
    return version
