"""parameter_based: the decision table in process, then the pattern as real processes
(parallel's three one-vs-rest backends and the parameter proxy) with its parameter file
edited, broken and swapped the way Kubernetes updates a mounted ConfigMap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from patterns.parameter_based.proxy import (
    ABSTAIN,
    ParameterProxy,
    Parameters,
    ParameterSettings,
    decide,
)
from patterns.runner import RunningPattern, start_pattern
from serving.hotconfig import ConfigInvalid, parse_yaml
from serving.upstream import Backend
from tests.conftest import model_calls
from tests.serving.test_hotconfig import ConfigMapVolume

ROWS = {"setosa": [5.1, 3.5, 1.4, 0.2], "versicolor": [7.0, 3.2, 4.7, 1.4]}
ROWS["virginica"] = [6.3, 3.3, 6.0, 2.5]


@pytest.mark.parametrize(
    ("parameters", "scores", "labels", "decisions"),
    [
        # the book's defaults: setosa 0.9, versicolor 0.85 (virginica is off: never scored)
        ("{}", {"setosa": [0.95, 0.2], "versicolor": [0.1, 0.85]}, ["setosa", "versicolor"],
         [{"setosa": 1, "versicolor": 0}, {"setosa": 0, "versicolor": 1}]),
        # below every threshold: abstain, never the argmax
        ("{}", {"setosa": [0.89], "versicolor": [0.84]}, [ABSTAIN],
         [{"setosa": 0, "versicolor": 0}]),
        # two classes decide: the higher probability names the label, both decisions are 1
        ("classes: {setosa: {threshold: 0.5}, versicolor: {threshold: 0.5}}",
         {"setosa": [0.6], "versicolor": [0.7]}, ["versicolor"],
         [{"setosa": 1, "versicolor": 1}]),
        # a threshold of 0 decides everything; 1 only a certainty
        ("classes: {virginica: {active: true, threshold: 1}, setosa: {threshold: 0}}",
         {"setosa": [0.0], "virginica": [0.999]}, ["setosa"],
         [{"setosa": 1, "virginica": 0}]),
    ],
)  # fmt: skip
def test_threshold_table(
    parameters: str, scores: dict[str, list[float]], labels: list[str], decisions: list[Any]
) -> None:
    params = parse_yaml(Parameters, parameters.encode())
    out = decide(params, scores, len(labels))
    assert [p["label"] for p in out] == labels
    assert [p["decisions"] for p in out] == decisions


def test_unset_parameters_take_the_book_defaults() -> None:
    params = parse_yaml(Parameters, b"classes: {virginica: {threshold: 0.7}}")
    table = {n: (params.threshold(n), params.active(n)) for n in params.classes}
    assert table == {
        "setosa": (0.9, True),
        "versicolor": (0.85, True),
        "virginica": (0.7, False),  # its threshold set, still off by default
    }
    assert not parse_yaml(Parameters, b"activate_all: false").active("setosa")
    with pytest.raises(ConfigInvalid, match=r"classes\.setosa\.active"):
        parse_yaml(Parameters, b"classes: {setosa: {active: maybe}}")


def test_any_backends_start_with_an_empty_file_and_a_named_class_needs_a_backend(
    tmp_path: Path,
) -> None:
    backends = [Backend(name=n, url="http://127.0.0.1:9") for n in ("setosa", "mountain")]
    path = tmp_path / "parameters.yaml"
    proxy = ParameterProxy(ParameterSettings(backends=backends, parameters_file=path))
    params = proxy.parameters.current  # no file: defaults; versicolor has no backend: not called
    assert (params.active("mountain"), params.threshold("mountain")) == (True, 0.95)
    path.write_text("classes: {versicolr: {threshold: 0.5}}\n")  # a typo
    assert proxy.parameters.refresh() is False
    assert "versicolr is active but has no backend" in (proxy.parameters.warning() or "")


@pytest.fixture
def volume(tmp_path: Path) -> ConfigMapVolume:
    v = ConfigMapVolume(tmp_path / "parameters", "parameters.yaml")
    v.write("# the book's defaults\n")
    return v


@pytest.fixture
def pattern(data_dir: Path, volume: ConfigMapVolume) -> Iterator[RunningPattern]:
    env = {
        "parameter-proxy": {
            "MLSP_PARAMETERS_FILE": str(volume.path),
            "MLSP_PARAMETERS_RELOAD_SECONDS": "0.1",
        }
    }
    with start_pattern("parameter_based", data_dir=data_dir, process_env=env) as run:
        yield run


def predict(url: str, *names: str) -> httpx.Response:
    rows = [ROWS[n] for n in names]
    return httpx.post(f"{url}/predict", json={"instances": rows}, timeout=10)


def until_digest(url: str, old: str, seconds: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        shown: dict[str, Any] = httpx.get(f"{url}/parameters", timeout=5).json()
        if shown["digest"] != old:
            return shown
        time.sleep(0.05)
    raise AssertionError(f"the parameters stayed {old}")


@pytest.mark.slow
def test_edits_apply_without_a_restart_and_an_inactive_backend_is_never_called(
    pattern: RunningPattern, volume: ConfigMapVolume
) -> None:
    proxy = pattern.url("parameter-proxy")
    pid = pattern.proc("parameter-proxy").pid
    before = model_calls(pattern.url("virginica"))
    for _ in range(20):
        resp = predict(proxy, "setosa", "versicolor", "virginica")
        assert resp.status_code == 200, resp.text
    body = resp.json()
    digest = body["parameters"]
    assert resp.headers["x-parameters-digest"] == digest
    assert body["called"] == ["setosa", "versicolor"]
    assert body["predictions"][0]["label"] == "setosa"
    assert "virginica" not in body["predictions"][2]["scores"]
    assert model_calls(pattern.url("virginica")) == before  # 0 calls to the inactive class

    # the ConfigMap is edited: virginica on, versicolor's threshold lowered
    volume.write("classes:\n  virginica: {active: true}\n  versicolor: {threshold: 0.6}\n")
    shown = until_digest(proxy, digest)
    assert shown["calls"] == ["setosa", "versicolor", "virginica"]
    body = predict(proxy, "setosa", "versicolor", "virginica").json()
    assert body["parameters"] == shown["digest"] != digest
    assert [p["label"] for p in body["predictions"]] == ["setosa", "versicolor", "virginica"]
    assert model_calls(pattern.url("virginica")) == before + 1
    assert (
        pattern.proc("parameter-proxy").pid == pid
        and pattern.proc("parameter-proxy").poll() is None
    )


@pytest.mark.slow
def test_a_bad_file_keeps_the_last_good_parameters_and_readiness(
    pattern: RunningPattern, volume: ConfigMapVolume
) -> None:
    proxy = pattern.url("parameter-proxy")
    defaults = predict(proxy, "setosa").json()["parameters"]
    volume.write("classes:\n  setosa: {threshold: 0.99}\n")
    good = until_digest(proxy, defaults)
    volume.write("classes:\n  setosa: {threshold: 0.5\n")  # broken YAML
    time.sleep(0.5)  # five reload intervals
    ready = httpx.get(f"{proxy}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    [warning] = ready.json()["warnings"]
    assert "not valid YAML" in warning and good["digest"] in warning
    assert httpx.get(f"{proxy}/parameters", timeout=5).json()["refused"]
    body = predict(proxy, "setosa").json()
    assert body["parameters"] == good["digest"]
    assert body["predictions"][0]["label"] == ABSTAIN  # 0.99 still applies: p(setosa) < 0.99

    volume.write("classes:\n  setosa: {threshold: 0.9, colour: red}\n")  # unknown field
    time.sleep(0.5)
    assert "classes.setosa.colour" in httpx.get(f"{proxy}/readyz", timeout=5).json()["warnings"][0]
    volume.write("classes:\n  mountain: {threshold: 0.9}\n")  # a class without a backend
    time.sleep(0.5)
    assert "mountain is active but has no backend" in httpx.get(f"{proxy}/readyz", timeout=5).text


@pytest.mark.slow
def test_switched_off_nothing_is_called_and_an_inactive_backend_may_be_down(
    pattern: RunningPattern, volume: ConfigMapVolume
) -> None:
    proxy = pattern.url("parameter-proxy")
    pattern.kill("virginica")  # inactive by default: not needed
    resp = predict(proxy, "setosa")
    assert resp.status_code == 200 and resp.json()["called"] == ["setosa", "versicolor"]
    calls = model_calls(pattern.url("setosa"))
    volume.write("activate_all: false\n")
    until_digest(proxy, resp.json()["parameters"])
    body = predict(proxy, "setosa").json()
    assert body["status"] == "disabled" and "predictions" not in body
    assert model_calls(pattern.url("setosa")) == calls
    volume.write("classes: {virginica: {active: true}}\n")  # on again, with virginica down
    until_digest(proxy, body["parameters"])
    resp = predict(proxy, "setosa")
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["dependency"] == "virginica"


def test_an_invalid_file_at_start_up_stops_the_proxy_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "parameters.yaml"
    path.write_text("classes:\n  setosa: {threshold: -1}\n")
    backends = json.dumps([{"name": "setosa", "url": "http://127.0.0.1:9"}])
    env = {**os.environ, "MLSP_BACKENDS": backends, "MLSP_PARAMETERS_FILE": str(path)}
    done = subprocess.run(
        [sys.executable, "-m", "patterns.parameter_based.proxy"],
        env=env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "classes.setosa.threshold: Input should be greater than or equal to 0" in done.stdout
