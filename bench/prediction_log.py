"""`make bench`, the prediction log: what logging costs the api, and how fast the writer stores.

- api: POST /predict (one iris row) with wrk (core 1) against each server (core 0), in the same
  run: web_single (the baseline the spec names), prediction_log's api with MLSP_SAMPLE_RATE=0
  (the same two models, nothing logged) and prediction_log's api logging every request to
  Redis, and the same with Redis gone (every row spilled to stdout, every answer still 200).
  Reported: req/s and p99 at 8 and 64 connections, and the ratios. Target: logging costs at
  most 10% of web_single's throughput; with Redis down the api answers as fast.
- writer: the stream pre-filled with N rows (entries of 50, as the api packs them), the
  log-writer (in this process) stores them into PostgreSQL in batches of 500;
  rows/s = N / (start -> stream empty). Target: 20,000.

    python -m bench.prediction_log [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from bench.common import POSTGRES, REDIS, finish, post_script
from bench.patterns import BODY, start, stop
from bench.run import ROOT, wrk
from patterns.prediction_log.record import COUNT, ROWS
from patterns.prediction_log.writer import LogWriter, WriterSettings, make_sinks
from patterns.procs import free_port
from serving.redis_client import connect
from serving.stream import LogStream

MODELS = ROOT / "data/models"
STREAM = "mlsp:prediction_log:entries"
PER_ENTRY = 50
"""Rows per stream entry in the writer's run: the api packs what one flush interval
buffered (1 at a trickle, hundreds under load)."""


def lua_script() -> Path:
    return post_script(BODY)


def log_counts(url: str) -> dict[str, float]:
    """Rows the api appended, spilled and dropped (a run that spilled is not a logged run)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5).text
    out = {"appended": 0.0, "spilled": 0.0, "dropped": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key in out:
                if sample.name == f"mlsp_predlog_{key}_total":
                    out[key] += sample.value
    return out


def bench_api(redis_url: str, seconds: int) -> dict[str, Any]:
    script = lua_script()
    log_env = {
        "MLSP_MODEL_DIR": str(MODELS / "iris-svc"),
        "MLSP_OUTLIER_MODEL_DIR": str(MODELS / "iris-ocsvm"),
        "MLSP_REDIS_URL": redis_url,
    }
    servers = {
        "web_single": ("patterns.web_single.app", {"MLSP_MODEL_DIR": str(MODELS / "iris-svc")}),
        "predlog_unlogged": ("patterns.prediction_log.api", {**log_env, "MLSP_SAMPLE_RATE": "0"}),
        "predlog_logged": ("patterns.prediction_log.api", log_env),
        # Redis gone (nothing listens there): every row is spilled to stdout, the answer is 200
        "predlog_redis_down": (
            "patterns.prediction_log.api",
            {**log_env, "MLSP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
        ),
    }
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, (module, env) in servers.items():
                env = {**env, "MLSP_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}
                proc, url = start(module, env)
                try:
                    wrk(f"{url}/predict", 8, min(2, seconds), script)  # warm-up
                    results[name] = {
                        f"c{c}": wrk(f"{url}/predict", c, seconds, script) for c in (8, 64)
                    }
                    time.sleep(0.5)  # the last appends
                    results[name]["log"] = log_counts(url)
                finally:
                    stop(proc)
                redis.Redis.from_url(redis_url).delete(STREAM)
    finally:
        script.unlink()
    base, bare, logged, down = (results[k] for k in servers)
    results["ratios"] = {
        c: {
            "logged/web_single": logged[c]["rps"] / base[c]["rps"],
            "logged/unlogged": logged[c]["rps"] / bare[c]["rps"],
            "redis_down/logged": down[c]["rps"] / logged[c]["rps"],
            "redis_down_p99/logged_p99": down[c]["p99_ms"] / logged[c]["p99_ms"],
        }
        for c in ("c8", "c64")
    }
    return results


def row(i: int) -> dict[str, Any]:
    return {
        "request_id": str(uuid.UUID(int=i, version=4)),
        "ts": time.time(),
        "model_name": "iris-svc",
        "model_version": "1",
        "training_run": "f8a2294b684c4ad58a157f6c6fbe5a7d",
        "input": [[5.1, 3.5, 1.4, 0.2]],
        "output": [
            {
                "label": "setosa",
                "class_id": 0,
                "probabilities": {"setosa": 0.95, "versicolor": 0.04, "virginica": 0.01},
                "outlier_score": 0.39,
                "outlier": False,
            }
        ],
        "latency_ms": 0.5,
        "outlier_score": 0.39,
        "sample_rate": 1.0,
    }


def bench_writer(redis_url: str, pg_url: str, rows: int) -> dict[str, Any]:
    r = redis.Redis.from_url(redis_url)
    r.delete(STREAM)
    pipe = r.pipeline(transaction=False)
    for lo in range(0, rows, PER_ENTRY):
        pack = [row(i) for i in range(lo, min(rows, lo + PER_ENTRY))]
        pipe.xadd(STREAM, {ROWS: orjson.dumps(pack), COUNT: str(len(pack))})
    pipe.execute()
    settings = WriterSettings(redis_url=redis_url, database_url=pg_url, batch_wait_seconds=0.05)

    async def drain() -> float:
        client = connect(redis_url)
        writer = LogWriter(LogStream(client, "prediction_log"), make_sinks(settings), settings, "b")
        stored = 0
        try:
            await writer.store([])  # connects, creates the schema (not timed)
            started = time.perf_counter()
            while stored < rows:
                stored += await writer.step()
            return time.perf_counter() - started
        finally:
            writer.close()
            await client.aclose()

    elapsed = asyncio.run(drain())
    left = r.xlen(STREAM)
    r.delete(STREAM)
    if left:
        raise RuntimeError(f"writer left {left} entries")
    return {"rows": rows, "rows_per_s": rows / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results/prediction_log.json")
    args = parser.parse_args(argv)
    if not (MODELS / "iris-ocsvm" / "model.json").is_file():
        print("no iris-svc/iris-ocsvm models: run `make models` first", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"api": bench_api(args.redis, args.seconds)}
    import psycopg

    with psycopg.connect(args.postgres, autocommit=True, connect_timeout=3) as conn:
        conn.execute("DROP DATABASE IF EXISTS mlsp_bench_predlog WITH (FORCE)")
        conn.execute("CREATE DATABASE mlsp_bench_predlog")
    try:
        pg = args.postgres.rsplit("/", 1)[0] + "/mlsp_bench_predlog"
        results["writer"] = bench_writer(args.redis, pg, min(200_000, 20_000 * args.seconds))
    finally:
        with psycopg.connect(args.postgres, autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP DATABASE IF EXISTS mlsp_bench_predlog WITH (FORCE)")

    api = results["api"]
    print(
        f"\nPOST /predict, one iris row; server on core 0, wrk on core 1, {args.seconds} s per run"
    )
    print(f"{'server':18} {'conns':>5} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for name in ("web_single", "predlog_unlogged", "predlog_logged", "predlog_redis_down"):
        for c in ("c8", "c64"):
            w = api[name][c]
            errors = w["non_2xx"] + w["socket_errors"]
            print(
                f"{name:18} {c[1:]:>5} {w['rps']:>9.0f} {w['p50_ms']:>7.2f} "
                f"{w['p99_ms']:>7.2f} {errors:>6.0f}"
            )
    for c, ratio in api["ratios"].items():
        print(
            f"at {c[1:]} connections: logged / web_single {ratio['logged/web_single']:.0%}, "
            f"logged / unlogged (same two models) {ratio['logged/unlogged']:.0%}, "
            f"Redis down / logged {ratio['redis_down/logged']:.0%} "
            f"(p99 {ratio['redis_down_p99/logged_p99']:.2f}x)"
        )
    logged = api["predlog_logged"]["log"]
    print(
        f"predlog_logged: {logged['appended']:.0f} rows appended, {logged['spilled']:.0f} "
        f"spilled, {logged['dropped']:.0f} dropped"
    )
    w = results["writer"]
    print(f"\nlog-writer into PostgreSQL, {w['rows']} entries, batches of 500")
    print(f"  {w['rows_per_s']:>9.0f} rows/s")
    targets = {
        "logging<=10%@8 (logged/web_single>=90%)": api["ratios"]["c8"]["logged/web_single"] >= 0.9,
        "writer>=20000rows/s": w["rows_per_s"] >= 20_000,
        "nothing spilled": logged["spilled"] + logged["dropped"] == 0,
        "Redis down: every answer 200": all(
            api["predlog_redis_down"][c]["non_2xx"] + api["predlog_redis_down"][c]["socket_errors"]
            == 0
            for c in ("c8", "c64")
        ),
    }
    return finish(results, targets, args.out)


if __name__ == "__main__":
    sys.exit(main())
