"""model_load against a real MLflow server: alias -> concrete version, verified, then served.

The loader and the server run as real processes, as the initContainer and the container do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from patterns import runner
from patterns.runner import RunnerError, start_pattern
from serving.registry import ModelRef, RegistryError
from tests.conftest import Registry

pytestmark = pytest.mark.slow


def run_loader(
    registry_url: str, dest: Path, uri: str, deadline: float = 10
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry_url,
        "MLSP_MODEL_URI": uri,
        "MLSP_MODEL_DIR": str(dest),
        "MLSP_LOAD_DEADLINE_SECONDS": str(deadline),
    }
    return subprocess.run(
        [sys.executable, "-m", "serving.loader"],
        env=env,
        capture_output=True,
        text=True,
        timeout=deadline + 60,
    )


def events(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_alias_is_served_as_the_concrete_version(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2 = registry.versions[1]
    assert v2 != registry.versions[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.url)
    with start_pattern("model_load", data_dir=tmp_path) as run:
        meta = httpx.get(f"{run.url()}/metadata").json()
        assert meta["name"] == "iris-svc"
        assert meta["version"] == v2
        assert "production" not in json.dumps(meta)
        pred = httpx.post(f"{run.url()}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert pred.status_code == 200
        assert pred.json()["model"] == {"name": "iris-svc", "version": v2}
        assert pred.json()["predictions"][0]["label"] == "setosa"
        info = httpx.get(f"{run.url()}/metrics").text
        [line] = [x for x in info.splitlines() if x.startswith("mlsp_model_info{")]
        assert 'name="iris-svc"' in line and f'version="{v2}"' in line
        loader_log = events(run.logs["model-loader"].read_text())
        done = [e for e in loader_log if e["event"] == "model ready to serve"]
        assert done and done[0]["model_version"] == v2


def test_moving_the_alias_changes_what_a_new_pod_serves(registry: Registry, tmp_path: Path) -> None:
    v1 = registry.versions[0]
    registry.set_alias("rollback", v1)
    dest = tmp_path / "models" / "iris-svc"
    result = run_loader(registry.url, dest, "models:/iris-svc@rollback")
    assert result.returncode == 0, result.stdout + result.stderr
    card = json.loads((dest / "model.json").read_text())
    assert card["version"] == v1
    assert sorted(p.name for p in dest.iterdir()) == ["model.json", "model.onnx"]


def test_a_tampered_artifact_is_refused_at_once(registry: Registry, tmp_path: Path) -> None:
    version = registry.register(2)
    registry.set_alias("tampered", version)
    stored = registry.artifact(version)
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-16] + b"\0" * 16)
        dest = tmp_path / "models" / "iris-svc"
        started = time.monotonic()
        result = run_loader(registry.url, dest, "models:/iris-svc@tampered", deadline=30)
        elapsed = time.monotonic() - started
    finally:
        stored.write_bytes(original)
    assert result.returncode == 1
    failure = [e for e in events(result.stdout) if e["event"] == "model fetch failed"]
    assert failure and "sha256" in str(failure[0]["error"])
    assert failure[0]["retryable"] is False
    assert elapsed < 20, "a tampered file must not be retried until the deadline"
    assert not dest.exists()
    assert not list(dest.parent.glob(".iris-svc.tmp-*")), "the temp download is cleaned up"


def test_mlflow_down_exits_nonzero_at_the_deadline(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{runner.free_port()}"
    started = time.monotonic()
    result = run_loader(dead, tmp_path / "m", "models:/iris-svc@production", deadline=3)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    log = events(result.stdout)
    retries = [e for e in log if e["event"] == "model fetch failed, retrying"]
    assert len(retries) >= 2, "retried with backoff before giving up"
    assert "unreachable" in str(log[-1]["error"]) and log[-1]["retryable"] is True
    assert 3 <= elapsed < 30


def test_an_alias_set_while_waiting_is_picked_up(registry: Registry, tmp_path: Path) -> None:
    """A fresh cluster: the loader starts before the training Job registered anything. The
    alias is set once the loader has reported that it is waiting for it."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.url,
        "MLSP_MODEL_URI": "models:/iris-svc@late",
        "MLSP_MODEL_DIR": str(tmp_path / "m"),
        "MLSP_LOAD_DEADLINE_SECONDS": "60",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.loader"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines, aliased = [], False
    for line in proc.stdout:  # ends when the loader exits (bounded by its 60 s deadline)
        lines.append(line)
        if not aliased and "not in the registry yet" in line:
            registry.set_alias("late", registry.versions[0])
            aliased = True
    assert proc.wait(10) == 0, "".join(lines)
    assert aliased
    assert (
        json.loads((tmp_path / "m" / "model.json").read_text())["version"] == (registry.versions[0])
    )


def test_a_pinned_version_uri_and_bad_uris(registry: Registry, tmp_path: Path) -> None:
    v1 = registry.versions[0]
    ok = run_loader(registry.url, tmp_path / "a", f"models:/iris-svc/{v1}")
    assert ok.returncode == 0, ok.stdout
    started = time.monotonic()
    bad = run_loader(registry.url, tmp_path / "b", "s3://bucket/model", deadline=30)
    assert bad.returncode == 1 and time.monotonic() - started < 20
    assert "not models:/NAME@ALIAS" in bad.stdout
    with pytest.raises(RegistryError):
        ModelRef.parse("models:/iris svc@production")
    assert ModelRef.parse("models:/iris-svc/7") == ModelRef("iris-svc", None, "7")


def test_a_failing_init_process_stops_the_pattern(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.url)
    with (
        pytest.raises(RunnerError, match="model-loader exited with exit code 1"),
        start_pattern(
            "model_load",
            data_dir=tmp_path,
            env={"MLSP_MODEL_URI": "models:/iris-svc@nope", "MLSP_LOAD_DEADLINE_SECONDS": "1"},
        ),
    ):
        pass


def test_verify_command_checks_what_a_build_stage_copies(
    registry: Registry, tmp_path: Path
) -> None:
    """The model_in_image build stage runs `serving.loader verify` on the fetched folder."""
    v1 = registry.versions[0]
    dest = tmp_path / "iris-svc"
    assert run_loader(registry.url, dest, f"models:/iris-svc/{v1}").returncode == 0
    sha = json.loads((dest / "model.json").read_text())["sha256"]

    def verify(version: str, sha256: str) -> int:
        cmd = [sys.executable, "-m", "serving.loader", "verify", str(dest)]
        cmd += ["--name", "iris-svc", "--version", version, "--sha256", sha256]
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode

    assert verify(v1, sha) == 0
    assert verify(str(int(v1) + 1), sha) == 1
    assert verify(v1, "0" * 64) == 1
    broken = tmp_path / "broken"
    shutil.copytree(dest, broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    cmd = [sys.executable, "-m", "serving.loader", "verify", str(broken)]
    cmd += ["--name", "iris-svc", "--version", v1, "--sha256", sha]
    assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 1
