"""Error messages a client reads name what is wrong, never internals: no memory address from an
image decoder, no absolute model folder in /readyz or a 503 (against a real server process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from patterns.runner import free_port, port_open
from tests.serving.test_http_limits import SERVER, body_of, env, server

pytestmark = pytest.mark.slow


def test_errors_name_no_memory_address_nor_absolute_path(data_dir: Path, tmp_path: Path) -> None:
    with server(data_dir, tmp_path) as url:
        for junk in (b"\xff\xd8\xff" + b"x" * 50, b"\x89PNG\r\n\x1a\n" + b"x" * 50):
            resp = httpx.post(
                f"{url}/predict/image", content=junk, headers={"Content-Type": "image/png"}
            )
            message = resp.json()["error"]["message"]
            assert resp.status_code == 400 and "decode" in message
            assert "0x" not in message and "object at" not in message, message

    missing = tmp_path / "models" / "absent"  # an absolute folder with no model (yet)
    port = free_port()
    extra = {"MLSP_MODEL_DIR": str(missing), "MLSP_MODEL_WAIT_SECONDS": "60"}
    full = {**os.environ, **env(data_dir), **extra, "MLSP_PORT": str(port)}
    log = (tmp_path / "absent.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", SERVER], env=full, stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        ready = httpx.get(f"{url}/readyz")
        predict = httpx.post(f"{url}/predict", content=body_of(data_dir))
    finally:
        proc.terminate()
        proc.wait(30)
    reasons = ready.json()["reasons"]
    message = predict.json()["error"]["message"]
    assert ready.status_code == 503 and predict.status_code == 503
    for text in (*reasons, message):
        assert str(tmp_path) not in text and "models/absent" not in text, text
        assert "model.onnx" in text and "the model folder" in text, text
