"""online_ab's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=online_ab
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough, curl_json, status_is

PROXY = "http://127.0.0.1:8000"
PREDICT = f"{PROXY}/predict"
ROW = {"instances": [[5.8, 2.7, 4.1, 1.0]]}
FILE = "data/online_ab/experiment.yaml"
SHIPPED = "manifests/patterns/online_ab/experiment.yaml"
SUMMARY = (
    ".venv/bin/python -c \"import json,sys; r=json.load(sys.stdin); v=r['variants']; "
    "[print(k.upper(), {f: v[k][f] for f in ('users', 'outcomes', 'rate')}) for k in 'ab']; "
    "d=r['b_minus_a']; "
    "print('B - A', round(d['difference'], 4), 'CI', [round(x, 4) for x in d['ci95']], "
    "'p', round(d['p_value'], 5)); s=r['srm']; print('SRM p', s['p_value'] and "
    "round(s['p_value'], 3), 'flagged', s['flagged']); "
    "print('always-valid p', round(r['always_valid_p'], 5)); "
    "print(r['decision'], '-', r['why'], '| halted:', r['halted'])\""
)
"""The report in a few lines."""
SIMULATE = f".venv/bin/python -m patterns.online_ab.simulate --url {PROXY}"
EMPTY = (
    "python3 -c \"import sqlite3; c = sqlite3.connect('data/online_ab.db'); "
    "q = \\\"SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ab_%'\\\"; "
    "[c.execute(f'DELETE FROM {t}') for (t,) in c.execute(q).fetchall()]; c.commit()\""
)

PROCESS_ENV = {"proxy": {"MLSP_AB_ERROR_WINDOW": "20"}}
"""The automatic stop compares the last 20 answers of each variant (200 by default), so the
failure block needs a few dozen requests, not hundreds."""


def write(yaml: str) -> str:
    """Replace the experiment file whole (as the kubelet swaps a ConfigMap's files)."""
    return f"printf '{yaml}' > {FILE}.new && mv {FILE}.new {FILE}"


def user(name: str) -> str:
    return (
        f'{curl_json(PREDICT, ROW, flags="-si")} -H "X-User-ID: {name}" '
        "| tr -d '\\r' | grep -i '^x-variant'"
    )


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the tables are kept across runs: start this example from empty ones, and from the")
    w.note("experiment the ConfigMap ships (the book's 60/40)")
    w.sh(EMPTY)
    w.sh(f"mkdir -p data/online_ab && cp {SHIPPED} {FILE}")
    w.note("a user is assigned once and keeps the variant")
    w.sh(f"{user('alice')}; {user('alice')}", expect=re.compile(r"x-variant: (\w)\nx-variant: \1"))
    w.note("1,000 simulated users; B converts at 40%, A at 30% (seeded)")
    w.sh(f"{SIMULATE} --users 1000 --rate-a 0.30 --rate-b 0.40 --seed 1", expect='"failed":0')
    w.note("the fixed-horizon p-value is below 0.05 already; it is valid only at a sample size")
    w.note("fixed in advance, and this is a look, not the end: the always-valid p-value, safe")
    w.note("at every look, says keep going (the split matches the weights: no SRM)")
    w.sh(f"curl -s {PROXY}/ab/report | {SUMMARY}", expect="continue")
    w.note("1,000 more users")
    w.sh(f"{SIMULATE} --users 1000 --rate-a 0.30 --rate-b 0.40 --seed 2", expect='"failed":0')
    w.sh(f"curl -s {PROXY}/ab/report | {SUMMARY}", expect="ship_b")
    w.note("the same in a browser, with plots")
    w.sh(f"curl -s '{PROXY}/ab/report?format=html' | grep -o '<svg' | wc -l", expect="3")

    w.section("failure")
    w.note("the kill switch: weights 100/0, no restart; every user is on A at once, even")
    w.note("the ones assigned to B")
    w.sh(write("name: iris-svc-vs-iris-rf\\nweights: {a: 100, b: 0}\\n"))
    w.until(f"curl -s {PROXY}/ab/report | {SUMMARY} | tail -1", "kill switch")
    w.sh(f"for i in 1 2 3 4 5 6; do {user('sim-1-$i')}; done | sort | uniq -c",
         expect=re.compile(r"^\s*6 x-variant: a$", re.M))  # fmt: skip
    w.sh(f"cp {SHIPPED} {FILE}")
    w.note("B starts failing: its users get 503s (their variant, no silent switch), until B's")
    w.note("error rate is 5 points above A's over the last 20 answers: everyone to A")
    w.sh("make stop PATTERN=online_ab PROCESS=variant-b", expect="variant-b: stopped")
    w.sh(
        f"for i in $(seq 60); do {curl_json(PREDICT, ROW, flags=f'-s -o /dev/null {CODE}')} "
        '-H "X-User-ID: late-$i"; done | sort | uniq -c',
        expect=" 200",
    )
    w.sh(f"curl -s {PROXY}/metrics | grep '^mlsp_ab_stopped'", expect="} 1.0")
    w.sh(
        f"{curl_json(PREDICT, ROW, flags=f'-s -o /dev/null {CODE}')} -H 'X-User-ID: late-b'",
        expect=status_is(200),
    )
    w.sh("make start PATTERN=online_ab PROCESS=variant-b", expect="variant-b: running")
    w.note("an outcome for nobody the experiment saw: 404; a rate that is not 0 or 1: 422")
    w.sh(
        curl_json(f"{PROXY}/outcomes", {"user_id": "nobody", "value": 1}, flags=f"-s {CODE}"),
        expect=status_is(404, '"field":"user_id"'),
    )
    w.sh(
        curl_json(f"{PROXY}/outcomes", {"user_id": "alice", "value": 0.5}, flags=f"-s {CODE}"),
        expect=status_is(422, '"field":"value"'),
    )
