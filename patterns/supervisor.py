"""Keep a pattern's processes running the way Kubernetes keeps its pods running.

The local runner (patterns/runner.py) starts every process through a `Stack`. With supervision
on (`make run`, the worked examples), a thread watches them:

- a long-running process (a Deployment's or StatefulSet's container: servers, workers, Redis)
  that dies is restarted with exponential backoff, 1 s doubling to 30 s, reset after 30 s of
  running (the kubelet's CrashLoopBackOff starts at 10 s and caps at 5 min; a laptop demo is
  better served by shorter waits, the shape is the same). The pattern keeps running;
- a Job's process that exits 0 has completed and is left alone; one that fails is restarted
  with the same backoff, at most `JOB_BACKOFF_LIMIT` times (a Job's `backoffLimit`);
- a process held down with `stop` stays down until `start` (like scaling a Deployment to 0).

Every transition is said (stderr under `make run`) and recorded in `state.json` in the run's
folder, where `python -m patterns.runner status|stop|start|kill` (from another terminal) read
it and leave their requests. A small folder of files rather than a socket: it survives the
runner's own crash, needs no port, and `cat` shows it. No library does this for subprocesses
in-process (supervisord and honcho are whole programs with their own configuration files).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

Restart = Literal["Always", "OnFailure", "Never"]
"""Always: a server or a dependency; OnFailure: a Job's process; Never: an init step."""

BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET = 1.0, 30.0, 30.0
JOB_BACKOFF_LIMIT = 6
"""Kubernetes' default `backoffLimit` for a Job."""
STOP_GRACE = 25.0
"""SIGTERM, then this long before SIGKILL (the pods' terminationGracePeriodSeconds is 30)."""


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the process and its children (each process leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


@dataclass
class Managed:
    """One declared process (or dependency) and what the supervisor knows of it."""

    name: str
    cmd: list[str]
    env: Mapping[str, str]
    out: Path | None
    """Log file (appended to across restarts); None: the runner's own stdout."""
    restart: Restart
    cwd: Path
    url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    state: str = "starting"
    """starting | running | backoff | stopped | completed | failed"""
    last_exit: str | None = None
    started_at: float = 0.0
    next_start: float | None = None
    held: bool = False
    """Held down by `stop`: not restarted until `start`."""
    streak: int = 0
    """Restarts since the process last ran for BACKOFF_RESET seconds."""

    def spawn(self) -> subprocess.Popen[bytes]:
        out: IO[bytes] | int | None = self.out.open("ab") if self.out is not None else None
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                env=dict(self.env),
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if out is not None and not isinstance(out, int):
                out.close()  # the child holds its own descriptor
        self.state, self.started_at, self.next_start = "running", time.monotonic(), None
        return self.proc

    @property
    def proc_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def backoff(self) -> float:
        """The wait before the next restart; the streak resets after a good long run."""
        if time.monotonic() - self.started_at >= BACKOFF_RESET:
            self.streak = 0
        self.streak += 1
        return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.streak - 1)))

    def snapshot(self) -> dict[str, object]:
        return {
            "pid": self.proc.pid if self.proc is not None and self.state == "running" else None,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "url": self.url,
        }


@dataclass
class Stack:
    """Processes started by the runner, stopped in reverse order; optionally supervised."""

    workdir: Path
    cwd: Path = field(default_factory=Path.cwd)
    managed: dict[str, Managed] = field(default_factory=dict)
    say: Callable[[str], None] = lambda message: None
    run_dir: Path | None = None
    """Where state.json and control requests live (supervised runs only)."""
    label: str = ""
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def procs(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        return [(m.name, m.proc) for m in self.managed.values() if m.proc is not None]

    def spawn(
        self,
        name: str,
        cmd: list[str],
        env: Mapping[str, str],
        out: Path | None,
        *,
        restart: Restart = "Always",
        url: str | None = None,
    ) -> subprocess.Popen[bytes]:
        with self._lock:
            managed = Managed(name, cmd, env, out, restart, self.cwd, url)
            self.managed[name] = managed
            proc = managed.spawn()
            self._save()
            return proc

    # --- supervision --------------------------------------------------------------------

    def supervise(self, run_dir: Path | None = None, interval: float = 0.2) -> None:
        """Start the supervising thread (idempotent)."""
        self.run_dir = run_dir
        if run_dir is not None:
            (run_dir / "control").mkdir(parents=True, exist_ok=True)
            self._save()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, args=(interval,), name="supervisor", daemon=True
            )
            self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with self._lock:
                self._handle_requests()
                for managed in self.managed.values():
                    self._tend(managed)

    def _tend(self, m: Managed) -> None:
        now = time.monotonic()
        if m.state == "backoff" and m.next_start is not None and now >= m.next_start:
            m.restarts += 1
            m.spawn()
            self.say(f"{self.label}{m.name} restarted (restart {m.restarts}, pid {m.proc_pid})")
            self._save()
            return
        if m.state != "running" or m.proc is None or (code := m.proc.poll()) is None:
            return
        m.last_exit = describe_exit(code)
        if m.held:
            m.state = "stopped"
        elif code == 0 and m.restart != "Always":
            m.state = "completed"
            self.say(f"{self.label}{m.name} completed ({m.last_exit})")
        elif m.restart == "Never" or (m.restart == "OnFailure" and m.restarts >= JOB_BACKOFF_LIMIT):
            m.state = "failed"
            self.say(f"{self.label}{m.name} failed ({m.last_exit}); not restarted")
        else:
            delay = m.backoff()
            m.state, m.next_start = "backoff", now + delay
            self.say(f"{self.label}{m.name} exited ({m.last_exit}); restarting in {delay:.0f} s")
        self._save()

    def _handle_requests(self) -> None:
        if self.run_dir is None:
            return
        for request in sorted((self.run_dir / "control").glob("*")):
            verb, _, name = request.name.partition("-")
            request.unlink(missing_ok=True)
            m = self.managed.get(name)
            if m is None:
                continue
            if verb == "stop":
                self.hold(name)
            elif verb == "start":
                self.release(name)

    def hold(self, name: str) -> None:
        """Stop a process and keep it down (a Deployment scaled to 0)."""
        with self._lock:
            m = self.managed[name]
            m.held = True
            if m.proc is not None and m.proc.poll() is None:
                terminate([m.proc], STOP_GRACE)
                m.last_exit = describe_exit(m.proc.returncode)
            m.state = "stopped"
            self.say(f"{self.label}{name} stopped (held down until `start`)")
            self._save()

    def release(self, name: str) -> None:
        """Start a held process again (scaled back to 1)."""
        with self._lock:
            m = self.managed[name]
            if not m.held and m.state == "running":
                return
            m.held = False
            m.spawn()
            self.say(f"{self.label}{name} started (pid {m.proc_pid})")
            self._save()

    def _save(self) -> None:
        if self.run_dir is None:
            return
        state = {
            "runner_pid": os.getpid(),
            "processes": {n: m.snapshot() for n, m in self.managed.items()},
        }
        tmp = self.run_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run_dir / "state.json")

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop supervising, then SIGTERM every process group, wait, SIGKILL what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            terminate([p for _, p in reversed(self.procs)], grace)
            if self.run_dir is not None:
                (self.run_dir / "state.json").unlink(missing_ok=True)


def terminate(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    for proc in procs:
        signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        signal_group(proc, signal.SIGKILL)
        proc.wait()
