"""batch_training: retrain on a schedule from the labelled rows that accrue in a database.

One run (a CronJob on Kubernetes: `concurrencyPolicy: Forbid`; locally an init step):

1. take the run lock, or exit 75 at once (another run is going);
2. snapshot the rows created up to the run's start, and hash them;
3. fewer than MLSP_MIN_NEW_ROWS rows since the last trained snapshot: `skipped`, exit 0;
4. rows failing the checks go to `quarantine` (with the reason), never into training;
5. split by a hash of the row id (a row stays in the holdout or the training set for good),
   train with the pipeline's own steps (train, evaluate gate, ONNX export with parity);
6. champion (`@production`) and challenger scored on the same holdout;
7. always register the challenger as `@candidate`; move `@production` to it only when
   MLSP_AUTO_PROMOTE and its score >= the champion's - MLSP_TOLERANCE;
8. every run, skipped and failed ones too, is a row of `training_runs`; every alias move a row
   of `alias_moves` (`python -m patterns.batch_training.aliases history|rollback`).

Manifest: manifests/patterns/batch_training/. Exit codes: 0 done or skipped, 1 failed (a gate,
the registry), 75 locked.

    MLSP_DATABASE_URL=sqlite:///data/batch_training.db python -m patterns.batch_training.retrain
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from patterns.batch_training.store import (
    CLASSES,
    EX_TEMPFAIL,
    FEATURES,
    Locked,
    record_move,
    run_lock,
    schema,
    write,
)
from serving.db import Db, DbSettings
from serving.model import OnnxModel
from training import register
from training.catalog import ModelSpec, get_spec
from training.data import reference_stats
from training.pipeline import model_steps
from training.settings import TrainingSettings
from training.steps import run_step, write_json

log = logging.getLogger("batch_training")

HOLDOUT_PERCENT = 30  # the book's test_size 0.3, assigned per row id
LIMITS = (0.0, 30.0)  # a plausible measurement in cm (iris: 0.1 .. 7.9)


RULES_SHA = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
"""This module's checks, holdout and dataset rules: part of the data step's manifest (the
pipeline's code sha covers training/ only), so a change to them retrains."""


class RetrainSettings(DbSettings, TrainingSettings):
    """One scheduled training run of batch_training."""

    database_url: str = "sqlite:///data/batch_training.db"
    """sqlite:///PATH (local default) or postgresql://USER:PASSWORD@HOST/DB."""
    model: str = "iris-batch"
    """The registered model's name."""
    estimator: str = "iris-svc"
    """The catalogue model (training/catalog.py) whose estimator and parameters are trained."""
    min_new_rows: int = Field(20, ge=0)
    """Fewer new labelled rows than this since the last trained snapshot: skip the run."""
    auto_promote: bool = True
    """Move @production to the challenger when it is good enough (else only @candidate)."""
    tolerance: float = Field(0.01, ge=0, le=1)
    """The challenger may score this much below the champion and still be promoted."""


@dataclass
class Outcome:
    """What a run did: the row of training_runs, and the line printed at the end."""

    status: str = "running"
    snapshot_rows: int = 0
    max_row_id: int = 0
    new_rows: int = 0
    quarantined: int = 0
    data_hash: str = ""
    version: str | None = None
    champion_version: str | None = None
    champion_score: float | None = None
    challenger_score: float | None = None
    reason: str = ""


def check(row: tuple[Any, ...]) -> str | None:
    """Why a labelled row cannot be trained on, or None."""
    values, label = row[1:5], row[5]
    for name, value in zip(FEATURES, values, strict=True):
        if value is None:
            return f"{name} is missing"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} {value!r} is not a number"
        if not math.isfinite(value) or not LIMITS[0] < value < LIMITS[1]:
            return f"{name} {value} is outside ({LIMITS[0]}, {LIMITS[1]})"
    if label not in CLASSES:
        return f"label {label!r} is not one of {', '.join(CLASSES)}"
    return None


def in_holdout(row_id: int) -> bool:
    """A fixed 30% of row ids, by hash: the same rows judge every champion and challenger."""
    digest = hashlib.sha256(f"batch_training:{row_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < HOLDOUT_PERCENT


def snapshot_hash(rows: list[tuple[Any, ...]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row[:6]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def write_dataset(out: Path, rows: list[tuple[Any, ...]], data_hash: str, seed: int) -> None:
    """The `data` step's folder (training/data.py's format) from the snapshot's good rows."""
    x = np.asarray([r[1:5] for r in rows], dtype=np.float32)
    y = np.asarray([CLASSES.index(r[5]) for r in rows], dtype=np.int64)
    test = np.asarray([in_holdout(int(r[0])) for r in rows])
    arrays = {"x_train": x[~test], "x_test": x[test], "y_train": y[~test], "y_test": y[test]}
    np.savez(out / "data.npz", **arrays)
    write_json(
        out / "data.json",
        {
            "dataset": "labelled",
            "data_hash": data_hash,
            "feature_names": list(FEATURES),
            "class_names": list(CLASSES),
            "preprocess": None,
            "n_train": int((~test).sum()),
            "n_test": int(test.sum()),
            "reference": reference_stats(x[~test], y[~test], len(CLASSES), seed),
        },
    )


def accuracy(model_dir: Path, data_dir: Path) -> float:
    """Accuracy of the ONNX model in `model_dir` on the holdout of `data_dir` (4 digits)."""
    with np.load(data_dir / "data.npz", allow_pickle=False) as npz:
        x, y = npz["x_test"], npz["y_test"]
    predicted = OnnxModel.load(model_dir).predict(x).class_ids
    return round(float((predicted == y).mean()), 4)


def champion(client: Any, model: str, data_dir: Path) -> tuple[str | None, float | None]:
    """@production's version and its accuracy on this run's holdout (None, None: no champion)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(model, register.PRODUCTION)
    except MlflowException:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(mv.run_id, register.ARTIFACT_PATH, tmp))
        return str(mv.version), accuracy(folder, data_dir)


class Run:
    def __init__(self, s: RetrainSettings, db: Db) -> None:
        self.s, self.db = s, db
        self.spec: ModelSpec = dataclasses.replace(get_spec(s.estimator), name=s.model)
        self.out = Outcome()
        self.started = time.time()
        self.id: int = write(
            db,
            "INSERT INTO training_runs (model, started_at, status) VALUES (%s, %s, %s) "
            "RETURNING id",
            (s.model, self.started, "running"),
        )

    def finish(self) -> None:
        o = self.out
        write(
            self.db,
            "UPDATE training_runs SET finished_at=%s, status=%s, snapshot_rows=%s, max_row_id=%s, "
            "new_rows=%s, quarantined=%s, data_hash=%s, version=%s, champion_version=%s, "
            "champion_score=%s, challenger_score=%s, reason=%s WHERE id=%s",
            (
                time.time(),
                o.status,
                o.snapshot_rows,
                o.max_row_id,
                o.new_rows,
                o.quarantined,
                o.data_hash,
                o.version,
                o.champion_version,
                o.champion_score,
                o.challenger_score,
                o.reason,
                self.id,
            ),
        )

    def snapshot(self) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.db.execute(
            f"SELECT id, {', '.join(FEATURES)}, label FROM labelled WHERE created_at <= %s "  # noqa: S608
            "ORDER BY id",
            (self.started,),
        ).fetchall()
        last = self.db.execute(
            "SELECT max_row_id FROM training_runs WHERE model = %s AND version IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (self.s.model,),
        ).fetchone()
        self.db.rollback()
        self.out.snapshot_rows = len(rows)
        self.out.max_row_id = int(rows[-1][0]) if rows else 0
        self.out.data_hash = snapshot_hash(rows)
        self.out.new_rows = sum(1 for r in rows if last is None or r[0] > last[0])
        self.first = last is None
        return rows

    def quarantine(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        good: list[tuple[tuple[Any, ...], None]] = []
        bad: list[tuple[tuple[Any, ...], str]] = []
        for row in rows:
            reason = check(row)
            if reason:
                bad.append((row, reason))
            else:
                good.append((row, None))
        known = {r[0] for r in self.db.execute("SELECT row_id FROM quarantine").fetchall()}
        self.db.rollback()
        fresh = [(int(row[0]), reason, self.id, time.time()) for row, reason in bad]
        fresh = [f for f in fresh if f[0] not in known]
        if fresh:
            self.db.begin()
            try:
                self.db.executemany(
                    "INSERT INTO quarantine (row_id, reason, run_id, at) VALUES (%s, %s, %s, %s)",
                    fresh,
                )
                self.db.commit()
            except BaseException:
                self.db.rollback()
                raise
        self.out.quarantined = len(fresh)
        for row_id, reason, _, _ in fresh:
            log.warning("row quarantined", extra={"row_id": row_id, "reason": reason})
        return [row for row, _ in good]

    def train(self, rows: list[tuple[Any, ...]]) -> dict[str, Path]:
        """The pipeline's own steps on this snapshot (content-addressed: a rerun on the same
        snapshot reuses them)."""
        s, spec = self.s, self.spec
        root = s.pipeline_dir / "batch" / spec.name
        dirs = {k: root / k for k in ("data", "train", "evaluate", "export")}
        run_step(
            "data",
            dirs["data"],
            {},
            {"data_hash": self.out.data_hash, "seed": s.seed, "rules": RULES_SHA},
            lambda tmp: write_dataset(tmp, rows, self.out.data_hash, s.seed),
        )
        model_steps(spec, s, dirs)
        return dirs

    def register_and_promote(self, dirs: dict[str, Path]) -> None:
        s, o = self.s, self.out
        client = register.mlflow_client(s)
        o.champion_version, o.champion_score = champion(client, s.model, dirs["data"])
        o.challenger_score = accuracy(dirs["export"], dirs["data"])
        before = _alias(client, s.model, register.CANDIDATE)
        o.version = register.run(self.spec, s, dirs)
        metrics = {"challenger": o.challenger_score, "champion": o.champion_score}
        if before != o.version:
            record_move(
                self.db, s.model, register.CANDIDATE, before, o.version, "trained", self.id, metrics
            )
        o.status = "registered"
        if o.champion_version == o.version:
            o.reason = "the challenger is the champion's artifact"
        elif not s.auto_promote:
            o.reason = "MLSP_AUTO_PROMOTE is off"
        elif o.champion_score is not None and o.challenger_score < o.champion_score - s.tolerance:
            o.reason = (
                f"challenger {o.challenger_score:.4f} < champion {o.champion_score:.4f} "
                f"- tolerance {s.tolerance}"
            )
        elif (now := _alias(client, s.model, register.PRODUCTION)) != o.champion_version:
            # moved while this run trained (a rollback): the operator's move stands
            o.reason = f"@production moved during the run (to version {now}): not promoted"
        else:
            register.promote(s.model, s, o.version)
            why = "first model" if o.champion_version is None else "challenger good enough"
            record_move(
                self.db, s.model, register.PRODUCTION, o.champion_version, o.version, why,
                self.id, metrics,
            )  # fmt: skip
            o.status, o.reason = "promoted", why

    def run(self) -> int:
        rows = self.snapshot()
        if not rows:
            self.out.status, self.out.reason = "skipped", "no labelled rows yet"
            return 0
        if not self.first and self.out.new_rows < self.s.min_new_rows:
            self.out.status = "skipped"
            self.out.reason = (
                f"{self.out.new_rows} new rows < MLSP_MIN_NEW_ROWS {self.s.min_new_rows}"
            )
            return 0
        good = self.quarantine(rows)
        if not good:
            self.out.status, self.out.reason = "skipped", "no row passes the checks"
            return 0
        dirs = self.train(good)
        self.register_and_promote(dirs)
        return 0


def _alias(client: Any, model: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def summary(run: Run) -> str:
    o = dataclasses.asdict(run.out)
    return json.dumps({"event": "training run", "run_id": run.id, "model": run.s.model, **o})


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    s = RetrainSettings()
    db = Db.from_settings(s)
    try:
        with run_lock(db):
            db.create_schema(schema(db))
            # a run that died holding the lock left its row `running`: it is over now
            write(db, "UPDATE training_runs SET status='abandoned' WHERE status='running'")
            run = Run(s, db)
            try:
                code = run.run()
            except SystemExit as exc:  # a gate (evaluate, export parity) said no
                db.rollback()
                run.out.status, run.out.reason, code = "failed", str(exc.code), 1
            except Exception as exc:
                db.rollback()  # a statement that failed leaves its transaction aborted
                run.out.status, run.out.reason, code = "failed", f"{type(exc).__name__}: {exc}", 1
                log.exception("training run failed")
            run.finish()
            print(summary(run))
            return code
    except Locked as exc:
        print(json.dumps({"event": "training run", "status": "locked", "reason": str(exc)}))
        return EX_TEMPFAIL
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
