"""The local runner: start a pattern's declared processes and their dependencies, and keep
them running the way Kubernetes would (patterns/supervisor.py).

    python -m patterns.runner run web_single        # foreground; Ctrl-C stops everything
    python -m patterns.runner run sync_async --env worker:MLSP_SIMULATED_LATENCY_MS=2000
    python -m patterns.runner status async          # from another terminal: each process
    python -m patterns.runner url async redis       # a process's URL, Redis's or MLflow's too
    python -m patterns.runner kill async worker     # SIGKILL (a crash): restarted with backoff
    python -m patterns.runner stop async worker     # held down (scaled to 0) until `start`
    python -m patterns.runner list                  # every pattern and its processes
    python -m patterns.runner resolve async         # alias -> pattern id

Under `run`, the first serving process listens on --port (8000) and the next ones on the
following ports, in declaration order; a busy port is an error naming it. A long-running
process that dies is restarted with backoff while the others keep serving; a Job's process
(synchronous's client) that exits 0 has completed and stops nothing.

Dependencies: Redis is the run's own `redis-server` (AOF on, in a scratch folder, gone when the
run stops) unless REDIS_URL names one, so a local run never writes into anybody's database by
surprise; PostgreSQL and MLflow are used where their URL answers, else started where the
program is installed, else the run fails saying how to get them. The runner prints which it
uses.

A variable a process declares that is also set in your environment takes your value, in every
process that declares it (`MLSP_MODEL_DIR=data/models/iris-rf make run PATTERN=web_single`);
`--env PROCESS:NAME=VALUE` sets one variable for one process only.

Tests use `start_pattern(...)` as a context manager: every process is started, waited on until
its /readyz answers 200, and stopped (SIGTERM, then SIGKILL) on exit; unsupervised unless asked,
so a test that kills a process sees it stay dead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from patterns import alerting
from patterns.declare import Pattern, Process

# re-exported: tests, benchmarks and the examples import these from the runner
from patterns.procs import RunnerError as RunnerError
from patterns.procs import answers as answers
from patterns.procs import free_port as free_port
from patterns.procs import port_open as port_open
from patterns.procs import tail as _tail
from patterns.procs import wait_ready as _wait
from patterns.supervisor import Restart, Stack, describe_exit

ROOT = Path(__file__).resolve().parent.parent
_TEMPLATE = re.compile(r"\{(\w+)(?::([\w.-]+))?\}")


def pattern_ids() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "patterns").glob("*/pattern.py"))


def _declared(pid: str) -> Pattern:
    pattern: Pattern = importlib.import_module(f"patterns.{pid}.pattern").PATTERN
    return pattern


def aliases() -> dict[str, str]:
    """alias -> pattern id, from the patterns' declarations (so only existing ones)."""
    return {alias: pid for pid in pattern_ids() for alias in _declared(pid).aliases}


def resolve(name: str) -> str:
    return aliases().get(name, name)


def load(name: str) -> Pattern:
    pid = resolve(name)
    if pid not in pattern_ids():
        known = ", ".join(f"{a}={t}" for a, t in aliases().items())
        raise RunnerError(
            f"unknown pattern {name!r}; known: {', '.join(pattern_ids())} (aliases: {known})"
        )
    return _declared(pid)


# --- dependencies -------------------------------------------------------------------------


def ensure_redis(stack: Stack) -> str:
    """REDIS_URL when set and reachable; else the run's own redis-server (AOF on, like the
    StatefulSet), supervised like any process of the pattern (`stop`/`kill` work on it)."""
    url = os.environ.get("REDIS_URL")
    if url:
        parts = urlsplit(url)
        if port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
            stack.say(f"redis: {url} (from REDIS_URL)")
            return url
        stack.say(f"redis: REDIS_URL={url} does not answer; starting the run's own")
    server = shutil.which("redis-server")
    if server is None:
        raise RunnerError(
            "redis-server is not installed: `apt-get install redis-server`, "
            "or set REDIS_URL to a Redis of your own (keys are prefixed mlsp:<pattern>:)"
        )
    port = free_port()
    data = stack.workdir / "redis"
    data.mkdir(exist_ok=True)
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data)]
    url = f"redis://127.0.0.1:{port}/0"
    proc = stack.spawn("redis", cmd, os.environ, stack.workdir / "redis.log", url=url)
    _wait(lambda: port_open("127.0.0.1", port), "redis-server", 10, proc)
    stack.say(f"redis: {url} (this run's own redis-server, AOF on, removed when it stops)")
    return url


def ensure_postgres(stack: Stack) -> str:
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parts = urlsplit(url)
    if port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        stack.say(f"postgres: {url}")
        return url
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    initdb = shutil.which("initdb") or (str(bins[-1]) if bins else None)
    if initdb is None or os.geteuid() == 0:
        raise RunnerError(
            f"PostgreSQL is not reachable at {url}. Start one (`apt-get install postgresql && "
            "pg_ctlcluster --skip-systemctl-redirect 15 main start`) or set DATABASE_URL"
            + (" (the runner does not start PostgreSQL as root)" if initdb else "")
        )
    pgdata, port = stack.workdir / "pgdata", free_port()
    done = subprocess.run(
        [initdb, "-D", str(pgdata), "-U", "postgres", "--auth=trust"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RunnerError(f"initdb failed: {done.stderr[-2000:]}")
    cmd = [str(Path(initdb).with_name("postgres")), "-D", str(pgdata), "-p", str(port)]
    cmd += ["-k", str(stack.workdir), "-c", "listen_addresses=127.0.0.1"]
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    proc = stack.spawn("postgres", cmd, os.environ, stack.workdir / "postgres.log", url=url)
    _wait(lambda: port_open("127.0.0.1", port), "postgres", 30, proc)
    stack.say(f"postgres: {url} (this run's own, removed when it stops)")
    return url


def ensure_mlflow(stack: Stack, data_dir: Path) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("http"):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{uri.rstrip('/')}/health", timeout=2).status_code == 200:
                stack.say(f"mlflow: {uri} (from MLFLOW_TRACKING_URI)")
                return uri
    store = (data_dir / "mlflow").resolve()
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = stack.workdir / "mlflow.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(store / "artifacts"), "--workers", "1"]
    url = f"http://127.0.0.1:{port}"
    proc = stack.spawn("mlflow", cmd, os.environ, log, url=url)
    _wait(lambda: answers(f"{url}/health"), "mlflow server", 90, proc, log)
    stack.say(f"mlflow: {url} (a server over {store})")
    return url


ENSURE: dict[str, Callable[[Stack, Path, alerting.Context], str]] = {
    "redis": lambda stack, _data, _ctx: ensure_redis(stack),
    "postgres": lambda stack, _data, _ctx: ensure_postgres(stack),
    "mlflow": lambda stack, data, _ctx: ensure_mlflow(stack, data),
    # started in this order when a pattern needs both: Prometheus notifies the Alertmanager
    "alertmanager": alerting.ensure_alertmanager,
    "prometheus": alerting.ensure_prometheus,
}


# --- patterns -----------------------------------------------------------------------------


def _wait_exit(proc: subprocess.Popen[bytes], what: str, timeout: float, log: Path) -> None:
    """Wait for an init process; raise unless it exits 0 in time."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    if code == 0:
        return
    state = (
        f"still running after {timeout:.0f} s"
        if code is None
        else f"exited with {describe_exit(code)}"
    )
    raise RunnerError(f"init process {what} {state}\n{_tail(log)}")


@dataclass
class RunningPattern:
    pattern: Pattern
    urls: dict[str, str]
    deps: dict[str, str]
    logs: dict[str, Path]
    stack: Stack

    def url(self, process: str | None = None) -> str:
        return self.urls[process] if process else next(iter(self.urls.values()))

    def proc(self, process: str) -> subprocess.Popen[bytes]:
        return dict(self.stack.procs)[process]

    def kill(self, process: str) -> None:
        """SIGKILL one of the pattern's processes (a crash, no shutdown) and reap it."""
        proc = self.proc(process)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)


def render_env(
    proc: Process,
    *,
    pattern: Pattern,
    ports: Mapping[str, int],
    deps: Mapping[str, str],
    data_dir: Path,
    workdir: Path | None = None,
) -> dict[str, str]:
    def fill(match: re.Match[str]) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "model" and arg:
            path = (data_dir / "models" / arg).resolve()
            if not (path / "model.json").is_file():
                raise RunnerError(
                    f"model {arg} is not trained: run `make models` (looked in {path})"
                )
            return str(path)
        if kind == "url" and arg:
            return f"http://127.0.0.1:{ports[arg]}"
        if kind in deps:
            return deps[kind]
        if kind == "data":
            return str(data_dir.resolve())
        if kind == "workdir" and workdir is not None:
            return str(workdir.resolve())
        raise RunnerError(f"{pattern.id}/{proc.name}: unknown template {match.group(0)}")

    return {k: _TEMPLATE.sub(fill, v) for k, v in proc.env.items()}


def serving(pattern: Pattern) -> list[Process]:
    """The processes that listen, in declaration order (the order of their ports)."""
    return [p for p in pattern.processes if p.port is not None and not p.init]


def assign_ports(pattern: Pattern, first_port: int | None) -> dict[str, int]:
    """first_port, first_port + 1, ... in declaration order (a busy one is an error naming
    it, never a silent move); free ports when no first port is asked for (tests)."""
    ports: dict[str, int] = {}
    for i, proc in enumerate(serving(pattern)):
        if first_port is None:
            ports[proc.name] = free_port()
            continue
        port = first_port + i
        if port_open("127.0.0.1", port, timeout=0.2):
            raise RunnerError(
                f"port {port} ({pattern.id}/{proc.name}) is in use: stop what listens there "
                f"(`ss -ltnp 'sport = :{port}'` shows it) or pass another --port"
            )
        ports[proc.name] = port
    return ports


def restart_policy(proc: Process) -> Restart:
    if proc.init:
        return "Never"
    return "OnFailure" if proc.kube_kind in {"Job", "CronJob"} else "Always"


def run_dir_for(pattern_id: str) -> Path:
    """Where a supervised run keeps state.json and takes control requests."""
    base = os.environ.get("MLSP_RUN_DIR") or str(Path(tempfile.gettempdir()) / "mlsp-run")
    return Path(base) / pattern_id


def read_state(run_dir: Path) -> dict[str, object] | None:
    """The state of the live supervised run kept in `run_dir`, or None."""
    path = run_dir / "state.json"
    try:
        state: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("runner_pid")
    try:
        os.kill(int(str(pid)), 0)
    except (ValueError, ProcessLookupError):
        return None
    except PermissionError:
        pass
    return state


@contextlib.contextmanager
def start_pattern(
    name: str,
    *,
    data_dir: Path | None = None,
    first_port: int | None = None,
    env: Mapping[str, str] | None = None,
    process_env: Mapping[str, Mapping[str, str]] | None = None,
    log_dir: Path | None = None,
    foreground: bool = False,
    supervise: bool = False,
    run_dir: Path | None = None,
    say: Callable[[str], None] | None = None,
    ready_timeout: float = 60.0,
    init_timeout: float = 180.0,
) -> Iterator[RunningPattern]:
    """Start every process of a pattern and wait until each /readyz answers 200. `env` is added
    to every process's environment, `process_env[name]` to one process's. With `supervise`,
    dead processes are restarted (patterns/supervisor.py) and the run can be controlled from
    another terminal (`status`, `stop`, `start`, `kill`)."""
    pattern = load(name)
    data_dir = data_dir or Path(os.environ.get("MLSP_DATA_DIR", ROOT / "data"))
    run_dir = (run_dir or run_dir_for(pattern.id)) if supervise else None
    if run_dir is not None and (live := read_state(run_dir)) is not None:
        raise RunnerError(f"{pattern.id} is already running (runner pid {live['runner_pid']})")
    workdir = Path(tempfile.mkdtemp(prefix=f"mlsp-{pattern.id}-"))
    log_dir = log_dir or workdir
    stack = Stack(workdir, ROOT, say=say or (lambda message: None), label=f"{pattern.id}/")
    try:
        ports = assign_ports(pattern, first_port)
        urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
        deps: dict[str, str] = {}
        for dep in sorted(pattern.needs, key=list(ENSURE).index):
            deps[dep] = ENSURE[dep](stack, data_dir, alerting.Context(pattern.id, urls, deps))
        logs: dict[str, Path] = {}
        if run_dir is not None:
            stack.supervise(run_dir)
        for proc in pattern.processes:
            proc_env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "MLSP_PATTERN": pattern.id,
                "MLSP_HOST": "127.0.0.1",
                "MLSP_DRAIN_DELAY_SECONDS": "0",
                "MLSP_DATA_DIR": str(data_dir.resolve()),
                **render_env(
                    proc,
                    pattern=pattern,
                    ports=ports,
                    deps=deps,
                    data_dir=data_dir,
                    workdir=workdir,
                ),
                **(env or {}),
            }
            if foreground:  # `MLSP_MODEL_DIR=... make run`: what the user sets wins
                proc_env.update({k: os.environ[k] for k in proc.env if k in os.environ})
            proc_env.update((process_env or {}).get(proc.name, {}))
            if proc.name in ports:
                proc_env["MLSP_PORT"] = str(ports[proc.name])
            logs[proc.name] = log_dir / f"{pattern.id}-{proc.name}.log"
            child = stack.spawn(
                proc.name,
                [sys.executable, "-m", proc.module],
                proc_env,
                None if foreground else logs[proc.name],
                restart=restart_policy(proc),
                url=urls.get(proc.name),
            )
            if proc.init:
                _wait_exit(child, f"{pattern.id}/{proc.name}", init_timeout, logs[proc.name])
        running = RunningPattern(pattern, urls, deps, logs, stack)
        for proc in serving(pattern):
            _wait(
                lambda p=proc: answers(urls[p.name] + p.ready_path),
                f"{pattern.id}/{proc.name}",
                ready_timeout,
                None if supervise else running.proc(proc.name),
                None if foreground else logs[proc.name],
            )
        yield running
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- the command line ---------------------------------------------------------------------


def parse_env(items: list[str]) -> dict[str, dict[str, str]]:
    """`PROCESS:NAME=VALUE` items -> {process: {NAME: VALUE}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, assignment = item.partition(":")
        name, eq, value = assignment.partition("=")
        if not (sep and eq and name):
            raise RunnerError(f"--env {item!r}: expected PROCESS:NAME=VALUE")
        out.setdefault(target, {})[name] = value
    return out


def _say(message: str) -> None:
    print(f"runner: {message}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """SIGINT or SIGTERM reached the runner."""


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # one is enough: we are stopping
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def run_foreground(name: str, port: int, process_env: dict[str, dict[str, str]]) -> int:
    pattern = load(name)
    unknown = set(process_env) - {p.name for p in pattern.processes}
    if unknown:
        raise RunnerError(f"--env names no process of {pattern.id}: {', '.join(sorted(unknown))}")
    signal.signal(signal.SIGINT, _interrupt)  # acted on at once, even while starting
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with start_pattern(
            pattern.id,
            first_port=port,
            process_env=process_env,
            foreground=True,
            supervise=True,
            say=_say,
        ) as running:
            for proc_name, url in running.urls.items():
                _say(f"{pattern.id}/{proc_name}: {url}  (docs: {url}/docs)")
            _say(
                f"from another terminal: make status|stop|start|kill PATTERN={pattern.id} "
                "PROCESS=..."
            )
            _say("Ctrl-C stops everything.")
            while True:
                time.sleep(1)
    except Interrupted as why:
        _say(f"{why}: stopped {pattern.id}")
    return 0


def _process_state(pattern_id: str) -> dict[str, dict[str, object]]:
    state = read_state(run_dir_for(pattern_id))
    if state is None:
        raise RunnerError(
            f"{pattern_id} is not running here (no live run in {run_dir_for(pattern_id)}): "
            f"start it with `make run PATTERN={pattern_id}`"
        )
    procs: dict[str, dict[str, object]] = state["processes"]  # type: ignore[assignment]
    return procs


def status(pattern_id: str) -> int:
    for proc_name, p in _process_state(pattern_id).items():
        url = p.get("url")
        ready = ""
        if str(url).startswith("http") and p["state"] == "running":  # not redis://
            ready = "ready" if answers(f"{url}/readyz") else "not ready"
        last = f"last exit: {p['last_exit']}" if p.get("last_exit") else ""
        cells = [f"{proc_name:12}", f"{p['state']:9}", f"restarts={p['restarts']}"]
        cells += [c for c in (str(url or ""), ready, last) if c]
        print("  ".join(cells))
    return 0


def print_url(pattern_id: str, process: str) -> int:
    """Print one process's URL, a dependency's too: `redis-cli -u "$(make url ... redis)"`."""
    procs = _process_state(pattern_id)
    if not procs.get(process, {}).get("url"):
        raise RunnerError(f"{pattern_id} has no process {process!r} with a URL: {', '.join(procs)}")
    print(procs[process]["url"])
    return 0


def control(verb: str, pattern_id: str, process: str, timeout: float = 40.0) -> int:
    """stop | start | kill one process of a live supervised run."""
    procs = _process_state(pattern_id)
    if process not in procs:
        raise RunnerError(f"{pattern_id} has no process {process!r}: {', '.join(procs)}")
    before = procs[process]
    if verb == "kill":
        pid = before.get("pid")
        if pid is None:
            raise RunnerError(f"{pattern_id}/{process} is not running ({before['state']})")
        os.killpg(int(str(pid)), signal.SIGKILL)
        print(f"{pattern_id}/{process}: killed (SIGKILL to pid {pid}); the runner restarts it")
        return 0
    (run_dir_for(pattern_id) / "control" / f"{verb}-{process}").touch()
    wanted = "stopped" if verb == "stop" else "running"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _process_state(pattern_id)[process]
        if now["state"] == wanted and (verb == "stop" or now.get("pid") != before.get("pid")):
            print(f"{pattern_id}/{process}: {wanted}")
            return 0
        time.sleep(0.1)
    raise RunnerError(f"{pattern_id}/{process} not {wanted} after {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m patterns.runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pattern in the foreground, supervised")
    run.add_argument("pattern")
    run.add_argument("--port", type=int, default=8000, help="port of the first process")
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="PROCESS:NAME=VALUE",
        help="an environment variable for one process only (repeatable)",
    )
    sub.add_parser("list", help="list patterns")
    res = sub.add_parser("resolve", help="print the pattern id of an alias")
    res.add_argument("pattern")
    st = sub.add_parser("status", help="the processes of a running pattern")
    st.add_argument("pattern")
    for verb, what in [
        ("url", "print the URL of a process or a dependency (redis, mlflow)"),
        ("stop", "stop a process and keep it down"),
        ("start", "start a stopped process"),
        ("kill", "SIGKILL a process (a crash); the runner restarts it"),
    ]:
        cmd = sub.add_parser(verb, help=what)
        cmd.add_argument("pattern")
        cmd.add_argument("process")
    args = parser.parse_args(argv)
    try:
        if args.command == "resolve":
            print(load(args.pattern).id)
        elif args.command == "list":
            for pid in pattern_ids():
                p = load(pid)
                procs = ", ".join(f"{x.name} ({x.module})" for x in p.processes)
                print(f"{p.id:22} {p.status:6} {procs}  needs: {', '.join(p.needs) or '-'}")
        elif args.command == "run":
            return run_foreground(args.pattern, args.port, parse_env(args.env))
        elif args.command == "status":
            return status(load(args.pattern).id)
        elif args.command == "url":
            return print_url(load(args.pattern).id, args.process)
        else:
            return control(args.command, load(args.pattern).id, args.process)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
