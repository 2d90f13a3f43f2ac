"""`make bench`, part 2: the queue (asynchronous) and the batch scorer (batch_inference), each
against the in-process limit measured in the same run.

- asynchronous, end to end: one worker process (core 0) while this process (core 1) enqueues
  N jobs through the queue library; jobs/s = N / (first enqueue -> last result stored).
  Baseline: the same model called in-process on batches of the worker's size.
  Enqueue latency: wrk against POST /jobs of the API process (core 0), no worker running.
- batch_inference, database to database: the scorer run in-process over a seeded SQLite file
  (and PostgreSQL when it answers). Baseline: the same model on the same rows, already parsed,
  in chunks of the same size.

    python -m bench.patterns [--seconds 5] [--jobs 20000] [--rows 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.common import POSTGRES, REDIS
from bench.run import ROOT, wrk
from patterns.batch_inference import score, seed
from patterns.batch_inference.db import SCHEMA, Db
from patterns.runner import answers, free_port
from serving.model import OnnxModel
from serving.queue import JobQueue, QueueSettings
from serving.redis_client import connect

MODEL = ROOT / "data/models/iris-svc"
ROW = [5.1, 3.5, 1.4, 0.2]
BODY = json.dumps({"instances": [ROW]}).encode()


def start(module: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", module],
        env={
            **os.environ,
            "MLSP_PORT": str(port),
            "MLSP_ACCESS_LOG": "false",
            "MLSP_DRAIN_DELAY_SECONDS": "0",
            "PYTHONPATH": str(ROOT),
            **env,
        },
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not answers(f"{url}/readyz"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{module} did not start")
        time.sleep(0.1)
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


def in_process_jobs_per_s(n: int, batch: int) -> float:
    model = OnnxModel.load(MODEL)
    x = np.asarray([ROW] * batch, dtype=np.float32)
    started = time.perf_counter()
    for _ in range(max(1, n // batch)):
        model.predict(x)
    return (n // batch) * batch / (time.perf_counter() - started)


async def enqueue_and_wait(url: str, n: int) -> tuple[float, float]:
    """(seconds from first enqueue to last result, seconds to enqueue all)."""
    client = connect(url, max_connections=64)
    q = JobQueue(client, "asynchronous", QueueSettings(max_queue=10 * n))
    payload: dict[str, bytes | str] = {"kind": "instances", "input": BODY}
    started = time.perf_counter()
    for lo in range(0, n, 256):
        await asyncio.gather(*(q.submit(payload) for _ in range(min(256, n - lo))))
    enqueued = time.perf_counter() - started
    deadline = time.monotonic() + 300
    while True:
        depth = int(await client.xlen(q.stream))
        if depth == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{depth} jobs still queued after 300 s")
        await asyncio.sleep(0.01)
    total = time.perf_counter() - started
    await client.aclose()
    return total, enqueued


def bench_async(redis_url: str, n: int, seconds: int) -> dict[str, Any]:
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    env = {"MLSP_REDIS_URL": redis_url, "MLSP_MAX_QUEUE": str(10 * n)}
    api, url = start("patterns.asynchronous.api", env)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
            fh.write(
                f"wrk.method = 'POST'\nwrk.body = '{BODY.decode()}'\n"
                "wrk.headers['Content-Type'] = 'application/json'\n"
            )
        enqueue = wrk(f"{url}/jobs", 8, seconds, Path(fh.name))
        Path(fh.name).unlink()
    finally:
        stop(api)
    r.flushdb()
    worker_env = {
        **env,
        "MLSP_MODEL_DIR": str(MODEL),
        "MLSP_WORKER_BATCH": "64",
        "MLSP_SERVICE": "bench-worker",
    }
    worker, _ = start("patterns.asynchronous.worker", worker_env)
    try:
        total, enqueued = asyncio.run(enqueue_and_wait(redis_url, n))
        done = sum(1 for _ in r.scan_iter("mlsp:asynchronous:job:*", count=1000))
    finally:
        stop(worker)
        r.flushdb()
    if done != n:
        raise RuntimeError(f"{done} of {n} jobs stored")
    baseline = in_process_jobs_per_s(n, 64)
    return {
        "jobs": n,
        "jobs_per_s": n / total,
        "enqueue_only_per_s": n / enqueued,
        "in_process_jobs_per_s": baseline,
        "ratio": n / total / baseline,
        "http_enqueue": enqueue,
    }


def bench_batch(url: str, rows: int, label: str) -> dict[str, Any]:
    settings = score.ScoreSettings(database_url=url, model_dir=MODEL)
    db = Db.from_settings(settings)
    db.create_schema(SCHEMA)
    db.begin()
    db.execute("DELETE FROM predictions")
    db.execute("DELETE FROM items")
    items = seed.items(rows, 0)
    for lo in range(0, rows, 5000):
        db.executemany("INSERT INTO items (id, features) VALUES (%s, %s)", items[lo : lo + 5000])
    db.commit()
    db.close()
    started = time.perf_counter()
    stats = score.run(settings)
    elapsed = time.perf_counter() - started
    if stats["scored"] + stats["errors"] != rows:
        raise RuntimeError(f"{label}: scored {stats} of {rows}")
    model = OnnxModel.load(MODEL)
    x = np.asarray([json.loads(f) for _, f in items if len(json.loads(f)) == 4], np.float32)
    started = time.perf_counter()
    for lo in range(0, len(x), settings.chunk_size):
        model.predict(x[lo : lo + settings.chunk_size])
    baseline = len(x) / (time.perf_counter() - started)
    return {
        "rows": rows,
        "rows_per_s": rows / elapsed,
        "in_process_rows_per_s": baseline,
        "ratio": rows / elapsed / baseline,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results/patterns.json")
    args = parser.parse_args(argv)
    if not (MODEL / "model.json").is_file():
        print("no iris-svc model: run `make models` first", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"asynchronous": bench_async(args.redis, args.jobs, args.seconds)}
    with tempfile.TemporaryDirectory() as tmp:
        results["batch_sqlite"] = bench_batch(f"sqlite:///{tmp}/bench.db", args.rows, "sqlite")
    try:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP DATABASE IF EXISTS mlsp_bench WITH (FORCE)")
            conn.execute("CREATE DATABASE mlsp_bench")
        pg = args.postgres.rsplit("/", 1)[0] + "/mlsp_bench"
        results["batch_postgres"] = bench_batch(pg, args.rows, "postgres")
        with psycopg.connect(args.postgres, autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP DATABASE IF EXISTS mlsp_bench WITH (FORCE)")
    except Exception as exc:  # PostgreSQL absent: say so, SQLite still counts
        results["batch_postgres"] = {"skipped": f"PostgreSQL not reachable: {exc!r}"[:200]}

    a = results["asynchronous"]
    print(f"\nasynchronous, iris-svc, one worker (core 0), {a['jobs']} jobs through Redis")
    print(f"  end to end        {a['jobs_per_s']:>9.0f} jobs/s")
    print(f"  in-process limit  {a['in_process_jobs_per_s']:>9.0f} jobs/s (batches of 64)")
    print(f"  ratio             {a['ratio']:>9.1%}")
    h = a["http_enqueue"]
    print(
        f"  POST /jobs (wrk, 8 conns): {h['rps']:.0f} req/s, "
        f"p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms"
    )
    for key in ("batch_sqlite", "batch_postgres"):
        b = results[key]
        if "skipped" in b:
            print(f"\n{key}: {b['skipped']}")
            continue
        print(f"\n{key}, iris-svc, {b['rows']} rows, chunks of 1000, database to database")
        print(f"  scorer            {b['rows_per_s']:>9.0f} rows/s")
        print(f"  in-process limit  {b['in_process_rows_per_s']:>9.0f} rows/s (same chunks)")
        print(f"  ratio             {b['ratio']:>9.1%}")
    targets = {
        "async>=2000jobs/s": a["jobs_per_s"] >= 2000,
        "batch_sqlite>=50%": results["batch_sqlite"]["ratio"] >= 0.5,
    }
    if "ratio" in results["batch_postgres"]:
        targets["batch_postgres>=50%"] = results["batch_postgres"]["ratio"] >= 0.5
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "targets": targets}, indent=2) + "\n")
    errors = h["non_2xx"] + h["socket_errors"]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
