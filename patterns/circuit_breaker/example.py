"""circuit_breaker's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=circuit_breaker
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough, curl_json, status_is

PRIMARY = "http://127.0.0.1:8000"
PROXY = "http://127.0.0.1:8001"
PREDICT = f"{PROXY}/predict"
SETOSA = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
OTHER = {"instances": [[6.7, 3.0, 5.2, 2.3]]}
BREAKER = f"curl -s {PROXY}/breaker"
STATE_METRIC = (
    f"curl -s {PROXY}/metrics | grep -E '^mlsp_breaker_state.* 1.0|^mlsp_fallbacks_total'"
)
TRANSITIONS = f"curl -s {PROXY}/metrics | grep '^mlsp_breaker_transitions_total'"

VOLATILE = [(re.compile(r'"retry_after":\d+'), '"retry_after":<n>')]


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the breaker is closed: the primary (iris-svc) answers, not degraded")
    w.sh(curl_json(PREDICT, SETOSA), expect='"source":"primary","degraded":false')
    w.sh(BREAKER, expect='"state":"closed"')
    w.note("bad input is refused by the proxy, naming the field; the primary is not called")
    w.sh(
        curl_json(PREDICT, {"instances": [[1.0, 2.0]]}, flags=f"-s {CODE}"),
        expect=status_is(422, '"field":"instances[0]"'),
    )

    w.section("failure")
    w.note("the primary goes away (held down, as if scaled to 0)")
    w.sh("make stop PATTERN=circuit_breaker PROCESS=primary", expect="primary: stopped")
    w.note("an input the primary answered a moment ago: its own answer, from the proxy's cache")
    w.sh(
        curl_json(PREDICT, SETOSA),
        expect=lambda out: '"source":"cache","degraded":true' in out and "iris-svc" in out,
    )
    w.note("a new input: the fallback model in the proxy (iris-lr)")
    w.sh(
        curl_json(PREDICT, OTHER),
        expect=lambda out: (
            '"source":"fallback_model","degraded":true' in out and '"name":"iris-lr"' in out
        ),
    )
    w.note("three more failures: five in a row open the breaker")
    w.sh(
        f"for i in 1 2 3; do {curl_json(PREDICT, OTHER)}; echo; done",
        expect=lambda out: out.count('"source":"fallback_model"') == 3,
    )
    w.sh(BREAKER, expect='"state":"open"')
    w.sh(STATE_METRIC, expect='state="open"} 1.0')
    w.note("while open, the primary is not called at all: answered at once, degraded")
    w.sh(curl_json(PREDICT, OTHER), expect='"reason":"breaker open"')
    w.sh("make start PATTERN=circuit_breaker PROCESS=primary", expect="primary: running")
    w.until("make status PATTERN=circuit_breaker", "http://127.0.0.1:8000  ready")
    w.note("after MLSP_OPEN_SECONDS (10) the breaker is half-open: 3 probes go to the primary")
    w.until(BREAKER, '"state":"half_open"')
    w.sh(
        f"for i in 1 2 3; do {curl_json(PREDICT, OTHER)}; echo; done",
        expect=lambda out: out.count('"source":"primary","degraded":false') == 3,
    )
    w.note("all three succeeded: closed again")
    w.sh(BREAKER, expect='"state":"closed"')
    w.sh(TRANSITIONS, expect='from="half_open",service="circuit-breaker-proxy",to="closed"} 1.0')
