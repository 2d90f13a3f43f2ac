"""`make bench`: web_single /predict against a raw-ASGI baseline, in the same run.

Each server is one process pinned to core 0; wrk runs pinned to core 1 (needs 2 cores). Both
serve the same iris-svc ONNX session with the same request; we report req/s, p50 and p99 at 8
and 64 connections and the ratio web_single / raw. Results also go to bench-results/.

    python -m bench.run [--seconds 10] [--model-dir data/models/iris-svc]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from patterns.runner import answers, free_port

ROOT = Path(__file__).resolve().parent.parent
BODY = '{"instances":[[5.1,3.5,1.4,0.2]]}'
SERVERS = {"web_single": "patterns.web_single.app", "raw_asgi": "bench.raw_asgi"}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(text: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            raise RuntimeError(f"no p{pct} in wrk output:\n{text}")
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(g) for g in errors.groups())) if errors else 0.0,
    }


def wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    cmd = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(seconds)}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(out.stdout)


def bench_server(
    name: str, module: str, model_dir: Path, seconds: int, script: Path
) -> dict[str, dict[str, float]]:
    port = free_port()
    env = {
        **os.environ,
        "MLSP_MODEL_DIR": str(model_dir),
        "MLSP_PORT": str(port),
        "MLSP_PATTERN": "web_single",
        "MLSP_DRAIN_DELAY_SECONDS": "0",
        "PYTHONPATH": str(ROOT),
    }
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finally, read on failure
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", module],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if answers(f"{url}/readyz"):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"{name} did not start:\n{log.read().decode()[-2000:]}")
            time.sleep(0.1)
        wrk(f"{url}/predict", 8, min(2, seconds), script)  # warm-up
        return {f"c{c}": wrk(f"{url}/predict", c, seconds, script) for c in (8, 64)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "data/models/iris-svc")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results/web_single.json")
    args = parser.parse_args(argv)
    if not (args.model_dir / "model.json").is_file():
        print(f"no model in {args.model_dir}: run `make models` first", file=sys.stderr)
        return 2
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: `apt-get install wrk util-linux`", file=sys.stderr)
            return 2
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(
            f"wrk.method = 'POST'\nwrk.body = '{BODY}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
        )
        script = Path(fh.name)
    results = {
        name: bench_server(name, mod, args.model_dir, args.seconds, script)
        for name, mod in SERVERS.items()
    }
    script.unlink()

    print(
        f"\nPOST /predict, one iris-svc row; server on core 0, wrk on core 1, "
        f"{args.seconds:.0f} s per run"
    )
    print(f"{'server':12} {'conns':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, runs in results.items():
        for conns, r in runs.items():
            print(
                f"{name:12} {conns[1:]:>5} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} "
                f"{r['p99_ms']:>8.2f} {r['non_2xx'] + r['socket_errors']:>7.0f}"
            )
    ratios = {
        c: results["web_single"][c]["rps"] / results["raw_asgi"][c]["rps"] for c in ("c8", "c64")
    }
    for c, ratio in ratios.items():
        print(f"web_single / raw_asgi at {c[1:]} connections: {ratio:.0%}")
    w8 = results["web_single"]["c8"]
    targets = {
        "rps>=10000@8": w8["rps"] >= 10_000,
        "p99<=3ms@8": w8["p99_ms"] <= 3.0,
        "ratio>=40%@8": ratios["c8"] >= 0.40,
    }
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "results": results,
                "ratios": ratios,
                "targets": targets,
                "seconds": args.seconds,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    errors = sum(
        r["non_2xx"] + r["socket_errors"] for runs in results.values() for r in runs.values()
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
