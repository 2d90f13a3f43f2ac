"""prediction_monitoring's monitor as a real process over a real prediction_log table (SQLite
file and PostgreSQL), filled with serving/predlog's statements: /drift, /metrics, /report, and
a database outage that leaves the last result served, flagged stale."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from patterns.prediction_monitoring.traffic import log_rows, sample_rows
from serving import predlog
from serving.db import Db
from serving.model import ModelCard, read_card
from tests.conftest import spawn_server

pytestmark = pytest.mark.slow

MODULE = "patterns.prediction_monitoring.monitor"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def fill(url: str, card: ModelCard, n: int, shifts: dict[int, float], *, age: float = 60.0,
         ago: float = 0.0, seed: int = 0, sample_rate: float = 1.0) -> None:  # fmt: skip
    """`n` one-row requests logged over `age` seconds, the last `ago` seconds before now."""
    x = sample_rows(card, n, shifts, np.random.default_rng(seed))
    ids = list(np.arange(n) % 3)
    now = time.time()
    ts = [now - ago - age + age * i / n for i in range(n)]
    db = Db(url)
    try:
        db.seed(predlog.SCHEMA, predlog.INSERT, log_rows(card, x, ids, ts, sample_rate=sample_rate),
                f"SELECT COUNT(*) FROM {predlog.TABLE}")  # fmt: skip
    finally:
        db.close()


def gauges(url: str) -> dict[tuple[str, str], float]:
    """(sample name, feature label or "") -> value, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (s.name, s.labels.get("feature", "")): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def run(url: str) -> dict[str, Any]:
    r = httpx.post(f"{url}/drift/run", timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
def card(iris_dir: Path) -> ModelCard:
    return read_card(iris_dir)


@pytest.fixture
def monitor_env(iris_dir: Path) -> dict[str, str]:
    return {"MLSP_MODEL_DIR": str(iris_dir), "MLSP_MONITOR_INTERVAL_SECONDS": "3600"}


@pytest.fixture
def sqlite_monitor(tmp_path: Path, monitor_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    db = f"sqlite:///{tmp_path / 'log.db'}"
    env = {**monitor_env, "MLSP_DATABASE_URL": db}
    with spawn_server(MODULE, env, tmp_path / "monitor.log") as url:
        yield url, db


def test_sqlite_window_in_distribution_then_drifted(
    sqlite_monitor: tuple[str, str], card: ModelCard
) -> None:
    url, db = sqlite_monitor
    fill(db, card, 300, {}, sample_rate=0.5)
    fill(db, card, 500, {2: 2.0}, ago=3000.0, seed=1)  # an hour ago: outside the window
    body = run(url)
    result = body["result"]
    assert body["stale"] is False and body["log_rows"] == 300
    assert result["verdict"] == "ok", result["reasons"]
    assert result["instances"] == 300
    assert result["request_rate"] == pytest.approx(600 / 600.0)  # 300 rows at sample rate 0.5
    assert [f["name"] for f in result["features"]] == FEATURES
    g = gauges(url)
    for name in FEATURES:
        assert g[("mlsp_drift_psi", name)] < 0.1, name
    assert g[("mlsp_monitor_window_instances", "")] == 300
    assert g[("mlsp_monitor_insufficient_data", "")] == 0
    assert g[("mlsp_monitor_last_run_timestamp_seconds", "")] == pytest.approx(body["finished"])
    assert math.isnan(g[("mlsp_outlier_rate", "")])  # iris-svc logs no outlier flag
    report = httpx.get(f"{url}/report", timeout=5)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert report.text.count('<svg class="plot"') == len(FEATURES)
    for name in FEATURES:
        assert f"<h2>{name}: ok</h2>" in report.text

    fill(db, card, 1200, {2: 2.0}, age=30.0, seed=2)  # now the window is mostly drifted
    drifted = run(url)["result"]
    assert drifted["verdict"] == "critical"
    g = gauges(url)
    assert g[("mlsp_drift_psi", "petal_length")] > 0.25
    assert g[("mlsp_drift_ks_pvalue", "petal_length")] < 0.01
    assert httpx.get(f"{url}/drift", timeout=5).json()["result"] == drifted
    assert "<h2>petal_length: critical</h2>" in httpx.get(f"{url}/report", timeout=5).text


def test_sqlite_below_the_minimum_reports_no_numbers(
    sqlite_monitor: tuple[str, str], card: ModelCard
) -> None:
    url, db = sqlite_monitor
    fill(db, card, 1000, {2: 2.0})
    assert run(url)["result"]["verdict"] == "critical"  # numbers first, then too few rows
    store = Db(db)
    store.execute(f"DELETE FROM {predlog.TABLE} WHERE rowid > 50")
    store.close()
    result = run(url)["result"]
    assert result["verdict"] == "insufficient_data"
    assert result["instances"] == 50 and result["features"] == []
    assert result["class_psi"] is None and result["outlier_rate"] is None
    g = gauges(url)
    assert g[("mlsp_monitor_insufficient_data", "")] == 1
    for name in FEATURES:  # the earlier critical numbers are gone, not kept
        assert math.isnan(g[("mlsp_drift_psi", name)]), name
        assert math.isnan(g[("mlsp_drift_ks_pvalue", name)]), name
    assert math.isnan(g[("mlsp_drift_class_psi", "")])
    assert g[("mlsp_monitor_window_instances", "")] == 50
    report = httpx.get(f"{url}/report", timeout=5).text
    assert "no statistic is shown" in report and "<svg" not in report


def test_postgres_outage_keeps_the_last_result_flagged_stale(
    pg_url: str, card: ModelCard, monitor_env: dict[str, str], tmp_path: Path
) -> None:
    fill(pg_url, card, 400, {2: 2.0})
    env = {**monitor_env, "MLSP_DATABASE_URL": pg_url, "MLSP_CONNECT_TIMEOUT_SECONDS": "2"}
    with spawn_server(MODULE, env, tmp_path / "monitor.log") as url:
        first = run(url)
        assert first["result"]["verdict"] == "critical" and first["result"]["instances"] == 400
        before = gauges(url)
        admin, name = pg_url.rsplit("/", 1)
        with psycopg.connect(f"{admin}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        r = httpx.post(f"{url}/drift/run", timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["dependency"] == "database"
        assert "Retry-After" in r.headers
        latest = httpx.get(f"{url}/drift", timeout=5).json()
        assert latest["stale"] is True and "database unavailable" in latest["error"]
        assert latest["result"] == first["result"] and latest["finished"] == first["finished"]
        after = gauges(url)
        assert after[("mlsp_monitor_stale", "")] == 1
        key = ("mlsp_monitor_last_run_timestamp_seconds", "")
        assert after[key] == before[key]  # not refreshed: the stale alert reads this
        assert (
            after[("mlsp_drift_psi", "petal_length")] == before[("mlsp_drift_psi", "petal_length")]
        )
        assert after[("mlsp_dependency_up", "")] == 0
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503 and "database" in " ".join(ready.json()["reasons"])
        assert "STALE" in httpx.get(f"{url}/report", timeout=5).text
