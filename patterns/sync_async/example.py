"""sync_async's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=sync_async
"""

from __future__ import annotations

import re
import time

from patterns.example import CODE, ExampleFailed, Walkthrough, curl_json

PROXY = "http://127.0.0.1:8002"
DIGIT = "patterns/sync_async/examples/digit.json"
PREDICT = f"curl -s {CODE} {PROXY}/predict -H 'Content-Type: application/json' -d @{DIGIT}"
SUBMIT = (
    "JOB=$(curl -s -D /dev/stderr -o /dev/stderr -w '%header{location}' "
    f"{PROXY}/predict -H 'Content-Type: application/json' -d @{DIGIT})"
)
"""POST /predict: the answer's headers and body are shown, its Location is kept in $JOB."""
POLL = f"curl -s {PROXY}$JOB"
HEAVY_MS = 1500

PROCESS_ENV = {
    "worker": {
        "MLSP_SIMULATED_LATENCY_MS": str(HEAVY_MS),
        "MLSP_VISIBILITY_TIMEOUT_SECONDS": "2",
        "MLSP_RECLAIM_INTERVAL_SECONDS": "0.5",
    }
}
"""Demo settings, on the worker only: a heavy model that takes 1.5 s (the fast one still
answers in milliseconds), and a killed worker's job reclaimed after 2 s, not 30."""


def submit(w: Walkthrough, expect: str) -> None:
    """Submit the digit; the answer must come before the heavy model could have answered."""
    started = time.monotonic()
    w.sh(SUBMIT, keep="JOB", expect=expect)
    if (took := time.monotonic() - started) > HEAVY_MS / 1000 / 2:
        raise ExampleFailed(f"POST /predict took {took:.2f} s: not a fast answer")


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the fast model's answer now (digits-lr says 1), a ticket for the heavy one's")
    submit(w, '"fast":{"model":{"name":"digits-lr"')
    w.note("the heavy model (digits-svc) is still thinking")
    w.until(POLL, '"status":"pending","attempts":1')
    w.note("pushed when it ends: it revised the fast answer (it is a 5)")
    w.sh(
        f"curl -sN --max-time 10 {PROXY}$JOB/events",
        expect=re.compile(r"\Aevent: pending\n.*\n\nevent: final\n.*\"revised\":true", re.S),
    )
    w.sh(POLL, expect='"label":"5"')
    w.sh(
        "curl -s http://127.0.0.1:8001/metrics | grep '^mlsp_revisions_total'",
        expect='revised="true"} 1.0',
    )

    w.section("failure")
    w.note("bad input: 422 before anything is called or enqueued")
    w.sh(
        curl_json(f"{PROXY}/predict", {"instances": [[1, 2, 3]]}, flags=f"-s {CODE}"),
        expect=re.compile(r'"field":"instances\[0\]".* 422$'),
    )
    w.note("the fast model goes away: 202, fast null, and the final answer still comes")
    w.sh("make stop PATTERN=sync_async PROCESS=fast", expect="fast: stopped")
    submit(w, "HTTP/1.1 202")
    w.until(POLL, '"status":"done"', within=30)
    w.note("Redis goes away too: nothing can answer")
    w.sh("make stop PATTERN=sync_async PROCESS=redis", expect="redis: stopped")
    w.sh(PREDICT, expect=re.compile(r'"dependency":"fast,redis".* 503$'))
    w.note("the fast model back, Redis still away: 200 with the fast answer, no final one")
    w.sh("make start PATTERN=sync_async PROCESS=fast", expect="fast: running")
    w.until("curl -s http://127.0.0.1:8000/readyz", '"ready":true')
    w.sh(PREDICT, expect=re.compile(r'"job_id":null,.*"final":"unavailable"} 200$'))
    w.note("the proxy stays ready through both: each one alone still lets it answer")
    w.sh(f"curl -s {PROXY}/readyz", expect='"ready":true')
    w.sh("make start PATTERN=sync_async PROCESS=redis", expect="redis: running")
    w.until("curl -s http://127.0.0.1:8001/readyz", '"ready":true')

    w.note("kill -9 the worker in the middle of a job: reclaimed, completed once")
    submit(w, "HTTP/1.1 200")
    w.until(POLL, '"status":"pending","attempts":1')
    w.sh("make kill PATTERN=sync_async PROCESS=worker", expect="killed")
    w.until(POLL, '"status":"done","attempts":2', within=30)
