"""The local runner: start a pattern's declared processes and their dependencies.

    python -m patterns.runner run web_single        # foreground; Ctrl-C stops everything
    python -m patterns.runner list                  # every pattern and its processes
    python -m patterns.runner resolve async         # alias -> pattern id

Tests use `start_pattern(...)` as a context manager: every process is started, waited on until
its /readyz answers 200, and stopped (SIGTERM, then SIGKILL) on exit. A dependency (Redis,
PostgreSQL, MLflow) is used where its URL answers; else a local one is started where the
program is installed; else the run fails with a message saying how to get it.

In the foreground (`make run`), a variable a process declares that is also set in your
environment takes your value, in every process that declares it:
`MLSP_MODEL_DIR=data/models/iris-rf make run PATTERN=web_single`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

from patterns.declare import Pattern, Process

ROOT = Path(__file__).resolve().parent.parent
ALIASES = {
    "async": "asynchronous",
    "sync": "synchronous",
    "batch": "batch_inference",
    "cache": "prediction_cache",
    "template": "inference_template",
    "monitoring": "prediction_monitoring",
    "shadow": "shadow_ab",
    "ab": "online_ab",
}
_TEMPLATE = re.compile(r"\{(\w+)(?::([\w.-]+))?\}")


class RunnerError(RuntimeError):
    """The pattern cannot be started; the message says why and what to do."""


def resolve(name: str) -> str:
    return ALIASES.get(name, name)


def pattern_ids() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "patterns").glob("*/pattern.py"))


def load(name: str) -> Pattern:
    pid = resolve(name)
    if pid not in pattern_ids():
        raise RunnerError(
            f"unknown pattern {name!r}; known: {', '.join(pattern_ids())} "
            f"(aliases: {', '.join(f'{a}={t}' for a, t in ALIASES.items())})"
        )
    pattern: Pattern = importlib.import_module(f"patterns.{pid}.pattern").PATTERN
    return pattern


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def answers(url: str) -> bool:
    """True when GET `url` answers 200 within a second."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""


def _wait(
    check: object,
    what: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        if proc is not None and proc.poll() is not None:
            raise RunnerError(f"{what} exited with code {proc.returncode}\n{_tail(log)}")
        time.sleep(0.1)
    raise RunnerError(f"{what} not ready after {timeout:.0f} s\n{_tail(log)}")


@dataclass
class Stack:
    """Processes started by the runner, stopped in reverse order."""

    workdir: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def spawn(
        self, name: str, cmd: list[str], env: Mapping[str, str], out: IO[bytes] | int | None
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            cmd,
            env=dict(env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def stop(self, grace: float = 25.0) -> None:
        """SIGTERM each process group, wait, then SIGKILL what is left (grandchildren too)."""
        for _, proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, proc in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- dependencies -------------------------------------------------------------------------


def ensure_redis(stack: Stack) -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parts = urlsplit(url)
    if port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
        return url
    server = shutil.which("redis-server")
    if server is None:
        raise RunnerError(
            f"Redis is not reachable at {url} and redis-server is not installed: "
            "`apt-get install redis-server`, or set REDIS_URL"
        )
    port = free_port()
    proc = stack.spawn(
        "redis",
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(stack.workdir),
        ],
        os.environ,
        subprocess.DEVNULL,
    )
    _wait(lambda: port_open("127.0.0.1", port), "redis-server", 10, proc)
    return f"redis://127.0.0.1:{port}/0"


def ensure_postgres(stack: Stack) -> str:
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parts = urlsplit(url)
    if port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
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
    proc = stack.spawn(
        "postgres",
        [
            str(Path(initdb).with_name("postgres")),
            "-D",
            str(pgdata),
            "-p",
            str(port),
            "-k",
            str(stack.workdir),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        os.environ,
        subprocess.DEVNULL,
    )
    _wait(lambda: port_open("127.0.0.1", port), "postgres", 30, proc)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def ensure_mlflow(stack: Stack, data_dir: Path) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("http"):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{uri.rstrip('/')}/health", timeout=2).status_code == 200:
                return uri
    store = (data_dir / "mlflow").resolve()
    store.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = stack.workdir / "mlflow.log"
    proc = stack.spawn(
        "mlflow",
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--workers",
            "1",
        ],
        os.environ,
        log.open("wb"),
    )
    url = f"http://127.0.0.1:{port}"

    _wait(lambda: answers(f"{url}/health"), "mlflow server", 90, proc, log)
    return url


# --- patterns -----------------------------------------------------------------------------


def _wait_exit(proc: subprocess.Popen[bytes], what: str, timeout: float, log: Path) -> None:
    """Wait for an init process; raise unless it exits 0 in time."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    if code == 0:
        return
    state = "still running" if code is None else f"exited with code {code}"
    raise RunnerError(f"init process {what} {state} after {timeout:.0f} s\n{_tail(log)}")


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
    ready_timeout: float = 60.0,
    init_timeout: float = 180.0,
) -> Iterator[RunningPattern]:
    """Start every process of a pattern and wait until each /readyz answers 200. `env` is added
    to every process's environment, `process_env[name]` to one process's."""
    pattern = load(name)
    data_dir = data_dir or Path(os.environ.get("MLSP_DATA_DIR", ROOT / "data"))
    workdir = Path(tempfile.mkdtemp(prefix=f"mlsp-{pattern.id}-"))
    log_dir = log_dir or workdir
    stack = Stack(workdir)
    try:
        deps: dict[str, str] = {}
        for dep in pattern.needs:
            if dep == "redis":
                deps[dep] = ensure_redis(stack)
            elif dep == "postgres":
                deps[dep] = ensure_postgres(stack)
            elif dep == "mlflow":
                deps[dep] = ensure_mlflow(stack, data_dir)
        ports: dict[str, int] = {}
        servers = [p for p in pattern.processes if p.port is not None and not p.init]
        for i, proc in enumerate(servers):
            wanted = first_port + i if first_port else None
            ports[proc.name] = (
                wanted if wanted and not port_open("127.0.0.1", wanted) else free_port()
            )
        urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
        logs: dict[str, Path] = {}
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
                **(process_env or {}).get(proc.name, {}),
            }
            if foreground:  # `MLSP_MODEL_DIR=... make run`: what the user sets wins
                proc_env.update({k: os.environ[k] for k in proc.env if k in os.environ})
            if proc.port is not None and not proc.init:
                proc_env["MLSP_PORT"] = str(ports[proc.name])
            logs[proc.name] = log_dir / f"{pattern.id}-{proc.name}.log"
            out = None if foreground else logs[proc.name].open("wb")
            child = stack.spawn(proc.name, [sys.executable, "-m", proc.module], proc_env, out)
            if proc.init:
                _wait_exit(child, f"{pattern.id}/{proc.name}", init_timeout, logs[proc.name])
        running = RunningPattern(pattern, urls, deps, logs, stack)
        for proc in pattern.processes:
            if proc.port is None or proc.init:
                continue
            ready_url = urls[proc.name] + proc.ready_path

            _wait(
                lambda u=ready_url: answers(u),
                f"{pattern.id}/{proc.name}",
                ready_timeout,
                running.proc(proc.name),
                None if foreground else logs[proc.name],
            )
        yield running
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m patterns.runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pattern in the foreground")
    run.add_argument("pattern")
    run.add_argument("--port", type=int, default=8000, help="port of the first process")
    sub.add_parser("list", help="list patterns")
    res = sub.add_parser("resolve", help="print the pattern id of an alias")
    res.add_argument("pattern")
    args = parser.parse_args(argv)
    try:
        if args.command == "resolve":
            print(load(args.pattern).id)
        elif args.command == "list":
            for pid in pattern_ids():
                p = load(pid)
                procs = ", ".join(f"{x.name} ({x.module})" for x in p.processes)
                print(f"{p.id:22} {p.status:6} {procs}  needs: {', '.join(p.needs) or '-'}")
        else:
            stop = False

            def on_signal(signum: int, frame: object) -> None:
                nonlocal stop
                stop = True

            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
            with start_pattern(args.pattern, first_port=args.port, foreground=True) as running:
                for name, url in running.urls.items():
                    print(
                        f"\n  {running.pattern.id}/{name}: {url}  (docs: {url}/docs)",
                        file=sys.stderr,
                    )
                print("  Ctrl-C stops everything.\n", file=sys.stderr)
                steps = {p.name for p in running.pattern.processes if p.init}
                while not stop:
                    dead = [
                        n for n, p in running.stack.procs if n not in steps and p.poll() is not None
                    ]
                    if dead:
                        print(f"process {dead[0]} exited; stopping", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
