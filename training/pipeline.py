"""The pipeline for one model: data -> train -> evaluate -> export (cached) -> register."""

from __future__ import annotations

from pathlib import Path

from training import data, evaluate, export, register, train
from training.catalog import ModelSpec
from training.settings import TrainingSettings
from training.steps import run_step


def step_dirs(spec: ModelSpec, settings: TrainingSettings) -> dict[str, Path]:
    root = settings.pipeline_dir
    model = root / "models" / spec.name
    return {
        "data": root / "datasets" / spec.dataset,
        "train": model / "train",
        "evaluate": model / "evaluate",
        "export": model / "export",
    }


def run_data(dataset: str, settings: TrainingSettings, out: Path) -> None:
    params = {"dataset": dataset, "seed": settings.seed, "test_size": settings.test_size}
    run_step(
        "data",
        out,
        {},
        params,
        lambda tmp: data.run(tmp, dataset, seed=settings.seed, test_size=settings.test_size),
    )


def model_steps(
    spec: ModelSpec, settings: TrainingSettings, dirs: dict[str, Path], *, until: str = "export"
) -> None:
    """The steps after `data` (train, evaluate, export) on the data step's folder in
    `dirs["data"]`, up to and including `until`: what a pipeline reading another source of
    data (batch_training's database snapshot) shares with this one."""
    run_step(
        "train",
        dirs["train"],
        {"data": dirs["data"]},
        {"model": spec.name, "seed": settings.seed, **spec.params},
        lambda tmp: train.run(tmp, spec, dirs["data"], seed=settings.seed),
    )
    if until == "train":
        return
    run_step(
        "evaluate",
        dirs["evaluate"],
        {"data": dirs["data"], "train": dirs["train"]},
        {"model": spec.name, "min_accuracy": settings.min_accuracy},
        lambda tmp: evaluate.run(
            tmp, spec, dirs["data"], dirs["train"], min_accuracy=settings.min_accuracy
        ),
    )
    if until == "evaluate":
        return
    run_step(
        "export",
        dirs["export"],
        {"data": dirs["data"], "train": dirs["train"], "evaluate": dirs["evaluate"]},
        {"model": spec.name},
        lambda tmp: export.run(tmp, spec, dirs["data"], dirs["train"], dirs["evaluate"]),
    )


def run_model(
    spec: ModelSpec,
    settings: TrainingSettings,
    *,
    until: str = "register",
) -> str | None:
    """Run every step up to and including `until`; returns the registry version if registered."""
    dirs = step_dirs(spec, settings)
    run_data(spec.dataset, settings, dirs["data"])
    if until == "data":
        return None
    model_steps(spec, settings, dirs, until=until if until != "register" else "export")
    if until != "register":
        return None
    return register.run(spec, settings, dirs)
