"""web_single end to end, as a real process started by the local runner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patterns.runner import RunningPattern, start_pattern
from serving.http import make_client, request

ROW = [5.1, 3.5, 1.4, 0.2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def web_single(data_dir: Path) -> Iterator[RunningPattern]:
    with start_pattern("web_single", data_dir=data_dir, env={"MLSP_MAX_BATCH": "256"}) as run:
        yield run


def test_serves_correct_iris_predictions(web_single: RunningPattern) -> None:
    rows = [ROW, [6.0, 2.7, 4.5, 1.5], [6.3, 3.4, 5.6, 2.4]]
    resp = httpx.post(f"{web_single.url()}/predict", json={"instances": rows})
    assert resp.status_code == 200
    assert [p["label"] for p in resp.json()["predictions"]] == ["setosa", "versicolor", "virginica"]
    assert httpx.get(f"{web_single.url()}/docs").status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"instances":[[5.1,3.5,1.4]]}', "instances[0]"),
        (b'{"instances":[[5.1,3.5,1.4,NaN]]}', "instances[0][3]"),
        (b'{"instances":[[5.1,"a",1.4,0.2]]}', "instances[0][1]"),
        (b'{"instances":[]}', "instances"),
        (b'{"instances":[' + b",".join([b"[1,2,3,4]"] * 257) + b"]}", "instances"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    web_single: RunningPattern, payload: bytes, field: str
) -> None:
    resp = httpx.post(
        f"{web_single.url()}/predict", content=payload, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == field


def test_oip_infer_round_trip(web_single: RunningPattern) -> None:
    url = web_single.url()
    meta = httpx.get(f"{url}/v2/models/iris-svc").json()
    req = {
        "inputs": [
            {"name": meta["inputs"][0]["name"], "shape": [1, 4], "datatype": "FP32", "data": ROW}
        ]
    }
    resp = httpx.post(f"{url}/v2/models/iris-svc/versions/{meta['versions'][0]}/infer", json=req)
    assert resp.status_code == 200
    assert {o["name"]: o["data"] for o in resp.json()["outputs"]}["label"] == [0]


def test_http_helper_propagates_request_id_and_retries_idempotent_calls(
    web_single: RunningPattern,
) -> None:
    import asyncio

    async def go() -> tuple[str, int]:
        async with make_client(web_single.url()) as client:
            resp = await request(client, "GET", "/livez", request_id="trace-7")
            with pytest.raises(httpx.ConnectError):
                await request(client, "GET", "http://127.0.0.1:9/livez", retries=2)
            return resp.headers["x-request-id"], resp.status_code

    assert asyncio.run(go()) == ("trace-7", 200)


def test_readyz_503_until_model_is_there_then_ready(data_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "iris-svc"  # not there yet: the server waits for it
    port = _free_port()
    env = {
        **os.environ,
        "MLSP_MODEL_DIR": str(model_dir),
        "MLSP_PORT": str(port),
        "MLSP_MODEL_WAIT_SECONDS": "60",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "patterns.web_single.app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        resp = _wait_for(lambda: httpx.get(f"{url}/readyz", timeout=1))
        assert resp.status_code == 503 and resp.json()["ready"] is False
        assert httpx.post(f"{url}/predict", json={"instances": [ROW]}).status_code == 503
        staging = tmp_path / "staging"
        shutil.copytree(data_dir / "models" / "iris-svc", staging)
        staging.rename(model_dir)  # appears atomically, as an initContainer's download would
        deadline = time.monotonic() + 15
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.post(f"{url}/predict", json={"instances": [ROW]}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_sigterm_fails_readyz_keeps_serving_then_exits_zero(data_dir: Path) -> None:
    env = {"MLSP_DRAIN_DELAY_SECONDS": "1.5"}
    with start_pattern("web_single", data_dir=data_dir, env=env) as run:
        url, proc = run.url(), run.proc("api")
        slow_done: list[int] = []
        with httpx.Client(base_url=url) as client:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "shutting down" in ready.json()["reasons"]
            assert client.post("/predict", json={"instances": [ROW]}).status_code == 200
        t = threading.Thread(target=lambda: slow_done.append(proc.wait(timeout=30)))
        t.start()
        t.join(timeout=30)
        assert slow_done == [0]


def test_tampered_model_exits_nonzero(data_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "iris-svc"
    shutil.copytree(data_dir / "models" / "iris-svc", model_dir)
    (model_dir / "model.onnx").write_bytes(b"\x00" + (model_dir / "model.onnx").read_bytes())
    env = {**os.environ, "MLSP_MODEL_DIR": str(model_dir), "MLSP_PORT": str(_free_port())}
    proc = subprocess.run(
        [sys.executable, "-m", "patterns.web_single.app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "sha256 mismatch" in proc.stdout


def _free_port() -> int:
    from patterns.runner import free_port

    return free_port()


def _wait_for(call: object, timeout: float = 15) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()  # type: ignore[operator,no-any-return]
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
