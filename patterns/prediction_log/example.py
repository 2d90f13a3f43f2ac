"""prediction_log's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=prediction_log
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
WRITER = "http://127.0.0.1:8001"
PREDICT = f"{URL}/predict"
REDIS = 'redis-cli -u "$(make url PATTERN=prediction_log PROCESS=redis)"'
DB = "data/prediction_log.db"
ROWS = [[5.1, 3.5, 1.4, 0.2], [7.9, 2.0, 1.0, 2.5]]


def sql(query: str) -> str:
    """A query on the local log (SQLite), printed as Python prints the rows."""
    connect = f"sqlite3.connect('{DB}')"
    return f"python3 -c \"import sqlite3; print({connect}.execute('{query}').fetchall())\""


def feedback(request_id: str, outcome: str) -> str:
    body = {"request_id": request_id, "outcome": outcome}
    return curl_json(f"{URL}/feedback", body, flags=f"-s {CODE}")


COUNT = sql("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM prediction_log")
PENDING = f"{REDIS} xpending mlsp:prediction_log:entries writers | head -1"
HELD = (
    f'echo "entries in the stream: $({REDIS} xlen mlsp:prediction_log:entries),'
    f' delivered and not acknowledged: $({PENDING})"'
)
"""The api packs the rows of each 20 ms into one entry: how many entries 50 requests make
depends on timing; the writer holds them all once the two numbers agree."""
FIFTY = (
    "for i in $(seq 50); do "
    + curl_json(
        PREDICT, {"instances": [ROWS[0]]}, flags='-s -o /dev/null -H "X-Request-ID: kill-$i"'
    )
    + "; done"
)

PROCESS_ENV = {
    "log-writer": {
        "MLSP_BATCH_WAIT_SECONDS": "15",
        "MLSP_CLAIM_MIN_IDLE_SECONDS": "2",
        "MLSP_CLAIM_INTERVAL_SECONDS": "1",
    }
}
"""Demo settings: a batch waits 15 s to fill up (so the writer can be killed holding one, even
on a machine busy enough to take seconds between the steps that lead there), and
a dead writer's entries are taken over after 2 s idle, not 30."""

VOLATILE = [
    (re.compile(r"(stream: )\d+(, delivered and not acknowledged: )\d+"), r"\1<n>\2<n>"),
    (re.compile(r"/\S*/mlsp-prediction_log-\w+/"), "<run>/"),
    (re.compile(r'("?outlier_score"?[:,] ?)-?\d+\.\d+(e-?\d+)?'), r"\1<score>"),
    (re.compile(r"(\]', )-?\d+\.\d+"), r"\1<score>"),
    (re.compile(r'"ts":\d+(\.\d+)?'), '"ts":<epoch>'),
    (re.compile(r'"training_run":"[0-9a-f]+"'), '"training_run":"<run id>"'),
]
"""The runner's scratch folder; outlier scores, which move in the last digits when the model
is trained again (their sign, `outlier`, does not), as does the training run's id; a row's
epoch time."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the log is kept across runs: start this example from an empty one")
    w.sh(
        "python3 -c \"import sqlite3; c = sqlite3.connect('data/prediction_log.db'); "
        "c.execute('DELETE FROM prediction_log'); c.execute('DELETE FROM feedback'); c.commit()\""
    )
    w.note("a typical flower and an odd one: each row has its outlier score (negative: outlier)")
    w.sh(
        curl_json(PREDICT, {"instances": ROWS}, flags="-s -H 'X-Request-ID: demo-1'"),
        expect=lambda out: '"outlier":false' in out and '"outlier":true' in out,
    )
    w.note("the writer stores it within a batch's wait: one row, keyed by the request id")
    w.until(
        sql(
            "SELECT request_id, model_name, model_version, input, outlier_score, sample_rate "
            "FROM prediction_log"
        ),
        "('demo-1', 'iris-svc', '1', '[[5.1,3.5,1.4,0.2],[7.9,2.0,1.0,2.5]]'",
    )
    w.note("the outcome, later: joined to the row by request id; posting it again is a replay")
    w.sh(feedback("demo-1", "setosa"), expect=re.compile(r'"joined":true,"replayed":false\} 202$'))
    w.sh(feedback("demo-1", "setosa"), expect='"replayed":true} 202')
    w.sh(feedback("demo-1", "virginica"), expect=re.compile(r'"field":"outcome".* 422$'))
    w.note("an id the log does not have (yet): accepted and joined when its row arrives")
    w.sh(feedback("not-logged-yet", "setosa"), expect='"joined":false')
    w.sh(
        curl_json(f"{URL}/feedback", {"request_id": "demo-1"}, flags=f"-s {CODE}"),
        expect=re.compile(r'"field":"outcome".* 422$'),
    )
    w.sh(
        f"curl -s {WRITER}/metrics | grep -E '^mlsp_predlog_(rows_written_total|batch_rows_count)'",
        expect='mlsp_predlog_rows_written_total{sink="table"} 1.0',
    )

    w.section("failure")
    w.note("kill -9 the writer while it holds a batch it has not stored (50 rows, packed by")
    w.note("the api into a few stream entries, all delivered, none acknowledged)")
    w.sh(FIFTY)
    w.until(HELD, re.compile(r"stream: ([1-9]\d*), delivered and not acknowledged: \1$", re.M))
    w.sh(COUNT, expect="[(1, 1)]")
    w.sh("make kill PATTERN=prediction_log PROCESS=log-writer", expect="killed")
    w.note("the restarted writer takes them over (XAUTOCLAIM after 2 s idle) and stores them")
    w.until(COUNT, "[(51, 51)]", within=40)
    w.until(PENDING, re.compile(r"\A0$", re.M))
    # the restarted writer may store the rows before its metrics port answers: ask until it does
    w.until(
        f"curl -s {WRITER}/metrics | grep -E '^mlsp_predlog_rows_written_total'",
        'mlsp_predlog_rows_written_total{sink="table"} 50.0',
    )
    w.note("a malformed entry: dead-lettered with its reason, the stream keeps moving")
    w.sh(f"{REDIS} xadd mlsp:prediction_log:entries '*' row 'not json' > /dev/null")
    w.until(f"{REDIS} xlen mlsp:prediction_log:dead", re.compile(r"\A1$", re.M))
    w.sh(
        f"{REDIS} xrange mlsp:prediction_log:dead - + | grep -A1 '^error$'",
        expect="malformed: row: Invalid JSON",
    )

    w.note("Redis goes away: predictions still answer 200, /readyz stays 200, and the entry")
    w.note("is one `spilled` line on the api's stdout (the make run terminal), counted")
    w.sh("make stop PATTERN=prediction_log PROCESS=redis", expect="redis: stopped")
    w.sh(
        curl_json(
            PREDICT, {"instances": [ROWS[0]]}, flags=f"-s -H 'X-Request-ID: spilled-1' {CODE}"
        ),
        expect=re.compile(r'"label":"setosa".* 200$'),
    )
    w.sh(f"curl -s {CODE} {URL}/readyz", expect='{"ready":true,"reasons":[]} 200')
    w.until(
        f"curl -s {URL}/metrics | grep '^mlsp_predlog_spilled_total'",
        'reason="redis_unavailable",service="predlog-api"} 1.0',
    )
    log = w.running.logs["api"]
    w.sh(f"grep -h '\"spilled\":true' {log}", expect='"request_id":"spilled-1"')
    w.note("Redis back: entries are appended and stored again (spilled-1 is in the line only)")
    w.sh("make start PATTERN=prediction_log PROCESS=redis", expect="redis: running")
    w.until(
        curl_json(
            PREDICT, {"instances": [ROWS[0]]}, flags="-s -o /dev/null -H 'X-Request-ID: back-1'"
        )
        + " && "
        + COUNT,
        "[(52, 52)]",
        within=40,
    )
