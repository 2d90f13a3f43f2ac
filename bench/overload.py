"""`make bench`, part 4: overload. The synchronous server at ten times its capacity, shedding by
queueing time (MLSP_QUEUE_TARGET_MS, serving/admission.py) against the same server without it,
in the same run.

Capacity is the concurrency at which the server is saturated (64 connections, as bench/run.py
measures it); the overload is ten times that many connections, each sending its next request
as soon as the last is answered (after Retry-After when it was shed, as the project's clients
do). We report goodput (200s per second) and the p50/p99 latency of the admitted (200)
requests, for each server and as ratios shedding / baseline: shedding should keep most of the
goodput and cut the admitted requests' p99, which without it grows with the queue. The load
generator is this process (asyncio, keep-alive raw HTTP/1.1: wrk reports no latency per
status), on core 1; the server on core 0.

    python -m bench.overload [--seconds 10] [--connections 640]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from bench.patterns import BODY, MODEL, start, stop
from bench.run import ROOT

SERVER = "patterns.synchronous.server"
SHEDDING = {"MLSP_QUEUE_TARGET_MS": "5", "MLSP_QUEUE_INTERVAL_MS": "100"}


async def _client(host: str, port: int, until: float, out: list[tuple[int, float]]) -> None:
    request = (
        b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            sent = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            code = int(head[9:12])
            out.append((code, time.perf_counter() - sent))
            if b"connection: close" in head.lower():
                break
            if code == 503:  # a client that is told when to come back does (Retry-After: 1)
                await asyncio.sleep(1.0)
    except (OSError, asyncio.IncompleteReadError):
        out.append((0, 0.0))
    finally:
        writer.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def drive(url: str, connections: int, seconds: float) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    out: list[tuple[int, float]] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_client(host, int(port), until, out) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    admitted = [lat for code, lat in out if code == 200]
    return {
        "goodput_rps": len(admitted) / elapsed,
        "shed_rps": sum(code == 503 for code, _ in out) / elapsed,
        "errors": float(sum(code not in (200, 503) for code, _ in out)),
        "admitted_p50_ms": _pct(admitted, 0.50),
        "admitted_p99_ms": _pct(admitted, 0.99),
    }


def run(connections: int, seconds: float, env: dict[str, str]) -> dict[str, float]:
    proc, url = start(SERVER, {"MLSP_MODEL_DIR": str(MODEL), **env})
    try:
        asyncio.run(drive(url, 8, 1.0))  # warm-up
        return asyncio.run(drive(url, connections, seconds))
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=640, help="10x the 64 of bench.run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results/overload.json")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1})  # the load generator on core 1, the server on core 0
    results = {
        "baseline": run(args.connections, args.seconds, {}),
        "shedding": run(args.connections, args.seconds, SHEDDING),
    }
    base, shed = results["baseline"], results["shedding"]
    ratios = {
        "goodput": shed["goodput_rps"] / base["goodput_rps"],
        "admitted_p99": shed["admitted_p99_ms"] / base["admitted_p99_ms"],
    }
    print(f"\nPOST /predict at {args.connections} connections, {args.seconds} s per run")
    print(
        f"{'server':10} {'goodput/s':>10} {'shed/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:10} {r['goodput_rps']:>10.0f} {r['shed_rps']:>8.0f} "
            f"{r['admitted_p50_ms']:>8.1f} {r['admitted_p99_ms']:>8.1f} {r['errors']:>7.0f}"
        )
    print(
        f"shedding / baseline: goodput {ratios['goodput']:.0%}, "
        f"p99 of admitted requests {ratios['admitted_p99']:.0%}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"results": results, "ratios": ratios, "connections": args.connections}) + "\n"
    )
    return 1 if base["errors"] or shed["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
