"""The Open Inference Protocol v2 conformance suite (serving/oip_conformance.py) against real
servers: it passes on ours (web_single) and on a correct server that is not ours, and fails,
naming the check, on servers that break one rule of the protocol."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patterns.procs import answers, free_port
from patterns.runner import RunningPattern, start_pattern
from serving import oip_conformance
from serving.oip_conformance import CHECKS, Check, Failure, Probe, run
from tests.serving.broken_oip import FAULTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def oip_servers() -> Iterator[dict[str, str]]:
    """One tests/serving/broken_oip.py process per fault: fault -> its base URL."""
    procs, urls = [], {}
    try:
        for fault in FAULTS:
            port = free_port()
            cmd = [sys.executable, "-m", "tests.serving.broken_oip", str(port), fault]
            procs.append(subprocess.Popen(cmd, cwd=ROOT))
            urls[fault] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not all(answers(f"{u}/v2/health/live") for u in urls.values()):
            assert time.monotonic() < deadline, "the OIP test servers did not start"
            time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "serving.oip_conformance", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)


def failed(url: str) -> dict[str, str | None]:
    return {r.check.name: r.detail for r in run(CHECKS, url, "doubler") if not r.ok}


def test_a_correct_server_that_is_not_ours_passes(oip_servers: dict[str, str]) -> None:
    done = cli(oip_servers["none"], "--model", "doubler")
    assert done.returncode == 0, done.stdout
    assert f"{len(CHECKS)}/{len(CHECKS)} checks pass" in done.stdout


def test_a_wrong_error_body_fails_every_error_check(oip_servers: dict[str, str]) -> None:
    errors = {c.name for c in CHECKS if c.name.startswith("error-")}
    found = failed(oip_servers["error-body"])
    assert set(found) == errors
    assert 'not {"error": "<string>"}' in str(found["error-unknown-model-infer"])
    done = cli(oip_servers["error-body"], "--model", "doubler")
    assert done.returncode == 1
    assert "FAIL  error-unknown-model-metadata" in done.stdout


def test_an_output_that_does_not_fit_its_shape_fails_the_infer_checks(
    oip_servers: dict[str, str],
) -> None:
    found = failed(oip_servers["output-shape"])
    assert {"infer", "infer-id", "infer-requested-output", "infer-version"} <= set(found)
    assert found["infer"] == "outputs[0]: shape [1, 3] holds 3 values, data has 2"
    assert not any(name.startswith(("error-", "server-", "model-")) for name in found)


@pytest.mark.parametrize(
    ("fault", "finding"),
    [
        ("output-datatype", "outputs[0].datatype is FP64, the model's metadata says FP32"),
        ("output-rows", "outputs[0].shape [2, 2] has 2 rows, the request sent 1"),
    ],
)
def test_an_output_that_is_not_the_metadatas_fails_the_infer_checks(
    oip_servers: dict[str, str], fault: str, finding: str
) -> None:
    found = failed(oip_servers[fault])
    assert set(found) == {"infer", "infer-id", "infer-requested-output", "infer-version"}
    assert found["infer"] == finding


def test_metadata_without_outputs_is_a_fail_line_not_a_crash(
    oip_servers: dict[str, str],
) -> None:
    done = cli(oip_servers["no-outputs"], "--model", "doubler")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL  model-metadata" in done.stdout
    assert "FAIL  infer-requested-output" in done.stdout and "IndexError" in done.stdout
    done = cli(oip_servers["no-outputs"])  # the repository index is not JSON
    assert done.returncode == 2 and "pass --model" in done.stderr, done.stderr


def test_an_input_too_large_to_build_is_a_finding() -> None:
    meta = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2000, 1000]}]}
    probe = Probe(httpx.Client(), "m", _metadata=meta)
    with pytest.raises(Failure, match="holds 2000000 values, more than the 1000000"):
        probe.request()


def test_an_id_not_echoed_fails_infer_id_only(oip_servers: dict[str, str]) -> None:
    found = failed(oip_servers["no-id-echo"])
    assert list(found) == ["infer-id"]
    assert "is not echoed" in str(found["infer-id"])


def test_a_server_that_cannot_be_examined_exits_2(oip_servers: dict[str, str]) -> None:
    done = cli(oip_servers["none"])  # no --model, and no repository extension
    assert done.returncode == 2 and "pass --model" in done.stderr
    done = cli(f"http://127.0.0.1:{free_port()}", "--model", "m")
    assert done.returncode == 1 and "ConnectError" in done.stdout


def test_data_fills_the_input(oip_servers: dict[str, str]) -> None:
    done = cli(oip_servers["none"], "--model", "doubler", "--data", "[2.5]")
    assert done.returncode == 0, done.stdout
    assert cli(oip_servers["none"], "--model", "doubler", "--data", "{}").returncode == 2
    assert cli(oip_servers["none"], "--model", "doubler", "--data", "[1,").returncode == 2


@pytest.fixture(scope="module")
def web_single(data_dir: Path) -> Iterator[RunningPattern]:
    with start_pattern("web_single", data_dir=data_dir) as running:
        yield running


@pytest.mark.slow
@oip_conformance.each_check
def test_web_single_conforms(web_single: RunningPattern, oip_check: Check) -> None:
    oip_check.verify(web_single.url(), "iris-svc")


ERROR_CHECKS = [c for c in CHECKS if c.name.startswith("error-")]


@pytest.mark.parametrize("oip_check", ERROR_CHECKS, ids=[c.name for c in ERROR_CHECKS])
def test_a_failing_check_raises_an_assertion_naming_it(
    oip_servers: dict[str, str], oip_check: Check
) -> None:
    with pytest.raises(AssertionError, match=f"OIP {oip_check.name}: "):
        oip_check.verify(oip_servers["error-body"], "doubler")


def test_as_a_pytest_plugin_each_check_is_a_test(
    oip_servers: dict[str, str], tmp_path: Path
) -> None:
    test = tmp_path / "test_server.py"
    test.write_text(
        "import os\n\n"
        "def test_oip(oip_check):\n"
        "    oip_check.verify(os.environ['OIP_URL'], 'doubler')\n"
    )
    for fault, expected in (("none", f"{len(CHECKS)} passed"), ("no-id-echo", "1 failed")):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "serving.oip_conformance", str(test),
             "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
            env={**os.environ, "OIP_URL": oip_servers[fault], "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert expected in done.stdout, done.stdout
    assert "test_oip[infer-id]" in done.stdout
