"""serial as real processes: outlier gate (iris-ocsvm) -> classifier (iris-svc) behind the proxy.

Which rows reached stage 2 is read from the classifier's own /metrics and from the trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patterns.runner import RunningPattern, start_pattern
from serving.admission import deadline_header
from tests.conftest import model_calls, spawn_server

pytestmark = pytest.mark.slow

INLIER = [5.1, 3.4, 1.5, 0.2]
OUTLIER = [7.0, 3.2, 4.7, 1.4]  # iris-ocsvm scores it below 0.0 (golden example)


@pytest.fixture
def pattern(data_dir: Path) -> Iterator[RunningPattern]:
    with start_pattern("serial", data_dir=data_dir) as run:
        yield run


def predict(url: str, rows: list[list[float]], **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", json={"instances": rows}, headers=headers, timeout=10)


def test_an_outlier_never_reaches_stage_2(pattern: RunningPattern) -> None:
    proxy, classify = pattern.url("proxy"), pattern.url("classify")
    before = model_calls(classify)
    only_outlier = predict(proxy, [OUTLIER])
    assert only_outlier.status_code == 200, only_outlier.text
    body = only_outlier.json()
    assert body["predictions"] == [
        {"label": "unknown", "stopped_by": "outlier", "score": pytest.approx(-0.197, abs=1e-3)}
    ]
    assert [(s["name"], s["outcome"]) for s in body["stages"]] == [
        ("outlier", "ok"),
        ("classify", "not_run"),
    ]
    assert model_calls(classify) == before  # stage 2 was never called
    mixed = predict(proxy, [INLIER, OUTLIER]).json()
    assert [p["label"] for p in mixed["predictions"]] == ["setosa", "unknown"]
    outlier, second = mixed["stages"]
    assert (outlier["rows"], outlier["stopped"], second["rows"]) == (2, 1, 1)
    assert model_calls(classify) == before + 1


def test_the_response_traces_every_stage(pattern: RunningPattern) -> None:
    body = predict(pattern.url("proxy"), [INLIER]).json()
    assert [s["name"] for s in body["stages"]] == ["outlier", "classify"]
    for stage in body["stages"]:
        assert stage["outcome"] == "ok" and stage["version"] == "1"
        assert 0 < stage["latency_ms"] < 1000
    assert body["predictions"][0]["probabilities"]["setosa"] > 0.5


def test_a_failed_stage_is_503_naming_it_unless_it_may_be_skipped(
    pattern: RunningPattern, tmp_path: Path
) -> None:
    proxy = pattern.url("proxy")
    pattern.kill("classify")
    resp = predict(proxy, [INLIER])
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert error["dependency"] == "classify"
    assert [s["name"] for s in error["stages"]] == ["outlier", "classify"]
    # the outliers alone still get their answer: stage 2 is not needed for them
    assert predict(proxy, [OUTLIER]).status_code == 200
    # a skippable gate: with the outlier stage down, rows go straight to the classifier
    stages = [
        {"name": "outlier", "url": "http://127.0.0.1:9", "on_error": "skip", "stop_below": 0.0},
        {"name": "classify", "url": pattern.url("outlier")},  # any model server will do
    ]
    env = {"MLSP_STAGES": json.dumps(stages)}
    with spawn_server("patterns.serial.proxy", env, tmp_path / "skip.log") as skip:
        body = predict(skip, [INLIER]).json()
        assert body["stages"][0]["outcome"] == "skipped"
        assert body["stages"][1]["outcome"] == "ok"


def test_one_budget_is_shared_by_all_stages(data_dir: Path) -> None:
    slow = {"outlier": {"MLSP_SIMULATED_LATENCY_MS": "150"}}
    slow["classify"] = {"MLSP_SIMULATED_LATENCY_MS": "150"}
    with start_pattern("serial", data_dir=data_dir, process_env=slow) as run:
        proxy = run.url("proxy")
        predict(proxy, [INLIER])  # warm the connections
        # each stage alone fits in 250 ms and its own timeout; both do not
        resp = predict(proxy, [INLIER], **deadline_header(0.25))
        assert resp.status_code == 504, resp.text
        assert resp.json()["error"]["code"] == "deadline_exceeded"
        assert predict(proxy, [INLIER], **deadline_header(0.8)).status_code == 200
        # the default budget (1000 ms) covers both
        assert predict(proxy, [INLIER]).status_code == 200


def test_bad_input_is_relayed_naming_the_field(pattern: RunningPattern) -> None:
    resp = predict(pattern.url("proxy"), [[1.0, 2.0]])
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "instances[0]"


def test_a_gate_whose_model_gives_no_score_is_a_503_naming_it(
    pattern: RunningPattern, tmp_path: Path
) -> None:
    stages = [  # misconfigured: the classifier as a gate
        {"name": "gate", "url": pattern.url("classify"), "stop_below": 0.0},
        {"name": "classify", "url": pattern.url("classify")},
    ]
    env = {"MLSP_STAGES": json.dumps(stages)}
    with spawn_server("patterns.serial.proxy", env, tmp_path / "bad-gate.log") as proxy:
        resp = predict(proxy, [INLIER])
    assert resp.status_code == 503 and resp.json()["error"]["dependency"] == "gate"
