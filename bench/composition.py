"""`make bench`, part 3: caching and composition, each against a baseline from the same run.

- prediction_cache, hits: wrk (core 1, 8 and 64 connections) sends one repeated iris row to the
  cached api (core 0; every request after the first is a HIT: from the process's local tier by
  default, from Redis with MLSP_CACHE_LOCAL_BYTES=0), then the same to the uncached
  web_single server; again with a 5 ms model on both sides. Reported: hit p50/p99 and req/s,
  and the ratio to web_single.
- parallel, fan-out overhead: three backends that each take MLSP_SIMULATED_LATENCY_MS, and the
  proxy in front. Overhead = proxy p50 - the slowest backend's p50 (each measured directly,
  one request at a time); the sum of the three is printed for comparison.
- serial, per-hop overhead: two stages and the proxy. Per hop = (proxy p50 - the sum of the
  stages' p50 measured directly) / number of stages.

Servers run on core 0 and the client on core 1 (taskset); figures are ratios or differences
against measurements of the same run, so a slower machine shifts both sides.

    python -m bench.composition [--seconds 5] [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.patterns import BODY, start, stop
from bench.run import ROOT, wrk

MODELS = ROOT / "data/models"
IRIS = [5.1, 3.4, 1.5, 0.2]  # an inlier: it travels the whole serial chain


def latencies(url: str, n: int) -> dict[str, float]:
    """One request at a time (no queueing): p50 and p99 of POST /predict, in ms."""
    body = json.dumps({"instances": [IRIS]}).encode()
    headers = {"Content-Type": "application/json"}
    out = []
    with httpx.Client(timeout=10) as client:
        for _ in range(20):  # warm the connections and the code paths
            client.post(f"{url}/predict", content=body, headers=headers).raise_for_status()
        for _ in range(n):
            started = time.perf_counter()
            client.post(f"{url}/predict", content=body, headers=headers).raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
    out.sort()
    return {"p50_ms": statistics.median(out), "p99_ms": out[int(len(out) * 0.99) - 1]}


def bench_cache(redis_url: str, seconds: int, script: Path, model_ms: int = 0) -> dict[str, Any]:
    """Hits against the uncached server; `model_ms` plays a slower model on both sides."""
    results: dict[str, Any] = {}
    env = {
        "MLSP_MODEL_DIR": str(MODELS / "iris-svc"),
        "MLSP_SIMULATED_LATENCY_MS": str(model_ms),
    }
    cached = {"MLSP_REDIS_URL": redis_url}
    for name, module, extra in (
        ("prediction_cache", "patterns.prediction_cache.api", cached),
        (
            "redis_only",
            "patterns.prediction_cache.api",
            {**cached, "MLSP_CACHE_LOCAL_BYTES": "0"},
        ),
        ("web_single", "patterns.web_single.app", {}),
    ):
        proc, url = start(module, {**env, **extra})
        try:
            wrk(f"{url}/predict", 8, min(2, seconds), script)  # warm-up (and the one MISS)
            if name != "web_single":
                probe = httpx.post(f"{url}/predict", content=BODY)
                assert probe.headers["x-cache"] == "HIT", probe.headers
            results[name] = {f"c{c}": wrk(f"{url}/predict", c, seconds, script) for c in (8, 64)}
        finally:
            stop(proc)
    hit, base = results["prediction_cache"]["c8"], results["web_single"]["c8"]
    results["hit_vs_uncached_rps"] = hit["rps"] / base["rps"]
    results["redis_hit_vs_uncached_rps"] = results["redis_only"]["c8"]["rps"] / base["rps"]
    results["redis_hit_p99_ms_c8"] = results["redis_only"]["c8"]["p99_ms"]
    results["hit_p99_ms_c8"] = hit["p99_ms"]
    results["model_ms"] = model_ms
    return results


def through_proxy(
    services: dict[str, tuple[str, dict[str, str]]],
    proxy: str,
    proxy_env: Callable[[dict[str, str]], dict[str, str]],
    n: int,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Start each service (name -> module, env), then the proxy in front of them (its env
    from their URLs); latencies of each service called directly, then of the proxy."""
    with ExitStack() as stack:
        urls = {}
        for name, (module, env) in services.items():
            proc, urls[name] = start(module, env)
            stack.callback(stop, proc)
        proc, proxy_url = start(proxy, proxy_env(urls))
        stack.callback(stop, proc)
        return {name: latencies(url, n) for name, url in urls.items()}, latencies(proxy_url, n)


def bench_parallel(n: int, backend_ms: int) -> dict[str, Any]:
    classes = ("setosa", "versicolor", "virginica")
    backends = {
        c: (
            "patterns.parallel.backend",
            {
                "MLSP_MODEL_DIR": str(MODELS / f"iris-ovr-{c}"),
                "MLSP_SIMULATED_LATENCY_MS": str(backend_ms),
            },
        )
        for c in classes
    }

    def config(urls: dict[str, str]) -> dict[str, str]:
        configured = [{"name": c, "url": urls[c], "timeout": 2.0} for c in classes]
        return {"MLSP_BACKENDS": json.dumps(configured)}

    direct, fanned = through_proxy(backends, "patterns.parallel.proxy", config, n)
    slowest = max(d["p50_ms"] for d in direct.values())
    return {
        "backend_ms": backend_ms,
        "backends": direct,
        "proxy": fanned,
        "slowest_backend_p50_ms": slowest,
        "sum_of_backends_p50_ms": sum(d["p50_ms"] for d in direct.values()),
        "overhead_ms": fanned["p50_ms"] - slowest,
    }


def bench_serial(n: int) -> dict[str, Any]:
    stages = {
        name: ("patterns.serial.stage", {"MLSP_MODEL_DIR": str(MODELS / model)})
        for name, model in (("outlier", "iris-ocsvm"), ("classify", "iris-svc"))
    }

    def config(urls: dict[str, str]) -> dict[str, str]:
        configured = [
            {"name": "outlier", "url": urls["outlier"], "stop_below": 0.0},
            {"name": "classify", "url": urls["classify"]},
        ]
        return {"MLSP_STAGES": json.dumps(configured)}

    direct, chained = through_proxy(stages, "patterns.serial.proxy", config, n)
    total = sum(d["p50_ms"] for d in direct.values())
    return {
        "stages": direct,
        "proxy": chained,
        "sum_of_stages_p50_ms": total,
        "per_hop_overhead_ms": (chained["p50_ms"] - total) / len(direct),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--backend-ms", type=int, default=20)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results/composition.json")
    args = parser.parse_args(argv)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(
            f"wrk.method = 'POST'\nwrk.body = '{BODY.decode()}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
        )
        script = Path(fh.name)
    try:
        results: dict[str, Any] = {
            "prediction_cache": bench_cache(args.redis, args.seconds, script),
            "prediction_cache_5ms_model": bench_cache(args.redis, args.seconds, script, 5),
        }
    finally:
        script.unlink()
    results["parallel"] = bench_parallel(args.requests, args.backend_ms)
    results["serial"] = bench_serial(args.requests)

    for key, what in (
        ("prediction_cache", "iris-svc (about 25 us per call)"),
        ("prediction_cache_5ms_model", "a 5 ms model (MLSP_SIMULATED_LATENCY_MS=5)"),
    ):
        c = results[key]
        print(f"\nprediction_cache, one repeated row (a HIT), {what}, {args.seconds} s per run")
        print(f"  {'':18} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for name in ("prediction_cache", "redis_only", "web_single"):
            for conns, r in c[name].items():
                print(
                    f"  {name:18} {conns[1:]:>5} {r['rps']:>9.0f} "
                    f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
                )
        print(
            f"  hits vs uncached web_single (8 conns): {c['hit_vs_uncached_rps']:.0%} of its "
            f"req/s (local tier), {c['redis_hit_vs_uncached_rps']:.0%} (Redis only)"
        )
    c = results["prediction_cache"]
    p = results["parallel"]
    print(f"\nparallel, three backends at {p['backend_ms']} ms each, one request at a time")
    print(
        f"  proxy p50 {p['proxy']['p50_ms']:.1f} ms; slowest backend "
        f"{p['slowest_backend_p50_ms']:.1f} ms; sum of the three "
        f"{p['sum_of_backends_p50_ms']:.1f} ms"
    )
    print(f"  fan-out overhead over the slowest backend: {p['overhead_ms']:.2f} ms")
    s = results["serial"]
    print("\nserial, outlier -> classify, one request at a time")
    print(
        f"  proxy p50 {s['proxy']['p50_ms']:.2f} ms; stages called directly "
        f"{s['sum_of_stages_p50_ms']:.2f} ms in sum"
    )
    print(f"  overhead per hop: {s['per_hop_overhead_ms']:.2f} ms")
    targets = {
        "cache_hit_p99<=2ms@8": c["hit_p99_ms_c8"] <= 2.0,
        "redis_hit_p99<=2ms@8": c["redis_hit_p99_ms_c8"] <= 2.0,
    }
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "targets": targets}, indent=2) + "\n")
    bad = sum(
        r["non_2xx"] + r["socket_errors"]
        for n in ("prediction_cache", "web_single")
        for r in c[n].values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
