"""parallel as real processes: three one-vs-rest backends and the fan-out proxy.

The backends are made to take 200 ms each (MLSP_SIMULATED_LATENCY_MS): run one after another
that is 600 ms; concurrently it must stay near 200 ms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patterns.runner import RunningPattern, start_pattern
from serving.admission import deadline_header
from tests.conftest import spawn_server

pytestmark = pytest.mark.slow

CLASSES = ("setosa", "versicolor", "virginica")
ROWS = {"setosa": [5.0, 3.4, 1.5, 0.2], "versicolor": [5.9, 2.8, 4.3, 1.3]}
ROWS["virginica"] = [6.7, 3.0, 5.8, 2.2]


@pytest.fixture
def pattern(data_dir: Path) -> Iterator[RunningPattern]:
    slow = {c: {"MLSP_SIMULATED_LATENCY_MS": "200"} for c in CLASSES}
    with start_pattern("parallel", data_dir=data_dir, process_env=slow) as run:
        yield run


def predict(url: str, rows: list[list[float]], **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", json={"instances": rows}, headers=headers, timeout=10)


def test_latency_is_the_slowest_backend_not_the_sum(pattern: RunningPattern) -> None:
    proxy = pattern.url("proxy")
    predict(proxy, [ROWS["setosa"]])  # warm the connections
    started = time.perf_counter()
    resp = predict(proxy, [ROWS[c] for c in CLASSES])
    elapsed = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    assert elapsed < 0.35, elapsed  # the spec's bound; in sequence it would be >= 0.6 s
    body = resp.json()
    assert [p["label"] for p in body["predictions"]] == list(CLASSES)
    assert set(body["predictions"][0]["scores"]) == set(CLASSES)
    assert body["partial"] is False and body["missing"] == []
    assert [b["name"] for b in body["backends"]] == list(CLASSES)
    assert all(b["outcome"] == "ok" and b["latency_ms"] >= 200 for b in body["backends"])


def test_a_dead_backend_fails_require_all_and_is_missing_under_best_effort(
    pattern: RunningPattern, tmp_path: Path
) -> None:
    proxy = pattern.url("proxy")
    pattern.kill("virginica")
    resp = predict(proxy, [ROWS["setosa"]])
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert error["dependency"] == "virginica" and "require_all" in error["message"]
    assert resp.headers["retry-after"]
    backends = [
        {"name": c, "url": pattern.url(c), "timeout": 0.5} for c in CLASSES
    ]  # the dead one's port refuses connections now
    env = {"MLSP_BACKENDS": json.dumps(backends), "MLSP_AGGREGATION": "best_effort"}
    with spawn_server("patterns.parallel.proxy", env, tmp_path / "best-effort.log") as best:
        resp = predict(best, [ROWS["setosa"], ROWS["versicolor"]])
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["partial"] is True and body["missing"] == ["virginica"]
        assert [p["label"] for p in body["predictions"]] == ["setosa", "versicolor"]
        assert set(body["predictions"][0]["scores"]) == {"setosa", "versicolor"}
        # best effort needs at least one answer
        for c in ("setosa", "versicolor"):
            pattern.kill(c)
        assert predict(best, [ROWS["setosa"]]).status_code == 503


def test_per_call_timeouts_and_the_deadline(pattern: RunningPattern, tmp_path: Path) -> None:
    proxy = pattern.url("proxy")
    late = predict(proxy, [ROWS["setosa"]], **deadline_header(0.1))
    assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
    # a backend slower than its own timeout is a failed backend (503), not a deadline
    backends = [{"name": c, "url": pattern.url(c), "timeout": 0.05} for c in CLASSES]
    env = {"MLSP_BACKENDS": json.dumps(backends)}
    with spawn_server("patterns.parallel.proxy", env, tmp_path / "tight.log") as tight:
        resp = predict(tight, [ROWS["setosa"]])
        assert resp.status_code == 503
        assert resp.json()["error"]["dependency"] == "setosa,versicolor,virginica"
        assert "timeout" in resp.json()["error"]["message"]


def test_bad_input_is_relayed_naming_the_field(pattern: RunningPattern) -> None:
    resp = predict(pattern.url("proxy"), [[5.0, 3.4]])
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "instances[0]"
    resp = httpx.post(f"{pattern.url('proxy')}/predict", json={"rows": []})
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "instances"


def test_a_backend_that_is_not_one_vs_rest_is_missing_not_a_500(
    pattern: RunningPattern, data_dir: Path, tmp_path: Path
) -> None:
    env = {"MLSP_MODEL_DIR": str(data_dir / "models" / "iris-ocsvm")}  # gives scores, no probs
    with spawn_server("patterns.parallel.backend", env, tmp_path / "wrong.log") as wrong:
        backends = [{"name": c, "url": pattern.url(c)} for c in ("setosa", "versicolor")]
        backends.append({"name": "virginica", "url": wrong})
        for aggregation, status in (("require_all", 503), ("best_effort", 200)):
            env = {"MLSP_BACKENDS": json.dumps(backends), "MLSP_AGGREGATION": aggregation}
            log = tmp_path / f"{aggregation}.log"
            with spawn_server("patterns.parallel.proxy", env, log) as proxy:
                resp = predict(proxy, [ROWS["setosa"]])
            assert resp.status_code == status, resp.text
        assert resp.json()["missing"] == ["virginica"]
