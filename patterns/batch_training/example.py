"""batch_training's worked example: the README's output, produced by running it
(patterns/example.py). The runner has run the seed and one training run on
data/batch_training.db with its MLflow server; the walkthrough runs the same commands on a
scratch folder with an embedded registry (data/batch-demo), so every step starts from nothing.

make example PATTERN=batch_training
"""

from __future__ import annotations

import re

from patterns.example import Walkthrough

DEMO = (
    "MLSP_DATABASE_URL=sqlite:///data/batch-demo/rows.db MLSP_DATA_DIR=data/batch-demo "
    "MLFLOW_TRACKING_URI="
)
PY = ".venv/bin/python -m patterns.batch_training"
RETRAIN = f"{DEMO} MLSP_ACTOR=cron {PY}.retrain 2>/dev/null"
ALIASES = f"{DEMO} {PY}.aliases"
QUARANTINE = (
    "python3 -c \"import sqlite3; [print(r) for r in sqlite3.connect('data/batch-demo/rows.db')"
    ".execute('SELECT row_id, reason, run_id FROM quarantine')]\""
)
LAST = '; echo "exit code $?"'

VOLATILE = [(re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>")]
"""When an alias moved."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the seed: scikit-learn's 150 labelled iris rows into an empty table")
    w.sh(f"rm -rf data/batch-demo && {DEMO} {PY}.seed", expect='"rows_total": 150')
    w.note("the first run trains, registers v1 (@candidate) and, with no champion, promotes it")
    w.sh(RETRAIN, expect='"status": "promoted"', timeout=180)
    w.note("the schedule comes round again, nothing new: skipped, exit 0, nothing trained")
    w.sh(RETRAIN + LAST, expect=lambda o: '"status": "skipped"' in o and "exit code 0" in o)
    w.note("a week of feedback: 50 newly labelled rows, 3 of them broken")
    w.sh(f"{DEMO} {PY}.seed --add 50 --bad 3", expect='"rows_total": 200')
    w.note("v2: the broken rows are quarantined, champion and challenger meet on one holdout")
    w.sh(
        RETRAIN,
        expect=lambda o: '"quarantined": 3' in o and '"version": "2"' in o,
        timeout=180,
    )
    w.sh(QUARANTINE, expect=lambda o: o.count("\n") >= 2 and "unknown" in o)
    w.note("every alias move: when, from, to, why, by whom, in which run, with which scores")
    w.sh(f"{ALIASES} history", expect=lambda o: o.count("production") == 2)
    w.note("v2 misbehaves in production: one command puts the previous champion back")
    w.sh(
        f"MLSP_ACTOR=alice {ALIASES} rollback --reason 'complaints'",
        expect="version 2 -> 1 (rollback)",
    )
    w.sh(f"{ALIASES} history --alias production", expect="rollback")

    w.section("failure")
    w.note("another run holds the lock (here: flock on the SQLite file's lock, as a running")
    w.note("retrain does; PostgreSQL: an advisory lock): exit 75 at once, nothing recorded")
    w.sh(
        "flock -o data/batch-demo/rows.db.lock sleep 60 >/dev/null 2>&1 & sleep 0.5; "
        + RETRAIN
        + '; echo "exit code $?"; kill $!',
        expect=lambda o: '"status": "locked"' in o and "exit code 75" in o,
    )
    w.note("a challenger below the gate (MLSP_MIN_ACCURACY=1.01) is never registered; the run")
    w.note("is recorded as failed, @production stays where it was")
    w.sh(f"{DEMO} {PY}.seed --add 25", expect='"added": 25')
    w.sh(
        f"MLSP_MIN_ACCURACY=1.01 {RETRAIN}{LAST}",
        expect=lambda o: '"status": "failed"' in o and "exit code 1" in o,
        timeout=180,
    )
    w.sh(f"{ALIASES} runs --last 1", expect="nothing is registered")
    w.note("with MLSP_AUTO_PROMOTE=false a good challenger is registered as @candidate only")
    w.sh(
        f"MLSP_AUTO_PROMOTE=false {RETRAIN}",
        expect=lambda o: '"status": "registered"' in o and "MLSP_AUTO_PROMOTE is off" in o,
        timeout=180,
    )
    w.sh(f"{ALIASES} history --alias production", expect=lambda o: len(o.strip().splitlines()) == 3)
