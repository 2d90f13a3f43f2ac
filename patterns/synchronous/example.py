"""synchronous's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=synchronous
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough

URL = "http://127.0.0.1:8000"
DIGIT = "patterns/synchronous/examples/digit.png"

PROCESS_ENV = {
    "server": {"MLSP_SIMULATED_LATENCY_MS": "500", "MLSP_MAX_INFLIGHT": "2"},
    "client": {"MLSP_ITEMS": "5"},
}
"""Demo settings: a model that takes 500 ms (so a 300 ms budget passes during the work and two
requests fill the server), a shedding limit of 2, and a line of 5 items."""


def image(deadline: str, flags: str = f"-s {CODE}") -> str:
    """POST the digit PNG with `X-Request-Deadline-Ms: <now + deadline ms>`."""
    return (
        f"curl {flags} {URL}/predict/image -H 'Content-Type: image/png' "
        f'-H "X-Request-Deadline-Ms: $(( $(date +%s%3N) {deadline} ))" --data-binary @{DIGIT}'
    )


def answered_in(out: str, code: int) -> float:
    """The seconds curl's `%{http_code} in %{time_total} s` says a `code` answer took (-1: none)."""
    found = re.search(rf" {code} in ([\d.]+) s$", out)
    return float(found[1]) if found else -1.0


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the client Job ran the line once (5 items) and completed; the server keeps serving")
    w.until("make status PATTERN=synchronous", re.compile(r"^client +completed", re.M))
    w.sh(
        f"""curl -s {URL}/metrics | grep '^mlsp_requests_total{{route="/predict/image"'""",
        expect='status="200"} 5.0',
    )
    w.note("the same line again, by hand: confident answers ship, the rest go to a human")
    w.sh(
        f"MLSP_SERVER_URL={URL} MLSP_MODEL_DIR=data/models/digits-lr MLSP_ITEMS=5 "
        ".venv/bin/python -m patterns.synchronous.client",
        expect='"event": "summary", "items": 5,',
    )
    w.note("one item as the client sends it: a PNG and a 5 s budget")
    w.sh(image("+ 5000"), expect=re.compile(r'"label":"3".* 200$'))

    w.section("failure")
    w.note("the budget (300 ms) passes during the work (500 ms): 504 at the deadline")
    w.sh(
        image("+ 300", flags="-s -w ' %{http_code} in %{time_total} s\\n'"),
        expect=lambda out: "deadline_exceeded" in out and 0 < answered_in(out, 504) < 0.45,
    )
    w.note("a deadline already passed: 504 before any work")
    w.sh(image("- 1000"), expect=re.compile(r"before the request arrived.* 504$"))
    w.note("a deadline that is not epoch milliseconds: 400 naming the header")
    w.sh(
        f"curl -s {CODE} {URL}/predict/image -H 'Content-Type: image/png' "
        f"-H 'X-Request-Deadline-Ms: soon' --data-binary @{DIGIT}",
        expect=re.compile(r'"field":"X-Request-Deadline-Ms".* 400$'),
    )
    w.note("two requests fill the server (MLSP_MAX_INFLIGHT=2); a third is shed at once")
    quiet = image("+ 5000", flags="-s -o /dev/null -w '%{http_code}\\n'")
    shed = image("+ 5000", flags="-si -w '\\n'")
    w.sh(
        f"{quiet} & {quiet} & sleep 0.2; {shed}; wait",
        expect=lambda out: (
            "HTTP/1.1 503" in out and "retry-after: 1" in out and out.endswith("200\n200\n")
        ),
    )
    w.sh(f"curl -s {URL}/readyz", expect='"ready":true')
    w.note("the server goes away: the line retries once, then sends every item to recheck")
    w.sh("make stop PATTERN=synchronous PROCESS=server", expect="server: stopped")
    w.sh(
        f"MLSP_SERVER_URL={URL} MLSP_MODEL_DIR=data/models/digits-lr MLSP_ITEMS=2 "
        "MLSP_WAIT_READY_SECONDS=0 .venv/bin/python -m patterns.synchronous.client",
        expect='"items": 2, "ship": 0, "recheck": 2}',
    )
    w.sh("make start PATTERN=synchronous PROCESS=server", expect="server: running")
    w.until("make status PATTERN=synchronous", "http://127.0.0.1:8000  ready")
