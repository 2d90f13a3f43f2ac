"""serving/hotconfig.py on real files: validate, then swap; the last good one stays; a
Kubernetes ConfigMap update (the `..data` symlink swapped to a new folder) is seen."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel, ConfigDict, Field

from serving import hotconfig
from serving.hotconfig import ConfigInvalid, WatchedFile, digest_of, parse_yaml


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, ge=0, le=1)
    enabled: bool = True


class ConfigMapVolume:
    """A folder laid out as the kubelet lays out a mounted ConfigMap: each key a symlink to
    `..data/<key>`, `..data` a symlink to a timestamped folder, swapped by one rename."""

    def __init__(self, root: Path, key: str) -> None:
        self.root, self.key, self.generation = root, key, 0
        root.mkdir(exist_ok=True)

    @property
    def path(self) -> Path:
        return self.root / self.key

    def write(self, text: str) -> None:
        self.generation += 1
        folder = self.root / f"..2026_12_07_00_00_0{self.generation}"
        folder.mkdir()
        (folder / self.key).write_text(text)
        link = self.root / "..data_tmp"
        link.symlink_to(folder.name)
        os.replace(link, self.root / "..data")  # the atomic swap
        if not self.path.is_symlink():
            self.path.symlink_to(f"..data/{self.key}")


def metric_value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def watched(path: Path, **kwargs: object) -> WatchedFile[Limits]:
    return WatchedFile(path, Limits, name=f"limits-{path.parent.name}", **kwargs)  # type: ignore[arg-type]


def test_a_missing_file_means_the_defaults_and_an_invalid_one_stops_start_up(
    tmp_path: Path,
) -> None:
    w = watched(tmp_path / "absent.yaml")
    assert w.load() == Limits() and w.source == "defaults" and w.warning() is None
    with pytest.raises(ConfigInvalid, match="unreadable"):  # the mounted folder, not the file
        watched(tmp_path).load()
    bad = tmp_path / "bad.yaml"
    bad.write_text("threshold: 2\n")
    with pytest.raises(ConfigInvalid, match=r"threshold: Input should be less than or equal to 1"):
        watched(bad).load()


def test_a_configmap_swap_is_applied_and_a_bad_file_keeps_the_last_good_one(
    tmp_path: Path,
) -> None:
    volume = ConfigMapVolume(tmp_path / "params", "limits.yaml")
    volume.write("threshold: 0.7\n")
    w = watched(volume.path)
    assert w.load().threshold == 0.7
    first = w.digest

    volume.write("threshold: 0.8  # raised\n")
    assert w.refresh() is True
    assert w.current.threshold == 0.8 and w.digest != first and w.warning() is None

    for bad, reason in [
        ("threshold: [0.9\n", "not valid YAML at line 2"),
        ("threshold: 1.5\n", "threshold: Input should be less than or equal to 1"),
        ("treshold: 0.9\n", "treshold: Extra inputs are not permitted"),
        ("- 0.9\n", "(top level): a mapping is expected, not list"),
    ]:
        volume.write(bad)
        assert w.refresh() is False
        assert w.current.threshold == 0.8, bad  # the last good one, whole
        warning = w.warning()
        assert warning is not None and reason in warning and w.digest in warning
    assert metric_value("mlsp_config_valid", config=w.name) == 0

    volume.write("threshold: 0.8\nenabled: true\n")  # the same parameters, spelled otherwise
    assert w.refresh() is True and w.warning() is None
    assert metric_value("mlsp_config_valid", config=w.name) == 1
    assert metric_value("mlsp_config_reloads_total", config=w.name, result="invalid") == 4
    assert metric_value("mlsp_config_info", config=w.name, digest=w.digest) == 1
    assert metric_value("mlsp_config_info", config=w.name, digest=first) == 0


def test_an_unchanged_file_is_not_applied_again_and_a_vanished_one_is_a_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text("enabled: false\n")
    w = watched(path)
    w.load()
    assert w.refresh() is False
    path.unlink()
    assert w.refresh() is False and w.current.enabled is False
    assert "the file is gone" in (w.warning() or "")


def test_the_digest_names_the_parameters_not_the_layout() -> None:
    a = parse_yaml(Limits, b"threshold: 0.5\n")
    b = parse_yaml(Limits, b"# defaults\n{enabled: true}\n")
    assert digest_of(a) == digest_of(b) == digest_of(Limits())
    assert digest_of(parse_yaml(Limits, b"threshold: 0.51")) != digest_of(a)
    assert digest_of(parse_yaml(Limits, b"# every default\n")) == digest_of(a)
    assert len(digest_of(a)) == 12


def test_a_check_beyond_the_model_refuses_too(tmp_path: Path) -> None:
    def positive(config: Limits) -> None:
        if config.threshold == 0:
            raise ValueError("threshold: 0 would decide everything")

    path = tmp_path / "limits.yaml"
    path.write_text("threshold: 0.2\n")
    w = watched(path, check=positive)
    w.load()
    path.write_text("threshold: 0\n")
    assert w.refresh() is False and "0 would decide everything" in (w.warning() or "")


def test_watch_picks_a_change_up_while_the_loop_runs(tmp_path: Path) -> None:
    volume = ConfigMapVolume(tmp_path / "watched", "limits.yaml")
    volume.write("threshold: 0.1\n")
    w = watched(volume.path, interval=0.02)
    w.load()

    async def scenario() -> float:
        stop = False
        task = asyncio.create_task(w.watch(lambda: stop))
        volume.write("threshold: 0.2\n")
        for _ in range(200):
            await asyncio.sleep(0.01)
            if w.current.threshold == 0.2:
                break
        stop = True
        await asyncio.wait_for(task, 1)
        return w.current.threshold

    assert asyncio.run(scenario()) == 0.2


def test_yaml_is_parsed_safely() -> None:
    with pytest.raises(ConfigInvalid):
        parse_yaml(Limits, b"!!python/object/apply:os.system ['true']\n")
    assert hotconfig.parse_yaml(Limits, b"{}") == Limits()
    with pytest.raises(ConfigInvalid, match="the file is empty"):  # a truncated write
        parse_yaml(Limits, b"  \n")
