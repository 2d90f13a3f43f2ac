"""shadow_ab's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=shadow_ab
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough, curl_json, status_is

PROXY = "http://127.0.0.1:8000"
PREDICT = f"{PROXY}/predict"
REPORT = f"curl -s {PROXY}/shadow/report"
SUMMARY = (
    '.venv/bin/python -c "import json,sys; r=json.load(sys.stdin); '
    "print(r['verdict'], r['pairs'], 'pairs, agreement %.3f, errors %.3f' "
    "% (r['agreement'] or 0, r['shadow_error_rate'] or 0)); "
    "[print('  ', x) for x in r['reasons'] if not x.startswith('shadow p95')]\""
)
"""The report's verdict, its size and its reasons, one per line; the latency criterion is
left out of the README (it depends on how busy the machine is: see the load test)."""
FLOWERS = "patterns/shadow_ab/examples/flowers.jsonl"
"""The 150 flowers of the iris data set, one request body per line."""
SEND = (
    f"while read -r body; do curl -s -o /dev/null {PREDICT} -H 'Content-Type: application/json'"
    f' -d "$body"; done < {FLOWERS}'
)
EMPTY = (
    "python3 -c \"import sqlite3; c = sqlite3.connect('data/shadow_ab.db'); "
    "c.execute('CREATE TABLE IF NOT EXISTS shadow_log (request_id TEXT)'); "
    "c.execute('DELETE FROM shadow_log'); c.commit()\""
)

PROCESS_ENV = {"proxy": {"MLSP_SHADOW_REPORT_SECONDS": "1"}}
"""The gauges follow the table every second (15 s by default), so the example's metrics step
shows the report it just printed."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the table is kept across runs: start this example from an empty one")
    w.sh(EMPTY)
    w.note("a client asks; the answer is the primary's (iris-svc), the shadow (iris-rf) was")
    w.note("asked too, off the request path")
    w.sh(f"{curl_json(PREDICT, {'instances': [[6.0, 2.7, 5.1, 1.6]]}, flags='-si')} | tr -d '\\r' "
         "| grep -E '^x-shadow|^\\{'", expect='"name":"iris-svc"')  # fmt: skip
    w.note("150 flowers of the iris data set, one request each")
    w.sh(SEND)
    w.until(f"{REPORT} | {SUMMARY}", re.compile(r"\b151 pairs"))
    w.note("side by side in the table: the rows where they disagree")
    w.sh(
        "python3 -c \"import sqlite3; c = sqlite3.connect('data/shadow_ab.db'); "
        "[print(r) for r in c.execute('SELECT primary_label, shadow_label, COUNT(*) "
        "FROM shadow_log WHERE agree = 0 GROUP BY 1, 2 ORDER BY 3 DESC')]\"",
        expect="versicolor",
    )
    w.note("the report in a browser: agreement over time, |Δp| and latency histograms")
    w.sh(f"curl -s '{PROXY}/shadow/report?format=html' | grep -o '<svg' | wc -l", expect="3")
    w.sh(f"curl -s {PROXY}/metrics | grep -E '^mlsp_shadow_(agreement|error_rate|go|pairs)'",
         expect="mlsp_shadow_pairs")  # fmt: skip

    w.section("failure")
    w.note("the shadow goes away: clients see nothing, the report counts its errors")
    w.sh("make stop PATTERN=shadow_ab PROCESS=shadow", expect="shadow: stopped")
    w.sh(
        curl_json(PREDICT, {"instances": [[5.1, 3.5, 1.4, 0.2]]}, flags=f"-s -o /dev/null {CODE}"),
        expect=status_is(200),
    )
    w.until(f"{REPORT} | {SUMMARY}", re.compile(r"errors 0\.0*[1-9]"))
    w.sh(f"curl -s {PROXY}/metrics | grep '^mlsp_shadow_calls_total'", expect='outcome="error"')
    w.sh("make start PATTERN=shadow_ab PROCESS=shadow", expect="shadow: running")
    w.note("the primary goes away: that is an outage, 503 naming it (the shadow never answers")
    w.note("for it: its answers are unvetted by definition)")
    w.sh("make stop PATTERN=shadow_ab PROCESS=primary", expect="primary: stopped")
    w.sh(
        curl_json(PREDICT, {"instances": [[5.1, 3.5, 1.4, 0.2]]}, flags=f"-s {CODE}"),
        expect=status_is(503, '"dependency":"primary"'),
    )
    w.sh("make start PATTERN=shadow_ab PROCESS=primary", expect="primary: running")
