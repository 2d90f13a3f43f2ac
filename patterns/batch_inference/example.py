"""batch_inference's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=batch_inference
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough

URL = "http://127.0.0.1:8000"
DEMO_DB = "data/batch-demo.db"
ON_DEMO_DB = f"MLSP_DATABASE_URL=sqlite:///{DEMO_DB} "
SCORE = (
    f"{ON_DEMO_DB}MLSP_MODEL_DIR=data/models/iris-svc .venv/bin/python -m "
    "patterns.batch_inference.score"
)
LOG = "data/batch-demo-score.log"
COUNT = (
    "python3 -c \"import sqlite3; print(sqlite3.connect('data/batch-demo.db')"
    ".execute('SELECT COUNT(*), COUNT(DISTINCT item_id) FROM predictions').fetchone())\""
)

VOLATILE = [(re.compile(r'("(?:seconds|rows_per_s)":)[\d.]+'), r"\1<n>")]
"""How long a scoring run took."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the seed and score steps ran to completion before the API started")
    w.sh(
        f"curl -s {URL}/summary",
        expect='"iris-svc/1":{"scored":9990,"errors":10,',
    )
    w.sh(f"curl -s {URL}/predictions/1", expect='"label":"setosa"')
    w.note("the seed makes every 997th item invalid on purpose: an error row, never retried")
    w.sh(f"curl -s {URL}/predictions/997", expect='"error":"expected 4 features, got 3"')
    w.sh(f"curl -s {CODE} {URL}/predictions/10001", expect=" 404")
    w.sh(f"curl -s {CODE} {URL}/predictions/0", expect='"field":"path.item_id"')

    w.section("failure")
    w.note(f"a crash mid-run, on a scratch database ({DEMO_DB}): seed it, start the scorer")
    w.note("(slowed to half a second between chunks), kill -9 it after its third committed chunk")
    w.sh(
        f"rm -f {DEMO_DB}* && {ON_DEMO_DB}.venv/bin/python -m patterns.batch_inference.seed",
        expect='"items_total":10000',
    )
    w.sh(
        f"MLSP_CHUNK_PAUSE_MS=500 {SCORE} > {LOG} 2>&1 & "
        f"until [ \"$(grep -sc 'chunk committed' {LOG})\" -ge 3 ]; do sleep 0.1; done; "
        f"kill -9 $!; cat {LOG}",
        expect=lambda out: out.count("chunk committed") == 3 and '"scored":2997' in out,
    )
    w.note("the next run scores only the rest; every item has exactly one prediction")
    w.sh(f"{SCORE} | tail -1", expect='"chunks":7,"scored":6993,"errors":7')
    w.sh(COUNT, expect="(10000, 10000)")
    w.sh(f"{SCORE} | tail -1", expect='"chunks":0,"scored":0,"errors":0')

    w.note("the database goes away (its SQLite file moved aside): 503 naming it, not ready")
    w.sh("mv data/batch_inference.db data/batch_inference.db.away")
    w.sh(f"curl -s {CODE} {URL}/readyz", expect=" 503")
    w.sh(f"curl -s {CODE} {URL}/summary", expect='"dependency":"database"')
    w.sh("mv data/batch_inference.db.away data/batch_inference.db")
    w.sh(f"curl -s {URL}/readyz", expect='"ready":true')
