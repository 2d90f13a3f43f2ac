"""edge_ai against real processes: the hub and device-sim as the runner starts them, the
edge-client as a device runs it (a subprocess on its own folder), and, for manifests the hub
would never sign, a static file server standing in for a compromised mirror.

What is verified: an unverified download never replaces a working model (bad sha256,
tampered, unsigned or foreign-key manifest, failing golden examples, over the size budget);
predictions continue with the hub stopped; a downgrade is refused without --force; rollback;
an interrupted download resumes with Range; the device's output equals the server's on the
digits test set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from patterns import runner
from patterns.edge_ai import hub as hub_mod
from patterns.edge_ai.device import (
    MAX_MANIFEST_BYTES,
    Device,
    DeviceSettings,
    Refused,
    SyncResult,
    parse_manifest,
)
from patterns.edge_ai.device_sim import SlotPredictor, Syncer
from patterns.edge_ai.manifest import device_card, model_url
from patterns.edge_ai.pattern import DEV_KEY
from patterns.runner import RunningPattern, start_pattern
from serving.errors import Unavailable
from serving.model import read_card
from serving.signing import sign, verify
from serving.state import ServiceState

pytestmark = pytest.mark.slow

MODEL = "digits-lr"


def client(state: Path, hub: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
    """Run the edge-client; its exit code and its JSON answer."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "patterns.edge_ai.client",
            "--state",
            str(state),
            "--hub",
            hub,
            *args,
        ],
        env={**os.environ, "MLSP_MANIFEST_KEY": DEV_KEY, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert lines, done.stdout + done.stderr
    return done.returncode, json.loads(lines[-1])


def publish(root: Path, data_dir: Path, version: str) -> Path:
    """Put digits-lr on the hub as `version` (the same bytes under another version)."""
    folder = root / MODEL
    if not folder.exists():
        shutil.copytree(data_dir / "models" / MODEL, folder)
    card = json.loads((folder / "model.json").read_text())
    card["version"] = version
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def hub_root(data_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    publish(root, data_dir, "1")
    return root


@contextlib.contextmanager
def edge(data_dir: Path, hub_root: Path, log_dir: Path, **device: str) -> Iterator[RunningPattern]:
    with start_pattern(
        "edge_ai",
        data_dir=data_dir,
        log_dir=log_dir,
        process_env={"hub": {"MLSP_MODELS_DIR": str(hub_root)}, "device-sim": device},
    ) as run:
        yield run


def golden(data_dir: Path) -> tuple[list[list[float]], list[int]]:
    card = read_card(data_dir / "models" / MODEL)
    return [g.input for g in card.golden], [g.class_id for g in card.golden]


def rows_file(tmp_path: Path, rows: list[list[float]]) -> Path:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"instances": rows}))
    return path


def device_predicts(state: Path, hub: str, data_dir: Path, tmp_path: Path) -> None:
    rows, expected = golden(data_dir)
    code, answer = client(state, hub, "predict", "--rows", str(rows_file(tmp_path, rows)))
    assert code == 0, answer
    assert [p["class_id"] for p in answer["predictions"]] == expected


def hub_requests(run: RunningPattern, route_part: str) -> list[dict[str, Any]]:
    lines = run.logs["hub"].read_text().splitlines()
    events = [json.loads(ln) for ln in lines if ln.startswith("{")]
    return [e for e in events if e.get("event") == "request" and route_part in str(e.get("route"))]


def test_install_upgrade_rollback_and_downgrade(
    data_dir: Path, hub_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "device"
    with edge(data_dir, hub_root, tmp_path) as run:
        hub = run.url("hub")
        code, out = client(state, hub, "sync")
        assert (code, out["status"], out["active"]["version"]) == (0, "updated", "1")
        code, out = client(state, hub, "sync")
        assert (code, out["status"]) == (0, "up_to_date")

        publish(hub_root, data_dir, "2")
        code, out = client(state, hub, "sync")
        assert (code, out["status"]) == (0, "updated")
        assert (out["active"]["slot"], out["active"]["version"]) == ("b", "2")
        _, status = client(state, hub, "status")
        assert status["previous"]["version"] == "1"

        code, out = client(state, hub, "rollback")
        assert (code, out["active"]["slot"], out["active"]["version"]) == (0, "a", "1")
        device_predicts(state, hub, data_dir, tmp_path)
        code, out = client(state, hub, "sync")
        assert (code, out["status"]) == (1, "refused")
        assert "rolled back" in out["detail"] and out["active"]["version"] == "1"
        code, out = client(state, hub, "sync", "--force")
        assert (code, out["active"]["version"]) == (0, "2")

        publish(hub_root, data_dir, "1")
        code, out = client(state, hub, "sync")
        assert (code, out["status"]) == (1, "refused")
        assert "downgrade from 2 to 1" in out["detail"] and out["active"]["version"] == "2"
        code, out = client(state, hub, "sync", "--force")
        assert (code, out["status"], out["active"]["version"]) == (0, "updated", "1")


def test_predictions_continue_with_the_hub_stopped(
    data_dir: Path, hub_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "device"
    rows, expected = golden(data_dir)
    with edge(data_dir, hub_root, tmp_path, MLSP_SYNC_INTERVAL_SECONDS="0.5") as run:
        hub, device = run.url("hub"), run.url("device-sim")
        assert client(state, hub, "sync")[0] == 0
        run.kill("hub")
        deadline = time.monotonic() + 30
        ready: dict[str, Any] = {}
        while time.monotonic() < deadline:
            ready = httpx.get(f"{device}/readyz").json()
            if any("unreachable" in w for w in ready.get("warnings", [])):
                break
            time.sleep(0.3)
        assert ready["ready"] is True, ready
        assert any("unreachable" in w for w in ready["warnings"]), ready
        answer = httpx.post(f"{device}/predict", json={"instances": rows})
        assert answer.status_code == 200
        assert [p["class_id"] for p in answer.json()["predictions"]] == expected
        metrics = httpx.get(f"{device}/metrics").text
        assert 'mlsp_dependency_up{dependency="model-hub",service="device-sim"} 0.0' in metrics

        code, out = client(state, hub, "sync")
        assert (code, out["status"], out["active"]["version"]) == (75, "unreachable", "1")
        device_predicts(state, hub, data_dir, tmp_path)


def wait_for(url: str, check: Any, what: str, within: float = 30) -> Any:
    """GET `url` until `check(json)` holds; the last answer."""
    deadline = time.monotonic() + within
    while True:
        body = httpx.get(url).json()
        if check(body):
            return body
        assert time.monotonic() < deadline, f"{what}: {body}"
        time.sleep(0.3)


def test_device_sim_follows_the_hub_and_a_rollback_made_beside_it(
    data_dir: Path, hub_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "sim"
    with edge(
        data_dir, hub_root, tmp_path, MLSP_SYNC_INTERVAL_SECONDS="0.5", MLSP_STATE_DIR=str(state)
    ) as run:
        hub, device = run.url("hub"), run.url("device-sim")
        assert httpx.get(f"{device}/metadata").json()["version"] == "1"
        publish(hub_root, data_dir, "2")
        wait_for(f"{device}/metadata", lambda m: m["version"] == "2", "never took version 2")
        rows, expected = golden(data_dir)
        answer = httpx.post(f"{device}/predict", json={"instances": rows}).json()
        assert answer["model"]["version"] == "2"
        assert [p["class_id"] for p in answer["predictions"]] == expected
        info = [ln for ln in httpx.get(f"{device}/metrics").text.splitlines()]
        info = [ln for ln in info if ln.startswith("mlsp_model_info{")]
        assert len(info) == 1 and 'version="2"' in info[0], info

        code, out = client(state, hub, "rollback")
        assert (code, out["active"]["version"]) == (0, "1")
        wait_for(f"{device}/metadata", lambda m: m["version"] == "1", "never rolled back")
        ready = wait_for(
            f"{device}/readyz",
            lambda r: any("rolled back" in w for w in r.get("warnings", [])),
            "the next sync did not refuse the version rolled back from",
        )
        assert ready["ready"] is True
        assert httpx.get(f"{device}/metadata").json()["version"] == "1"


def signed_manifest(data_dir: Path, version: str, **changes: Any) -> dict[str, Any]:
    folder = data_dir / "models" / MODEL
    card = read_card(folder)
    card.version = version
    manifest = {
        "name": MODEL,
        "version": version,
        "sha256": card.sha256,
        "size": (folder / "model.onnx").stat().st_size,
        "url": model_url(MODEL, version),
        "card": device_card(card),
    }
    return sign({**manifest, **changes}, DEV_KEY.encode())


def wrong_golden(data_dir: Path) -> dict[str, Any]:
    m = signed_manifest(data_dir, "2")
    m.pop("signature")
    m["card"]["golden"][0]["class_id"] = (m["card"]["golden"][0]["class_id"] + 1) % 10
    return sign(m, DEV_KEY.encode())


def tampered(data_dir: Path) -> dict[str, Any]:
    m = signed_manifest(data_dir, "2")
    m["size"] += 1
    return m


def unsigned(data_dir: Path) -> dict[str, Any]:
    m = signed_manifest(data_dir, "2")
    m.pop("signature")
    return m


def foreign_key(data_dir: Path) -> dict[str, Any]:
    m = signed_manifest(data_dir, "2")
    m.pop("signature")
    return sign(m, b"another-key-of-someone-else-entirely!")


CASES = {
    "bad sha256": (lambda d: signed_manifest(d, "2"), True, "sha256 mismatch"),
    "tampered manifest": (tampered, False, "signature does not match"),
    "unsigned manifest": (unsigned, False, "unsigned"),
    "signed with another key": (foreign_key, False, "signature does not match"),
    "failing golden examples": (wrong_golden, False, "self-test failed"),
}


@contextlib.contextmanager
def mirror(root: Path) -> Iterator[str]:
    """A static file server (python -m http.server): it serves whatever files it is given,
    signed or not, and knows nothing of Range."""
    port = runner.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while not runner.port_open("127.0.0.1", port, timeout=0.2):
            assert time.monotonic() < deadline, "the mirror did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unverified_model_never_replaces_the_working_one(
    data_dir: Path, hub_root: Path, tmp_path: Path, case: str
) -> None:
    make, corrupt_bytes, why = CASES[case]
    state = tmp_path / "device"
    with edge(data_dir, hub_root, tmp_path) as run:
        code, before = client(state, run.url("hub"), "sync")
        assert code == 0 and before["active"]["version"] == "1"
    site = tmp_path / "mirror"
    models = site / "edge" / "models" / MODEL
    (models / "versions" / "2").mkdir(parents=True)
    (models / "manifest").write_text(json.dumps(make(data_dir)))
    onnx = (data_dir / "models" / MODEL / "model.onnx").read_bytes()
    if corrupt_bytes:
        onnx = onnx[:-8] + b"\0" * 8
    (models / "versions" / "2" / "model.onnx").write_bytes(onnx)
    with mirror(site) as url:
        code, out = client(state, url, "sync")
        assert (code, out["status"]) == (1, "refused"), out
        assert why in out["detail"]
        assert out["active"] == before["active"]
        device_predicts(state, url, data_dir, tmp_path)
        _, status = client(state, url, "status")
        assert status["partial"] == [] and status["previous"] is None


def test_a_model_over_the_size_budget_is_not_even_downloaded(
    data_dir: Path, hub_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "device"
    budget = {"MLSP_SIZE_BUDGETS": json.dumps({MODEL: 4000})}
    size = (hub_root / MODEL / "model.onnx").stat().st_size
    # device-sim syncs once at start only: every later download is the command line's
    with edge(data_dir, hub_root, tmp_path, MLSP_SYNC_INTERVAL_SECONDS="3600") as run:
        hub = run.url("hub")
        assert client(state, hub, "sync")[0] == 0
        assert len(hub_requests(run, "model.onnx")) == 2  # version 1: device-sim, the client
        publish(hub_root, data_dir, "2")
        code, out = client(state, hub, "sync", env=budget)
        assert (code, out["status"], out["active"]["version"]) == (1, "refused", "1")
        assert f"is {size} bytes, over this device's budget of 4000" in out["detail"]
        assert len(hub_requests(run, "model.onnx")) == 2, "version 2 was not downloaded"
        _, status = client(state, hub, "status")
        assert status["partial"] == []
        code, out = client(state, hub, "sync")
        assert (code, out["active"]["version"]) == (0, "2"), "the default budget takes it"


def test_an_interrupted_download_resumes_with_range(
    data_dir: Path, hub_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "device"
    size = (hub_root / MODEL / "model.onnx").stat().st_size
    with edge(data_dir, hub_root, tmp_path) as run:
        hub = run.url("hub")
        code, out = client(state, hub, "sync", "--max-bytes", "1000")
        assert (code, out["status"], out["active"]) == (75, "incomplete", None)
        _, status = client(state, hub, "status")
        assert [p["bytes"] for p in status["partial"]] == [1000]
        code, out = client(state, hub, "sync")
        assert (code, out["status"]) == (0, "updated")
        assert out["download"] == {"resumed_from": 1000, "fetched": size - 1000}
        statuses = [r["status"] for r in hub_requests(run, "model.onnx")]
        assert statuses[-1] == 206 and statuses.count(206) == 1, statuses
        device_predicts(state, hub, data_dir, tmp_path)


def test_a_corrupt_partial_download_is_thrown_away_and_fetched_again(
    data_dir: Path, hub_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "device"
    with edge(data_dir, hub_root, tmp_path) as run:
        hub = run.url("hub")
        assert client(state, hub, "sync", "--max-bytes", "1000")[0] == 75
        [part] = (state / "partial").glob("*.part")
        part.write_bytes(b"\xff" * 1000)
        code, out = client(state, hub, "sync")
        assert (code, out["status"], out["active"]) == (1, "refused", None)
        assert "sha256 mismatch" in out["detail"]
        code, out = client(state, hub, "sync")
        assert (code, out["status"], out["download"]["resumed_from"]) == (0, "updated", 0)


def test_the_device_answers_as_the_server_does_on_the_test_set(
    data_dir: Path, hub_root: Path, tmp_path: Path
) -> None:
    with np.load(data_dir / "pipeline" / "datasets" / "digits" / "data.npz") as npz:
        x_test = npz["x_test"].tolist()
    state = tmp_path / "device"
    server_env = {"api": {"MLSP_MODEL_DIR": str(data_dir / "models" / MODEL)}}
    with (
        edge(data_dir, hub_root, tmp_path) as run,
        start_pattern("web_single", data_dir=data_dir, process_env=server_env) as server,
    ):
        hub, device = run.url("hub"), run.url("device-sim")
        assert client(state, hub, "sync")[0] == 0
        served, on_device = [], []
        for start in range(0, len(x_test), 256):
            chunk = {"instances": x_test[start : start + 256]}
            served += httpx.post(f"{server.url()}/predict", json=chunk).json()["predictions"]
            on_device += httpx.post(f"{device}/predict", json=chunk).json()["predictions"]
        code, local = client(state, hub, "predict", "--rows", str(rows_file(tmp_path, x_test)))
    assert code == 2 and "256" in local["error"], "the command line keeps the batch limit"
    assert len(served) == len(x_test) == 540
    assert on_device == served
    parts = [x_test[i : i + 256] for i in range(0, len(x_test), 256)]
    cli: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        path = tmp_path / f"rows-{i}.json"
        path.write_text(json.dumps({"instances": part}))
        code, answer = client(state, "http://127.0.0.1:1", "predict", "--rows", str(path))
        assert code == 0
        cli += answer["predictions"]
    assert cli == served


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"signature": "00", "size": NaN}', "cannot be encoded canonically"),
        (b'{"signature": "00", "name": "\\ud800"}', "cannot be encoded canonically"),
        (b'{"signature": "00", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not JSON"),
    ],
)
def test_a_manifest_without_a_canonical_encoding_is_refused(body: bytes, why: str) -> None:
    """NaN, a lone surrogate, deep nesting: Refused (exit 1), never an exception that ends the
    device-sim's sync loop."""
    with pytest.raises(Refused, match=why):
        parse_manifest(body, DEV_KEY.encode())


def test_verify_of_such_a_manifest_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b'{"signature": "00", "size": NaN}')
    code, out = client(tmp_path / "device", "http://127.0.0.1:9", "verify", str(path))
    assert (code, out["status"]) == (1, "refused"), out


class BrokenDevice(Device):
    def sync(self, *, force: bool = False, max_bytes: int | None = None) -> SyncResult:
        raise RecursionError("maximum recursion depth exceeded")


def test_a_sync_that_raises_is_a_warning_and_the_loop_goes_on(tmp_path: Path) -> None:
    settings = DeviceSettings(manifest_key=DEV_KEY, state_dir=tmp_path / "device")
    device = BrokenDevice(settings)
    syncer = Syncer(device, SlotPredictor(device), ServiceState(settings, needs_model=False))
    asyncio.run(syncer.sync_once())  # no exception
    assert syncer.last is not None and syncer.last.status == "failed"
    assert syncer.warning() == "last sync failed: RecursionError: maximum recursion depth exceeded"


def test_the_hub_signs_the_size_it_hashed_and_refuses_a_file_changing_meanwhile(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model.onnx still being written when the hub stats it, finished while it hashes: 503,
    never a manifest whose size is the partial file's; once still, the whole size is signed."""
    root = tmp_path / "hub"
    folder = publish(root, data_dir, "1")
    onnx = folder / "model.onnx"
    whole = onnx.read_bytes()
    onnx.write_bytes(whole[: len(whole) // 2])
    real = hub_mod.read_digest

    def finished_meanwhile(path: Path) -> tuple[str, int]:
        if onnx.stat().st_size != len(whole):  # the writer finishes once
            onnx.write_bytes(whole)
        return real(path)

    monkeypatch.setattr(hub_mod, "read_digest", finished_meanwhile)
    hub = hub_mod.Hub(hub_mod.HubSettings(manifest_key=DEV_KEY, models_dir=root))
    with pytest.raises(Unavailable, match="changed while it was checked"):
        hub.get(MODEL)
    manifest = hub.get(MODEL).manifest
    assert manifest["size"] == len(whole)
    assert verify(manifest, DEV_KEY.encode())["size"] == len(whole)


def test_client_usage_mistakes_exit_2_saying_what(tmp_path: Path) -> None:
    state, hub = tmp_path / "device", "http://127.0.0.1:9"
    for bad in ("0", "-5", "lots"):
        done = subprocess.run(
            [
                *(sys.executable, "-m", "patterns.edge_ai.client"),
                *("--state", str(state), "--hub", hub, "sync", "--max-bytes", bad),
            ],
            env={**os.environ, "MLSP_MANIFEST_KEY": DEV_KEY},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2 and "--max-bytes" in done.stderr, done.stderr
    missing = tmp_path / "missing.json"
    code, out = client(state, hub, "predict", "--rows", str(missing))
    assert code == 2 and out["error"] == f"--rows {missing}: cannot read: No such file or directory"
    code, out = client(state, hub, "verify", str(missing))
    assert code == 2 and out["error"] == f"{missing}: cannot read: No such file or directory"
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (MAX_MANIFEST_BYTES + 1))
    code, out = client(state, hub, "verify", str(huge))
    assert (code, out["status"]) == (1, "refused") and "over" in out["detail"]
