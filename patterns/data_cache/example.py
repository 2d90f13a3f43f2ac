"""data_cache's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=data_cache
"""

from __future__ import annotations

import re

from patterns.example import Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
ITEM = f"{URL}/predict/item"
REDIS = 'redis-cli -u "$(make url PATTERN=data_cache PROCESS=redis)"'
METRICS = (
    f"curl -s {URL}/metrics | grep -E "
    "'^mlsp_(store_reads_total|cache_[a-z_]+_total|dependency_up|inference_duration_seconds_count)'"
)

VOLATILE = [(re.compile(r"(?m)^(\$ .* ttl \S+\n)\d+$"), r"\1<ttl>")]
"""A key's remaining TTL counts down from 86400 while the walkthrough runs."""


def item(item_id: str, flags: str = "-si") -> str:
    return curl_json(ITEM, {"item_id": item_id}, flags=flags)


def status(item_id: str) -> str:
    """Just the status and the X-Cache header of one prediction."""
    return item(item_id, flags="-s -o /dev/null -w '%{http_code} %header{x-cache}\\n'")


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("digit-0001 was warmed up by the init step: a hit from its first request")
    w.sh(item("digit-0001"), expect="x-cache: HIT")
    w.note("digit-0150 was not: a miss (one store read, decoded, cached), then a hit")
    w.sh(item("digit-0150"), expect="x-cache: MISS")
    w.sh(item("digit-0150"), expect="x-cache: HIT")
    w.note("one store read for three requests; the model ran on every one")
    w.sh(METRICS, expect='mlsp_store_reads_total{store="images"} 1.0')
    w.note("100 warmed + digit-0150: each a float32 tensor of 64 values, with a TTL")
    w.sh(f"{REDIS} dbsize", expect=re.compile(r"^101$", re.M))
    w.sh(f"{REDIS} ttl mlsp:data_cache:1:digit-0150", expect=re.compile(r"^86\d{3}$", re.M))
    w.sh(f"{REDIS} strlen mlsp:data_cache:1:digit-0150", expect=re.compile(r"^256$", re.M))

    w.section("failure")
    w.note("an id that is not ^[A-Za-z0-9_-]{1,64}$ never reaches Redis or the store")
    w.sh(item("../x"), expect='"field":"item_id"')
    w.sh(
        curl_json(ITEM, {"item_id": "digit-0001", "path": "/etc"}, flags="-s"),
        expect='"code":"invalid_input"',
    )
    w.note("an unknown id: a store read, then 404")
    w.sh(item("digit-9999"), expect="404 Not Found")
    w.note("Redis goes away: ids this process has not seen are read from the store (BYPASS),")
    w.note("the ones it holds stay HIT from its own tier; after three errors in a row Redis is")
    w.note("skipped for a second; the api stays ready")
    w.sh("make stop PATTERN=data_cache PROCESS=redis", expect="redis: stopped")
    for item_id in ("digit-0002", "digit-0003", "digit-0004"):
        w.sh(status(item_id), expect="200 BYPASS")
    w.sh(status("digit-0001"), expect="200 HIT")
    w.sh(f"curl -s {URL}/readyz", expect='"ready":true')
    w.sh(METRICS, expect='mlsp_dependency_up{dependency="redis",service="data-cache"} 0.0')
    w.note("Redis back, with its AOF: after the 1 s cooldown a warmed id is a hit again")
    w.sh("make start PATTERN=data_cache PROCESS=redis", expect="redis: running")
    w.until(f"{REDIS} ping", "PONG")
    w.sh("sleep 1")
    w.sh(status("digit-0005"), expect="200 HIT")
    w.note("the store goes away (its SQLite file moved aside): a miss is 503 naming the store,")
    w.note("cached items are still served, and the api stays ready")
    w.sh("mv data/data_cache.db data/data_cache.db.away")
    w.sh(item("digit-0160"), expect='"dependency":"store"')
    w.sh(status("digit-0150"), expect="200 HIT")
    w.sh(f"curl -s {URL}/readyz", expect='"ready":true')
    w.sh(
        f"curl -s {URL}/metrics | grep '^mlsp_dependency_up'",
        expect='mlsp_dependency_up{dependency="store",service="data-cache"} 0.0',
    )
    w.note("the store back: the miss is served")
    w.sh("mv data/data_cache.db.away data/data_cache.db")
    w.sh(status("digit-0160"), expect="200 MISS")
