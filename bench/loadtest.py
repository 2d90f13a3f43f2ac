"""`make loadtest`: run a pattern's locustfile headless, bounded in users and time.

Without --host the pattern is started locally by the runner; with --host that address is used;
with --kubernetes a `kubectl port-forward` to the deployed pattern's Service. Results:
bench-results/.

    python -m bench.loadtest web_single --seconds 30 --users 20
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from patterns.runner import load, start_pattern

ROOT = Path(__file__).resolve().parent.parent


def locust(pattern_id: str, host: str, seconds: int, users: int) -> int:
    out = ROOT / "bench-results" / f"locust-{pattern_id}"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "patterns" / pattern_id / "locustfile.py"),
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(max(1, users // 5)),
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(out),
        "--only-summary",
    ]
    return subprocess.run(cmd, cwd=ROOT, timeout=seconds + 120).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pattern")
    parser.add_argument("--host", help="target base URL (default: start the pattern locally)")
    parser.add_argument(
        "--kubernetes",
        action="store_true",
        help="target the deployed pattern through `kubectl port-forward` (make deploy first)",
    )
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args(argv)
    pattern = load(args.pattern)
    if args.host:
        return locust(pattern.id, args.host, args.seconds, args.users)
    if args.kubernetes:
        from kube.deploy import port_forward

        with port_forward(pattern.id) as url:
            return locust(pattern.id, url, args.seconds, args.users)
    with start_pattern(pattern.id) as run:
        return locust(pattern.id, run.url(pattern.entry), args.seconds, args.users)


if __name__ == "__main__":
    sys.exit(main())
