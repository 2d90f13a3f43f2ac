"""`make bench`, circuit_breaker: what the breaker's hop costs, and how fast the open state
answers, each against the primary measured directly in the same run.

- overhead: wrk (core 1, 8 connections, one iris row) against the primary (iris-svc, core 0)
  directly, then through the proxy (core 0 too, the breaker closed). Per hop = proxy p50 -
  primary p50. Target: at most 1 ms. The same one request at a time (1 connection) is printed
  beside it: at 8 connections both processes share one core, so the difference also holds
  the queueing behind 8 requests' work in two processes.
- open state: the proxy in front of a port nothing listens on, its breaker opened by the
  warm-up (five failures in a row) and kept open for the run (MLSP_OPEN_SECONDS=3600): every
  answer is a fallback, from the recent answers (the repeated row; cached while the primary
  was up in a first proxy run) or, with MLSP_FALLBACK_CACHE_BYTES=0, from iris-lr in the
  process. Reported: p99 at 8 connections, and its ratio to the primary's own p99. Target: the
  fallback p99 is no worse than the primary's (no hop, no queue behind a dead dependency).

    python -m bench.circuit_breaker [--seconds 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx

from bench.common import finish, post_script
from bench.patterns import BODY, start, stop
from bench.run import ROOT, wrk
from patterns.procs import free_port

MODELS = ROOT / "data/models"
PRIMARY = "patterns.circuit_breaker.primary"
PROXY = "patterns.circuit_breaker.proxy"


def script() -> Path:
    return post_script(BODY)


def measure(url: str, seconds: int, lua: Path, connections: int = 8) -> dict[str, float]:
    wrk(f"{url}/predict", connections, min(2, seconds), lua)  # warm-up
    return wrk(f"{url}/predict", connections, seconds, lua)


def proxy_env(primary_url: str, **extra: str) -> dict[str, str]:
    return {
        "MLSP_PRIMARY_URL": primary_url,
        "MLSP_MODEL_DIR": str(MODELS / "iris-lr"),
        "MLSP_OPEN_SECONDS": "3600",
        **extra,
    }


def open_state(seconds: int, lua: Path, **extra: str) -> dict[str, Any]:
    """The proxy with nothing behind it: the breaker opens in the warm-up and stays open."""
    proc, url = start(PROXY, proxy_env(f"http://127.0.0.1:{free_port()}", **extra))
    try:
        for _ in range(5):
            httpx.post(f"{url}/predict", content=BODY, timeout=5)
        state = httpx.get(f"{url}/breaker", timeout=5).json()["state"]
        if state != "open":
            raise RuntimeError(f"the breaker is {state}, not open, after five failures")
        run = measure(url, seconds, lua)
        sample = httpx.post(f"{url}/predict", content=BODY, timeout=5).json()
        return {**run, "source": sample["source"]}
    finally:
        stop(proc)


def bench(seconds: int) -> dict[str, Any]:
    lua = script()
    try:
        primary, primary_url = start(PRIMARY, {"MLSP_MODEL_DIR": str(MODELS / "iris-svc")})
        try:
            direct = measure(primary_url, seconds, lua)
            direct_c1 = measure(primary_url, seconds, lua, 1)
            proxy, url = start(PROXY, proxy_env(primary_url))
            try:
                through = measure(url, seconds, lua)
                through_c1 = measure(url, seconds, lua, 1)
            finally:
                stop(proxy)
        finally:
            stop(primary)
        fallback_model = open_state(seconds, lua, MLSP_FALLBACK_CACHE_BYTES="0")
        # the recent answers: a proxy that saw the primary answer the row, then lost it
        primary, primary_url = start(PRIMARY, {"MLSP_MODEL_DIR": str(MODELS / "iris-svc")})
        proxy, url = start(PROXY, proxy_env(primary_url))
        try:
            httpx.post(f"{url}/predict", content=BODY, timeout=5)
            stop(primary)
            for _ in range(5):
                httpx.post(f"{url}/predict", content=BODY, timeout=5)
            cached: dict[str, Any] = {**measure(url, seconds, lua), "source": "cache"}
            cached["state"] = httpx.get(f"{url}/breaker", timeout=5).json()["state"]
        finally:
            stop(proxy)
    finally:
        lua.unlink()
    return {
        "primary": direct,
        "proxy_closed": through,
        "overhead_per_hop_ms": through["p50_ms"] - direct["p50_ms"],
        "primary_c1": direct_c1,
        "proxy_closed_c1": through_c1,
        "overhead_per_hop_c1_ms": through_c1["p50_ms"] - direct_c1["p50_ms"],
        "open_fallback_model": fallback_model,
        "open_cache": cached,
        "open_p99_vs_primary_p99": {
            "fallback_model": fallback_model["p99_ms"] / direct["p99_ms"],
            "cache": cached["p99_ms"] / direct["p99_ms"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results/circuit_breaker.json")
    args = parser.parse_args(argv)
    r = bench(args.seconds)
    print(f"\ncircuit_breaker, one iris row, 8 connections, {args.seconds} s per run")
    print(f"  {'':22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("primary", "proxy_closed", "open_cache", "open_fallback_model"):
        x = r[name]
        print(f"  {name:22} {x['rps']:>9.0f} {x['p50_ms']:>8.2f} {x['p99_ms']:>8.2f}")
    print(f"  overhead per hop (closed): {r['overhead_per_hop_ms']:.2f} ms")
    print(
        f"  one request at a time: primary p50 {r['primary_c1']['p50_ms']:.2f} ms, through the "
        f"proxy {r['proxy_closed_c1']['p50_ms']:.2f} ms, per hop "
        f"{r['overhead_per_hop_c1_ms']:.2f} ms"
    )
    bad = sum(
        r[n]["non_2xx"] + r[n]["socket_errors"]
        for n in ("primary", "proxy_closed", "open_cache", "open_fallback_model")
    )
    ratios = r["open_p99_vs_primary_p99"]
    targets = {
        "overhead<=1ms/hop@8": r["overhead_per_hop_ms"] <= 1.0,
        "open_p99<=primary_p99@8": max(ratios.values()) <= 1.0,
        "open_answers_degraded": r["open_cache"]["state"] == "open"
        and r["open_fallback_model"]["source"] == "fallback_model",
        "no_errors": bad == 0,
    }
    return finish(r, targets, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
