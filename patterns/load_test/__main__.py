"""`python -m patterns.load_test`: stepped locust runs, an SLO gate, a capacity search.

    python -m patterns.load_test run web_single                  # 10 -> 50 -> 100 users, 20 s each
    python -m patterns.load_test run web_single --steps 2:5,5:5 --slo patterns/load_test/slo.yaml
    python -m patterns.load_test report --slo patterns/load_test/slo.yaml RESULT
    python -m patterns.load_test capacity web_single --slo patterns/load_test/slo.yaml

The target: without --host the pattern is started locally by the runner; with --host that
address; with --kubernetes a `kubectl port-forward` to the deployed pattern's Service.
Results go to bench-results/load_test/<pattern>-<time>/ (or --out), printed at the end.

Exit codes: 0 done, SLO met (or none given); 1 SLO breached (or the run aborted on a
sustained breach; capacity: no level found, because not even the first probe held or
--max-probes ran out before a level held twice); 2 bad usage or a bad SLO file (the message
names the field); 3 the load test could not be made (target not ready, the port-forward
failed, locust failed or ran past its time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from patterns.declare import Pattern
from patterns.load_test import capacity as capacity_mod
from patterns.load_test import slo as slo_mod
from patterns.load_test.figures import DEFAULT_STEPS, Step, describe, environment, parse_steps
from patterns.load_test.run import (
    BREACH,
    FAILED,
    OK,
    ROOT,
    USAGE,
    LoadTestError,
    print_summary,
    run_locust,
    verdict,
    wait_ready,
)
from patterns.load_test.slo import Slo, SloError, fmt
from patterns.runner import RunnerError

READY_TIMEOUT = 60.0


class UsageError(ValueError):
    pass


@contextlib.contextmanager
def target(pattern_id: str, host: str | None, kubernetes: bool) -> Iterator[str]:
    """The base URL to load: --host, a port-forward, or the pattern started locally."""
    if host:
        yield host.rstrip("/")
        return
    if kubernetes:
        from kube.deploy import DeployError, port_forward

        with contextlib.ExitStack() as stack:
            try:
                url = stack.enter_context(port_forward(pattern_id))
            except (DeployError, OSError) as exc:
                raise LoadTestError(f"--kubernetes: {exc}") from exc
            yield url
        return
    from patterns.runner import start_pattern

    with start_pattern(pattern_id) as running:
        yield running.url(running.pattern.entry)


def locustfile_of(pattern_id: str, given: str | None) -> Path:
    path = Path(given) if given else ROOT / "patterns" / pattern_id / "locustfile.py"
    if not path.is_file():
        raise UsageError(f"no locustfile at {path}")
    return path


def out_dir(given: str | None, name: str) -> Path:
    if given:
        return Path(given)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return ROOT / "bench-results" / "load_test" / f"{name}-{stamp}"


def load_slo(path: str | None) -> Slo | None:
    return slo_mod.load(Path(path)) if path else None


def print_verdict(slo: Slo, summary: dict[str, Any]) -> bool:
    """Each threshold with its measured value; True when all hold (and no early abort)."""
    from patterns.load_test.run import figures_of

    for endpoint, text, actual, held in slo_mod.verdicts(slo, figures_of(summary)):
        got = "no requests" if actual is None else fmt(float(actual))
        print(f"  {'ok    ' if held else 'BREACH'} {endpoint:20} {text:18} measured {got}")
    passed = bool(verdict(slo, None, summary)["passed"])
    if summary.get("aborted"):
        print(f"  BREACH the run stopped early: {summary['aborted']}")
    print("SLO met" if passed else "SLO breached")
    return passed


def load_pattern(name: str) -> Pattern:
    from patterns.runner import RunnerError, load

    try:
        return load(name)
    except RunnerError as exc:
        raise UsageError(str(exc)) from exc


def cmd_run(args: argparse.Namespace) -> int:
    pattern = load_pattern(args.pattern)
    steps = parse_steps(args.steps)
    slo = load_slo(args.slo)
    locustfile = locustfile_of(pattern.id, args.locustfile)
    out = out_dir(args.out, pattern.id)
    slo_path = Path(args.slo) if args.slo else None
    with target(pattern.id, args.host, args.kubernetes) as url:
        wait_ready(url, args.ready_timeout)
        print(f"load: {' -> '.join(f'{s.users} users {s.seconds} s' for s in steps)} on {url}")
        summary = run_locust(locustfile, url, steps, out, slo_path, pattern=pattern.id, slo=slo)
    print_summary(summary)
    if slo is None:
        return OK
    return OK if print_verdict(slo, summary) else BREACH


def cmd_report(args: argparse.Namespace) -> int:
    slo = slo_mod.load(Path(args.slo))
    path = Path(args.result)
    if path.is_dir():
        path = path / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a load test summary ({exc})") from exc
    if not isinstance(summary, dict) or "totals" not in summary:
        raise UsageError(f"{path}: not a load test summary (no totals)")
    print(f"{path}: {summary.get('pattern')} on {summary.get('host')}")
    print(f"machine: {describe(summary.get('environment', {}))}")
    return OK if print_verdict(slo, summary) else BREACH


def cmd_capacity(args: argparse.Namespace) -> int:
    pattern = load_pattern(args.pattern)
    slo = slo_mod.load(Path(args.slo))
    locustfile = locustfile_of(pattern.id, args.locustfile)
    out = out_dir(args.out, f"{pattern.id}-capacity")
    with target(pattern.id, args.host, args.kubernetes) as url:
        wait_ready(url, args.ready_timeout)
        count = 0

        def probe(users: int) -> dict[str, Any]:
            nonlocal count
            count += 1
            return run_locust(
                locustfile,
                url,
                (Step(users, args.seconds),),
                out / f"probe-{count:02d}-{users}u",
                Path(args.slo),
                pattern=pattern.id,
                slo=slo,
            )

        shown = Path(args.slo).resolve()
        shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
        print(f"capacity of {pattern.id} on {url}: {args.seconds} s probes, SLO {shown}")
        found = capacity_mod.search(
            probe,
            slo,
            start=args.start,
            max_users=args.max_users,
            max_probes=args.max_probes,
        )
    env = environment(ROOT)
    result = {
        "pattern": pattern.id,
        "host": url,
        "slo": args.slo,
        "users": found.users,
        "rps": found.rps,
        "capped": found.capped,
        "exhausted": found.exhausted,
        "attempts": [vars(a) for a in found.attempts],
        "environment": env,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    held = [a for a in found.attempts if a.ok]
    if found.users is None and not found.exhausted:
        print("sustainable: none: the SLO breaks at the first probe")
    elif found.users is None:
        best = max(held, key=lambda a: a.users, default=None)
        once = f"; held once at most: {best.users} users, {best.rps:.0f} rps" if best else ""
        print(f"sustainable: unknown: no level confirmed twice in {args.max_probes} probes{once}")
    else:
        more = f" (at least: {args.max_users} users held)" if found.capped else ""
        print(f"sustainable: {found.rps:.0f} rps with {found.users} users{more}, confirmed twice")
    print(f"machine: {describe(env)}")
    print(f"results: {out / 'capacity.json'}")
    return OK if found.users is not None else BREACH


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m patterns.load_test",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    def targeted(name: str, help_text: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_text)
        s.add_argument("pattern", help="the pattern to load (its locustfile, its server)")
        s.add_argument("--host", help="target base URL (default: start the pattern locally)")
        s.add_argument(
            "--kubernetes",
            action="store_true",
            help="target the deployed pattern through `kubectl port-forward` (make deploy first)",
        )
        s.add_argument("--locustfile", help="default: patterns/<pattern>/locustfile.py")
        s.add_argument("--out", help="results folder (default: bench-results/load_test/...)")
        s.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT)
        return s

    r = targeted("run", "stepped load; CSV, JSON summary and HTML report")
    r.add_argument("--steps", default=DEFAULT_STEPS, help="USERS:SECONDS,... (%(default)s)")
    r.add_argument("--slo", help="SLO file: exit 1 on a breach, stop early if it says so")
    c = targeted("capacity", "raise load until the SLO breaks, bisect, confirm twice")
    c.add_argument("--slo", default=str(ROOT / "patterns" / "load_test" / "slo.yaml"))
    c.add_argument("--seconds", type=int, default=10, help="length of each probe")
    c.add_argument("--start", type=int, default=5, help="users of the first probe")
    c.add_argument("--max-users", type=int, default=200)
    c.add_argument("--max-probes", type=int, default=16)
    rep = sub.add_parser("report", help="check a run's summary against an SLO file")
    rep.add_argument("--slo", required=True)
    rep.add_argument("result", help="a run's summary.json or its folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "report":
            return cmd_report(args)
        if not 1 <= args.seconds <= 600 or not 1 <= args.max_users <= 1000:
            raise UsageError("--seconds must be 1..600 and --max-users 1..1000")
        return cmd_capacity(args)
    except SloError as exc:
        print(f"error: SLO file: {exc}", file=sys.stderr)
        return USAGE
    except (UsageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except (LoadTestError, RunnerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
