"""condition_based's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=condition_based
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough, curl_json, status_is

ROUTER = "http://127.0.0.1:8000"
PREDICT = f"{ROUTER}/predict"
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
ROUTED = 'tr -d \'\\r\' | grep -oiE \'^x-route[a-z-]*: .*|"model":\\{"name":"[a-z-]+"\' | sort'
"""The route headers and the answering model of a `curl -si` answer, one per line."""


def explain(at: str) -> str:
    return f"curl -s '{ROUTER}/routes/explain?at={at}'"


VERDICT = (
    '.venv/bin/python -c "import json,sys; a=json.load(sys.stdin); '
    "print(a['local_time'], '->', a['rule'], a['backend']); "
    "[print('  ', e['rule'], 'yes' if e['matched'] else 'no ', e['why']) for e in a['evaluated']]\""
)
"""An explanation in a few lines: the local time, the rule taken, each rule tried and why."""
DIGIT = "data/condition_based-digit.png"

VOLATILE = [
    # a plain request takes the night rule from 22:00 to 06:00 in Tokyo, the default otherwise
    (re.compile(r"(?im)^(x-route-rule: )(night|default)$"), r"\1<night or default, by the clock>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d (JST)"), r"<local time> \1"),
]
"""What depends on the hour the example runs at (the rules read Tokyo's local time)."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the rules, in order (manifests/patterns/condition_based/routes.yaml)")
    w.sh(f"curl -s {ROUTER}/routes", expect='"timezone":"Asia/Tokyo"')
    w.note("a request from the `mountain` segment (the book's header): iris-rf answers")
    w.sh(
        f"{curl_json(PREDICT, ROW, flags='-si')} -H 'X-Target: mountain' | {ROUTED}",
        expect='"model":{"name":"iris-rf"',
    )
    w.note("a caller pinning a model in the query")
    w.sh(
        f"{curl_json(PREDICT + '?model=iris-rf', ROW, flags='-si')} | {ROUTED}",
        expect="x-route-rule: pinned",
    )
    w.note("an image: the digits model")
    w.sh(
        '.venv/bin/python -c "from serving.preprocessing import render_digit; import sys; '
        f'sys.stdout.buffer.write(render_digit([0.0] * 12 + [16.0] * 4 + [0.0] * 48))" > {DIGIT}'
    )
    w.sh(
        f"curl -si {ROUTER}/predict/image -H 'Content-Type: image/png' --data-binary @{DIGIT} "
        f"| {ROUTED}",
        expect='"model":{"name":"digits-lr"',
    )
    w.note("nothing special: iris-svc by day, iris-rf from 22:00 to 06:00 in Tokyo")
    w.sh(
        f"{curl_json(PREDICT, ROW, flags='-si')} | tr -d '\\r' | grep -i '^x-route-rule'",
        expect=re.compile(r"x-route-rule: (night|default)"),
    )
    w.note("which rule would a request take, and why not the ones before it? at 23:30 local:")
    w.sh(f"{explain('23:30')} | {VERDICT}", expect="-> night iris-rf")
    w.sh(f"{explain('07:00')} -H 'X-Target: sea' | {VERDICT}", expect="-> default iris-svc")
    w.note("the demo client builds one request per rule from GET /routes, so its headers")
    w.note("always match the rules, and checks each came back from the rule it was built for")
    w.sh(f".venv/bin/python -m patterns.condition_based.client --url {ROUTER}")

    w.section("failure")
    w.note("iris-rf goes away: what its rules route is a 503 naming it and the rule, never")
    w.note("another model's answer; the other routes are unaffected")
    w.sh("make stop PATTERN=condition_based PROCESS=iris-rf", expect="iris-rf: stopped")
    w.sh(
        f"{curl_json(PREDICT, ROW, flags=f'-s {CODE}')} -H 'X-Target: mountain'",
        expect=status_is(503, '"dependency":"iris-rf"', '"rule":"mountain"'),
    )
    w.sh(
        f"curl -s {ROUTER}/predict/image -H 'Content-Type: image/png' --data-binary @{DIGIT} "
        f"{CODE}",
        expect=status_is(200, '"name":"digits-lr"'),
    )
    w.sh("make start PATTERN=condition_based PROCESS=iris-rf", expect="iris-rf: running")
    w.note("a rule naming a model the router does not know stops it at start-up (exit 2)")
    w.sh(
        "sed 's/backend: digits-lr/backend: digits-xl/' "
        "manifests/patterns/condition_based/routes.yaml > data/condition_based-routes.yaml"
    )
    w.sh(
        'MLSP_BACKENDS=\'[{"name":"iris-svc","url":"http://127.0.0.1:8001"},'
        '{"name":"iris-rf","url":"http://127.0.0.1:8002"},'
        '{"name":"digits-lr","url":"http://127.0.0.1:8003"}]\' '
        "MLSP_ROUTES_FILE=data/condition_based-routes.yaml MLSP_PORT=8099 "
        ".venv/bin/python -m patterns.condition_based.router; echo exit $?",
        expect="exit 2",
    )
    w.note("a request the rules do not describe is not an error: the default takes it")
    w.sh(f"{explain('12:00')} -H 'X-Target: ocean' -H 'Content-Type: text/csv' | {VERDICT}",
         expect="-> default iris-svc")  # fmt: skip
