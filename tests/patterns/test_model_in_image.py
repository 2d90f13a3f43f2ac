"""model_in_image as a process: the baked folder is served as the version its card (and the
image tag) names, with no dependency at all; a corrupted file never gets traffic.

The image itself (--network=none, corrupted file, non-root, size, ready time) is checked by
`make verify`; the build stage's check by test_model_load.py::test_verify_command_...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from patterns.runner import free_port, start_pattern

pytestmark = pytest.mark.slow


def test_serves_the_baked_version_with_no_dependency(data_dir: Path) -> None:
    card = json.loads((data_dir / "models" / "iris-svc" / "model.json").read_text())
    with start_pattern("model_in_image", data_dir=data_dir) as run:
        assert run.pattern.needs == ()
        meta = httpx.get(f"{run.url()}/metadata").json()
        assert (meta["name"], meta["version"], meta["sha256"]) == (
            "iris-svc",
            card["version"],
            card["sha256"],
        )
        body = httpx.post(f"{run.url()}/predict", json={"instances": [[6.3, 3.3, 6.0, 2.5]]})
        assert body.json()["predictions"][0]["label"] == "virginica"
        assert body.json()["model"]["version"] == card["version"]


def test_a_corrupted_baked_file_exits_nonzero_before_ready(model_copy: Path) -> None:
    onnx = model_copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-8:] = b"\xff" * 8
    onnx.write_bytes(bytes(data))
    env = {**os.environ, "MLSP_MODEL_DIR": str(model_copy), "MLSP_PORT": str(free_port())}
    proc = subprocess.run(
        [sys.executable, "-m", "patterns.model_in_image.app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    fatal = [json.loads(x) for x in proc.stdout.splitlines() if '"fatal"' in x]
    assert fatal and "sha256 mismatch" in fatal[0]["reason"]
    assert fatal[0]["pattern"] == "model_in_image"
