"""batch_training as real processes: SQLite and PostgreSQL, an embedded MLflow registry and the
pattern's own MLflow server; the lock held by another session; the audit and the rollback."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from patterns.batch_training.aliases import ROLLBACK, previous_champion
from patterns.batch_training.retrain import check, in_holdout
from patterns.batch_training.store import EX_TEMPFAIL, LOCK_KEY
from patterns.runner import start_pattern
from training.register import mlflow_client
from training.settings import TrainingSettings

pytestmark = pytest.mark.slow

MODEL = "iris-batch"


class Batch:
    """The pattern's commands on one database and one embedded registry."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLSP_", "MLFLOW_"))},
            "MLSP_DATABASE_URL": database_url,
            "MLSP_DATA_DIR": str(data_dir),
            "MLSP_ACTOR": "test",
        }
        self.data_dir = data_dir

    def run(self, module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", f"patterns.batch_training.{module}", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def retrain(self, expect: int = 0, **env: str) -> dict[str, Any]:
        done = self.run("retrain", **env)
        assert done.returncode == expect, done.stdout + done.stderr
        summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return summary

    def production(self) -> str:
        client = mlflow_client(TrainingSettings(data_dir=self.data_dir))
        return str(client.get_model_version_by_alias(MODEL, "production").version)


@pytest.fixture
def sqlite_batch(tmp_path: Path) -> Batch:
    batch = Batch(f"sqlite:///{tmp_path}/rows.db", tmp_path)
    assert batch.run("seed").returncode == 0
    return batch


def test_v1_skipped_v2_quarantine_gate_hold_and_rollback(sqlite_batch: Batch) -> None:
    """The spec's story on SQLite, one run after another (each one a process start of a few
    seconds, so one test rather than five)."""
    first = sqlite_batch.retrain()
    assert (first["status"], first["version"], first["new_rows"]) == ("promoted", "1", 150)
    assert first["reason"] == "first model" and first["challenger_score"] >= 0.9

    again = sqlite_batch.retrain()
    assert (again["status"], again["new_rows"], again["version"]) == ("skipped", 0, None)
    assert again["data_hash"] == first["data_hash"]  # the same rows, the same snapshot

    added = sqlite_batch.run("seed", "--add", "50", "--bad", "3")
    assert json.loads(added.stdout)["rows_total"] == 200
    second = sqlite_batch.retrain()
    assert (second["version"], second["new_rows"], second["quarantined"]) == ("2", 50, 3)
    assert second["champion_version"] == "1" and second["snapshot_rows"] == 200
    assert second["data_hash"] != first["data_hash"]
    assert sqlite_batch.production() == "2"

    db = sqlite3.connect(sqlite_batch.env["MLSP_DATABASE_URL"].removeprefix("sqlite:///"))
    reasons = [r for (r,) in db.execute("SELECT reason FROM quarantine ORDER BY row_id")]
    assert len(reasons) == 3
    assert any("missing" in r for r in reasons) and any("unknown" in r for r in reasons)
    assert any("sepal_width" in r or "petal_width" in r for r in reasons)

    # the gate: recorded as failed, nothing registered, production where it was
    sqlite_batch.run("seed", "--add", "30")
    failed = sqlite_batch.retrain(expect=1, MLSP_MIN_ACCURACY="1.01")
    assert failed["status"] == "failed" and "nothing is registered" in failed["reason"]
    client = mlflow_client(TrainingSettings(data_dir=sqlite_batch.data_dir))
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    assert versions == ["1", "2"]

    # auto-promotion off: the failed run trained nothing, so these rows are still new
    held = sqlite_batch.retrain(MLSP_AUTO_PROMOTE="false")
    assert held["status"] == "registered" and held["reason"] == "MLSP_AUTO_PROMOTE is off"
    assert held["version"] == "3" and sqlite_batch.production() == "2"
    assert str(client.get_model_version_by_alias(MODEL, "candidate").version) == "3"
    runs = db.execute("SELECT status FROM training_runs ORDER BY id").fetchall()
    assert [s for (s,) in runs] == ["promoted", "skipped", "promoted", "failed", "registered"]
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 3  # never twice

    # rollback: to the champion before, then nothing before v1
    back = sqlite_batch.run("aliases", "rollback", "--reason", "complaints", MLSP_ACTOR="alice")
    assert back.returncode == 0 and "version 2 -> 1 (rollback)" in back.stdout
    assert sqlite_batch.production() == "1"
    nothing = sqlite_batch.run("aliases", "rollback")
    assert nothing.returncode == 1 and "no champion before version 1" in nothing.stdout
    assert sqlite_batch.production() == "1"

    history = sqlite_batch.run("aliases", "history", "--alias", "production").stdout
    lines = history.strip().splitlines()
    assert [line.split()[2:5] for line in lines] == [
        ["-", "->", "1"],
        ["1", "->", "2"],
        ["2", "->", "1"],
    ]
    assert "rollback" in lines[2] and "by alice" in lines[2] and "complaints" in lines[2]
    assert "by test" in lines[0] and "first model" in lines[0]


def test_rollback_skips_rollbacks_when_it_walks_back() -> None:
    history = [
        {"from": None, "to": "1", "reason": "first model"},
        {"from": "1", "to": "2", "reason": "challenger good enough"},
        {"from": "2", "to": "3", "reason": "challenger good enough"},
        {"from": "3", "to": "2", "reason": ROLLBACK},
    ]
    assert previous_champion(history, "3") == "2"
    assert previous_champion(history, "2") == "1"  # not 3: a rollback is never undone
    assert previous_champion(history, "1") is None


def test_a_run_while_another_holds_the_lock_exits_75(sqlite_batch: Batch, pg_url: str) -> None:
    lock_file = sqlite_batch.env["MLSP_DATABASE_URL"].removeprefix("sqlite:///") + ".lock"
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        locked = sqlite_batch.retrain(expect=EX_TEMPFAIL)
    assert locked["status"] == "locked"
    db = sqlite3.connect(sqlite_batch.env["MLSP_DATABASE_URL"].removeprefix("sqlite:///"))
    assert db.execute("SELECT COUNT(*) FROM training_runs").fetchone()[0] == 0

    pg = Batch(pg_url, sqlite_batch.data_dir / "pg")
    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        assert pg.retrain(expect=EX_TEMPFAIL)["status"] == "locked"
    assert pg.run("seed").returncode == 0  # the lock is gone with its session


def test_postgres_end_to_end(pg_url: str, tmp_path: Path) -> None:
    pg = Batch(pg_url, tmp_path)
    assert json.loads(pg.run("seed").stdout)["rows_total"] == 150
    assert json.loads(pg.run("seed").stdout)["added"] == 0  # idempotent
    assert pg.retrain()["status"] == "promoted"
    pg.run("seed", "--add", "50", "--bad", "3")
    second = pg.retrain()
    assert (second["version"], second["quarantined"]) == ("2", 3)
    with psycopg.connect(pg_url) as conn:
        moves = conn.execute(
            "SELECT alias, from_version, to_version, actor FROM alias_moves ORDER BY id"
        ).fetchall()
    assert ("candidate", "1", "2", "test") in moves and ("production", None, "1", "test") in moves


def test_the_pattern_trains_into_its_mlflow_server(tmp_path: Path) -> None:
    with start_pattern("batch_training", data_dir=tmp_path) as run:
        log = run.logs["retrain"].read_text()
        summary = json.loads([x for x in log.splitlines() if '"training run"' in x][-1])
        assert summary["status"] == "promoted"
        client = mlflow_client(TrainingSettings(mlflow_tracking_uri=run.deps["mlflow"]))
        mv = client.get_model_version_by_alias(MODEL, "production")
        assert str(mv.version) == summary["version"]


def test_checks_and_the_holdout_are_fixed_rules() -> None:
    assert check((1, 5.1, 3.5, 1.4, 0.2, "setosa")) is None
    assert check((2, 5.1, None, 1.4, 0.2, "setosa")) == "sepal_width is missing"
    assert "outside" in (check((3, 5.1, 3.5, 1.4, float("nan"), "setosa")) or "")
    assert "label 'rose'" in (check((4, 5.1, 3.5, 1.4, 0.2, "rose")) or "")
    share = sum(in_holdout(i) for i in range(10_000)) / 10_000
    assert 0.27 < share < 0.33
    assert [in_holdout(i) for i in range(50)] == [in_holdout(i) for i in range(50)]
