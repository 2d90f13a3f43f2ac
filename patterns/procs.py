"""Small helpers for starting local processes and waiting on them: free ports, readiness
polls, the error a local run raises. Used by the runner (patterns/runner.py) and by the
dependencies it starts (patterns/alerting.py)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


class RunnerError(RuntimeError):
    """The pattern cannot be started; the message says why and what to do."""


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


def tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""


def wait_ready(
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
            raise RunnerError(f"{what} exited with code {proc.returncode}\n{tail(log)}")
        time.sleep(0.1)
    raise RunnerError(f"{what} not ready after {timeout:.0f} s\n{tail(log)}")
