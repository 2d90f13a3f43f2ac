"""batch_inference as real processes on SQLite (the local default) and PostgreSQL.

The crash test kills the scorer with SIGKILL after its third committed chunk; the rerun must
leave exactly one prediction per item. Two scorers on PostgreSQL must share the work without
a duplicate. PostgreSQL comes from DATABASE_URL or 127.0.0.1:5432 (.ci/run starts it).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from patterns.runner import start_pattern
from tests.conftest import spawn_server

pytestmark = pytest.mark.slow

ROWS = 10_000
INVALID = ROWS // 997  # the seed makes every 997th item invalid


def step(module: str, url: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", f"patterns.batch_inference.{module}"],
        env={**os.environ, "MLSP_DATABASE_URL": url, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-2000:]
    return [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]


def counts(query: Any) -> tuple[int, int, int]:
    """(predictions, distinct (item, version) pairs, error rows)."""
    total = query("SELECT COUNT(*) FROM predictions")
    distinct = query(
        "SELECT COUNT(*) FROM (SELECT DISTINCT item_id, model_version FROM predictions) d"
    )
    errors = query("SELECT COUNT(*) FROM predictions WHERE error IS NOT NULL")
    return total, distinct, errors


def test_a_crash_after_chunk_3_and_a_rerun_give_one_prediction_per_item(
    iris_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "batch.db"
    url = f"sqlite:///{db}"
    finish(step("seed", url, MLSP_SEED_ROWS=str(ROWS)))
    model = {"MLSP_MODEL_DIR": str(iris_dir)}

    def query(sql: str) -> int:
        with sqlite3.connect(db) as conn:
            return int(conn.execute(sql).fetchone()[0])

    scorer = step("score", url, MLSP_CHUNK_PAUSE_MS="400", **model)
    deadline = time.monotonic() + 60
    while query("SELECT COUNT(*) FROM predictions") < 3000:
        assert scorer.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    scorer.send_signal(signal.SIGKILL)
    scorer.wait(10)
    after_crash = query("SELECT COUNT(*) FROM predictions")
    assert after_crash % 1000 == 0 and 3000 <= after_crash < ROWS  # whole chunks only
    logs = finish(step("score", url, **model))
    done = logs[-1]
    assert (
        done["event"] == "batch finished" and done["scored"] + done["errors"] == ROWS - after_crash
    )
    assert counts(query) == (ROWS, ROWS, INVALID)
    # invalid items carry their reason and are never retried
    with sqlite3.connect(db) as conn:
        error = conn.execute("SELECT error FROM predictions WHERE item_id = 997").fetchone()[0]
    assert error == "expected 4 features, got 3"
    again = finish(step("score", url, **model))
    assert again[-1]["chunks"] == 0 and counts(query) == (ROWS, ROWS, INVALID)


def test_a_new_model_version_rescores_everything(
    model_copy: Path, iris_dir: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    finish(step("seed", url, MLSP_SEED_ROWS="2500"))
    finish(step("score", url, MLSP_MODEL_DIR=str(iris_dir)))
    card = json.loads((model_copy / "model.json").read_text())
    card["version"] = "999"
    (model_copy / "model.json").write_text(json.dumps(card))
    logs = finish(step("score", url, MLSP_MODEL_DIR=str(model_copy)))
    assert logs[-1]["scored"] + logs[-1]["errors"] == 2500
    with sqlite3.connect(tmp_path / "batch.db") as conn:
        versions = dict(
            conn.execute("SELECT model_version, COUNT(*) FROM predictions GROUP BY 1").fetchall()
        )
    assert versions == {
        f"iris-svc/{json.loads((iris_dir / 'model.json').read_text())['version']}": 2500,
        "iris-svc/999": 2500,
    }


def test_two_concurrent_scorers_on_postgresql_share_the_work_without_duplicates(
    pg_url: str, iris_dir: Path
) -> None:
    import psycopg

    finish(step("seed", pg_url, MLSP_SEED_ROWS=str(ROWS)))
    env = {"MLSP_MODEL_DIR": str(iris_dir), "MLSP_CHUNK_PAUSE_MS": "50"}
    first, second = step("score", pg_url, **env), step("score", pg_url, **env)
    a, b = finish(first)[-1], finish(second)[-1]
    assert a["chunks"] > 0 and b["chunks"] > 0  # both took chunks: SKIP LOCKED, not a queue
    assert a["scored"] + a["errors"] + b["scored"] + b["errors"] == ROWS

    def query(sql: str) -> int:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(sql).fetchone()
            assert row is not None
            return int(row[0])

    assert counts(query) == (ROWS, ROWS, INVALID)


def test_the_api_serves_results_and_names_the_database_when_it_is_gone(
    data_dir: Path, tmp_path: Path
) -> None:
    with start_pattern("batch_inference", data_dir=data_dir, env={"MLSP_SEED_ROWS": "1500"}) as run:
        api = run.url("api")
        summary = httpx.get(f"{api}/summary").json()
        assert summary["items"] >= 1500
        ((version, v),) = summary["model_versions"].items()
        assert version.startswith("iris-svc/") and v["unscored"] == 0 and v["errors"] >= 1
        item = httpx.get(f"{api}/predictions/1").json()
        assert item["predictions"][0]["label"] in {"setosa", "versicolor", "virginica"}
        assert httpx.get(f"{api}/predictions/997").json()["predictions"][0]["error"]
        assert httpx.get(f"{api}/predictions/99999999").status_code == 404
        bad = httpx.get(f"{api}/predictions/abc")
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "path.item_id"
    # the database file disappears under a running API: 503 naming it, never a 500
    db = tmp_path / "gone" / "batch.db"
    url = f"sqlite:///{db}"
    finish(step("seed", url, MLSP_SEED_ROWS="10"))
    env = {"MLSP_DATABASE_URL": url}
    with spawn_server("patterns.batch_inference.api", env, tmp_path / "api.log") as api:
        db.unlink()
        db.mkdir()  # not a database any more
        resp = httpx.get(f"{api}/summary")
        assert resp.status_code == 503 and resp.json()["error"]["dependency"] == "database"
        assert httpx.get(f"{api}/readyz").status_code == 503
