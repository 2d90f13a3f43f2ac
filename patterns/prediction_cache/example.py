"""prediction_cache's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=prediction_cache
"""

from __future__ import annotations

import re

from patterns.example import Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
PREDICT = f"{URL}/predict"
REDIS = 'redis-cli -u "$(make url PATTERN=prediction_cache PROCESS=redis)"'
KEYS = f"{REDIS} --scan --pattern 'mlsp:prediction_cache:*' | sort"
CACHE_METRICS = (
    f"curl -s {URL}/metrics | grep -E "
    "'^mlsp_(cache_[a-z_]+_total|dependency_up|inference_duration_seconds_count)'"
)
SETOSA = [5.1, 3.5, 1.4, 0.2]

PROCESS_ENV = {"api": {"MLSP_SIMULATED_LATENCY_MS": "300"}}
"""A demo setting: a model slow enough (300 ms) for the cache to matter and for 50 identical
requests to overlap."""

VOLATILE = [(re.compile(r"(?m)^(\$ .* ttl \S+\n)\d+$"), r"\1<ttl>")]
"""A key's remaining TTL counts down from 3600 while the walkthrough runs."""


def status(row: list[float]) -> str:
    """Just the status and the X-Cache header of one prediction."""
    return curl_json(
        PREDICT, {"instances": [row]}, flags="-s -o /dev/null -w '%{http_code} %header{x-cache}\\n'"
    )


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.sh(curl_json(PREDICT, {"instances": [SETOSA]}, flags="-si"), expect="x-cache: MISS")
    w.sh(curl_json(PREDICT, {"instances": [SETOSA]}, flags="-si"), expect="x-cache: HIT")
    w.note("5.10 is the same float32 as 5.1: the same key")
    w.sh(
        curl_json(PREDICT, '{"instances":[[5.10,3.50,1.40,0.20]]}', flags="-si"),
        expect="x-cache: HIT",
    )
    w.note("one key, scoped by model and version, with its TTL; its value is the model's")
    w.note("answer (class ids, scores), each response is shaped from it with its own request id")
    keys = w.sh(KEYS, expect=re.compile(r"^mlsp:prediction_cache:iris-svc:1:[0-9a-f]{64}$", re.M))
    key = keys.split()[0]
    w.sh(f"{REDIS} ttl {key}", expect=re.compile(r"^3[56]\d\d$", re.M))
    w.sh(f"{REDIS} get {key}", expect='{"class_ids":[0],"scores":[[')
    w.note("three answers, one model call")
    w.sh(CACHE_METRICS, expect='seconds_count{model="iris-svc",service="prediction-cache"} 1.0')

    w.note("single-flight: 50 identical concurrent misses, one model call (two in all now)")
    burst = curl_json(
        PREDICT, {"instances": [[6.2, 2.8, 4.7, 1.2]]}, flags="-s -o /dev/null -w '%{http_code}\\n'"
    )
    w.sh(f"seq 50 | xargs -P 50 -I{{}} {burst} | sort | uniq -c", expect="     50 200")
    w.sh(
        f"curl -s {URL}/metrics | grep '^mlsp_inference_duration_seconds_count'",
        expect=re.compile(r'service="prediction-cache"} 2\.0$', re.M),
    )

    w.note("a key of an older model version, planted by hand, is swept when the api starts")
    old = key.replace(":iris-svc:1:", ":iris-svc:0:")
    w.sh(f"{REDIS} set {old} old EX 3600", expect="OK")
    w.sh("make kill PATTERN=prediction_cache PROCESS=api", expect="killed")
    w.until("make status PATTERN=prediction_cache", "restarts=1  http://127.0.0.1:8000  ready")
    w.until(KEYS, lambda out: ":iris-svc:0:" not in out and ":iris-svc:1:" in out)
    w.note("the new process has an empty local tier: this hit comes from Redis")
    w.sh(status(SETOSA), expect="200 HIT")

    w.section("failure")
    w.note("bad input is refused before the cache: no X-Cache, nothing stored")
    w.sh(
        curl_json(PREDICT, {"instances": [[5.1, 3.5]]}, flags="-si"),
        expect=lambda out: "422 Unprocessable Entity" in out and "x-cache" not in out,
    )
    w.note("Redis goes away (held down, as if scaled to 0)")
    w.sh("make stop PATTERN=prediction_cache PROCESS=redis", expect="redis: stopped")
    w.note("a repeat this process has answered is still a HIT, from its own tier")
    w.sh(status(SETOSA), expect="200 HIT")
    w.note("new inputs are BYPASS, answered by the model; after three errors in a row the")
    w.note("cache is skipped for a second, so the fourth does not even try Redis")
    rows = [[6.3, 3.3, 6.0, 2.5], [6.4, 3.2, 4.5, 1.5], [5.0, 3.6, 1.4, 0.2], [6.9, 3.1, 5.4, 2.1]]
    for row in rows:
        w.sh(status(row), expect="200 BYPASS")
    w.sh(f"curl -s {URL}/readyz", expect='"ready":true')
    w.sh(
        CACHE_METRICS,
        expect=lambda out: (
            'outcome="BYPASS"} 4.0' in out
            and 'mlsp_dependency_up{dependency="redis",service="prediction-cache"} 0.0' in out
        ),
    )
    w.note("Redis back (its AOF kept the keys); after the 1 s cooldown: MISS, then HIT")
    w.sh("make start PATTERN=prediction_cache PROCESS=redis", expect="redis: running")
    w.until(f"{REDIS} ping", "PONG")
    w.sh("sleep 1")
    w.sh(status([5.9, 3.0, 5.1, 1.8]), expect="200 MISS")
    w.sh(status([5.9, 3.0, 5.1, 1.8]), expect="200 HIT")
    w.sh(KEYS, expect=lambda out: len(out.split()) == 3)
    w.sh(
        f"curl -s {URL}/metrics | grep '^mlsp_dependency_up'",
        expect='mlsp_dependency_up{dependency="redis",service="prediction-cache"} 1.0',
    )
