"""asynchronous's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=asynchronous
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
WORKER = "http://127.0.0.1:8001"
DIGIT = "patterns/asynchronous/examples/digit.json"
SUBMIT = (
    "JOB=$(curl -s -D /dev/stderr -o /dev/stderr -w '%header{location}' "
    f"{URL}/jobs -H 'Content-Type: application/json' -d @{DIGIT})"
)
"""POST /jobs: the 202's headers and body are shown, its Location is kept in $JOB."""
POLL = f"curl -s {URL}$JOB"
REDIS = 'redis-cli -u "$(make url PATTERN=asynchronous PROCESS=redis)"'

PROCESS_ENV = {
    "worker": {
        "MLSP_SIMULATED_LATENCY_MS": "1500",
        "MLSP_VISIBILITY_TIMEOUT_SECONDS": "2",
        "MLSP_RECLAIM_INTERVAL_SECONDS": "0.5",
    }
}
"""Demo settings: a model that takes 1.5 s (so a job is seen pending and a worker can be
killed in the middle of one), and a crashed worker's job reclaimed after 2 s, not 30."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("submit: 202 at once, with the job's URL in Location (kept in $JOB)")
    w.sh(SUBMIT, keep="JOB", expect=re.compile(r"^HTTP/1.1 202 .*^location: /jobs/", re.M | re.S))
    w.note("the worker has it (attempts 1) and is still scoring it")
    w.until(POLL, '"status":"pending","attempts":1')
    w.note("or be told: server-sent events, `pending` at once, `final` when it ends")
    w.sh(
        f"curl -sN --max-time 10 {URL}$JOB/events",
        expect=re.compile(r"\Aevent: pending\n.*\n\nevent: final\n.*\"status\":\"done\"", re.S),
    )
    w.sh(POLL, expect='"status":"done","attempts":1,"result":{"model":{"name":"digits-svc"')

    w.section("failure")
    w.note("a malformed id, an unknown one, input the model cannot take")
    w.sh(f"curl -s {CODE} {URL}/jobs/not-a-uuid", expect=re.compile(r'"field":"job_id".* 400$'))
    w.sh(
        f"curl -s {CODE} {URL}/jobs/$(python3 -c 'import uuid; print(uuid.uuid4())')",
        expect=re.compile(r'"code":"not_found".* 404$'),
    )
    w.sh(
        curl_json(f"{URL}/jobs", {"instances": [[1, 2, 3]]}, flags=f"-s {CODE}"),
        expect=re.compile(r'"field":"instances\[0\]".* 422$'),
    )

    w.note("kill -9 the worker in the middle of a job")
    w.sh(SUBMIT, keep="JOB", expect="HTTP/1.1 202")
    w.until(POLL, '"status":"pending","attempts":1')
    w.sh("make kill PATTERN=asynchronous PROCESS=worker", expect="killed")
    w.sh(POLL, expect='"status":"pending","attempts":1')
    w.note("the restarted worker reclaims it after the visibility timeout: done, attempts 2")
    w.until(POLL, '"status":"done","attempts":2', within=30)
    w.sh("make status PATTERN=asynchronous", expect="restarts=1")
    w.note("the new worker: one job reclaimed, one result stored; nothing dead-lettered")
    w.sh(
        f"curl -s {WORKER}/metrics | grep -E '^mlsp_(jobs|job_retries)_total'",
        expect=lambda out: (
            'outcome="done",queue="asynchronous"} 1.0' in out
            and 'mlsp_job_retries_total{queue="asynchronous"} 1.0' in out
        ),
    )
    w.sh(f"{REDIS} xlen mlsp:asynchronous:dead", expect=re.compile(r"\A0$", re.M))

    w.note("Redis goes away: the api answers 503 naming it, and is not ready")
    w.sh("make stop PATTERN=asynchronous PROCESS=redis", expect="redis: stopped")
    w.sh(
        f"curl -si {URL}/jobs -H 'Content-Type: application/json' -d @{DIGIT}",
        expect=lambda out: "HTTP/1.1 503" in out and '"dependency":"redis"' in out,
    )
    w.sh(f"curl -s {CODE} {URL}/readyz", expect=re.compile(r"redis unreachable.* 503$"))
    w.note("Redis back: its AOF kept the finished job, and the worker consumes again")
    w.sh("make start PATTERN=asynchronous PROCESS=redis", expect="redis: running")
    w.until(f"curl -s {URL}/readyz", '"ready":true')
    w.until(POLL, '"status":"done","attempts":2')
    w.sh(SUBMIT, keep="JOB", expect="HTTP/1.1 202")
    w.until(POLL, '"status":"done","attempts":1', within=30)
