"""`make run` supervises like Kubernetes: through the real command line, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from patterns import runner
from tests.patterns.test_examples import free_base

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *args: str, check: bool = True) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "patterns.runner", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not check or done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def wait_for(what: str, check: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen in {seconds:.0f} s")


@contextmanager
def make_run(
    data_dir: Path, tmp_path: Path, pattern: str, *extra: str
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], int, Path]]:
    """`python -m patterns.runner run PATTERN --port BASE`, output into a file."""
    base = free_base(len(runner.serving(runner.load(pattern))))
    env = {**os.environ, "MLSP_DATA_DIR": str(data_dir), "MLSP_RUN_DIR": str(tmp_path / "run")}
    log = tmp_path / "runner.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "patterns.runner", "run", pattern, "--port", str(base), *extra],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        yield proc, env, base, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)


def ready(url: str) -> bool:
    return runner.answers(f"{url}/readyz")


def test_a_killed_process_is_restarted_while_the_others_keep_serving(
    data_dir: Path, tmp_path: Path
) -> None:
    with make_run(data_dir, tmp_path, "parallel") as (proc, env, base, log):
        names = [p.name for p in runner.serving(runner.load("parallel"))]
        urls = {n: f"http://127.0.0.1:{base + i}" for i, n in enumerate(names)}
        wait_for("every process ready", lambda: all(ready(u) for u in urls.values()))
        assert "killed" in cli(env, "kill", "parallel", "virginica")
        # the others keep serving meanwhile, and the proxy names what is missing
        assert ready(urls["setosa"]) and ready(urls["versicolor"])
        wait_for("the restart", lambda: "restarts=1" in cli(env, "status", "parallel"))
        wait_for("virginica ready again", lambda: ready(urls["virginica"]))
        answer = httpx.post(f"{urls['proxy']}/predict", json={"instances": [[6.7, 3.0, 5.8, 2.2]]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "virginica"
        assert proc.poll() is None, log.read_text()
        assert "virginica exited (signal SIGKILL); restarting in 1 s" in log.read_text()


def test_stop_holds_a_process_down_until_start(data_dir: Path, tmp_path: Path) -> None:
    with make_run(data_dir, tmp_path, "prep_pred") as (_proc, env, base, _log):
        pred, prep = f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"
        wait_for("ready", lambda: ready(pred) and ready(prep))
        assert "pred: stopped" in cli(env, "stop", "prep_pred", "pred")
        time.sleep(2)  # longer than the first backoff: a stopped process is not restarted
        assert not ready(pred)
        assert "stopped" in cli(env, "status", "prep_pred")
        assert "pred: running" in cli(env, "start", "prep_pred", "pred")
        wait_for("pred ready again", lambda: ready(pred))


def test_a_job_that_completes_stops_nothing(data_dir: Path, tmp_path: Path) -> None:
    with make_run(data_dir, tmp_path, "sync") as (proc, env, base, log):
        server = f"http://127.0.0.1:{base}"
        # status answers once the run is up (before that it says: not running here)
        wait_for(
            "client completed",
            lambda: "completed" in cli(env, "status", "synchronous", check=False),
        )
        assert proc.poll() is None, log.read_text()
        assert ready(server)
        assert "client completed (exit code 0)" in log.read_text()
    assert proc.returncode == 0


def test_sigterm_while_waiting_for_readiness_stops_at_once(data_dir: Path, tmp_path: Path) -> None:
    # model_load waits for an MLflow server to start (seconds): stop it in the middle
    with make_run(data_dir, tmp_path, "model_load") as (proc, _env, _base, log):
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
        assert "SIGTERM: stopped model_load" in log.read_text()


def test_a_busy_port_is_an_error_that_names_it(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**os.environ, "MLSP_RUN_DIR": str(tmp_path)}
        out = cli(env, "run", "web_single", "--port", str(port), check=False)
    assert f"port {port} (web_single/api) is in use" in out


def test_env_for_one_process_reaches_that_process_only(data_dir: Path, tmp_path: Path) -> None:
    knob = "worker:MLSP_SIMULATED_LATENCY_MS=700"
    with make_run(data_dir, tmp_path, "sync_async", "--env", knob) as (_p, _env, base, _log):
        wait_for("ready", lambda: all(ready(f"http://127.0.0.1:{base + i}") for i in (0, 1)))
        state = json.loads((tmp_path / "run" / "sync_async" / "state.json").read_text())
        seen = {}
        for name, proc in state["processes"].items():
            if name != "redis":
                environ = Path(f"/proc/{proc['pid']}/environ").read_bytes().split(b"\0")
                seen[name] = b"MLSP_SIMULATED_LATENCY_MS=700" in environ
        assert seen == {"fast": False, "worker": True, "proxy": False}


def test_unknown_env_target_and_aliases_of_missing_patterns_are_refused(tmp_path: Path) -> None:
    env = {**os.environ, "MLSP_RUN_DIR": str(tmp_path)}
    out = cli(env, "run", "web_single", "--env", "nope:X=1", check=False)
    assert "--env names no process of web_single: nope" in out
    assert runner.resolve("async") == "asynchronous"
    assert "unknown pattern 'no-such-pattern'" in cli(
        env, "resolve", "no-such-pattern", check=False
    )
    assert cli(env, "resolve", "template") == "inference_template\n"
    assert cli(env, "resolve", "shadow") == "shadow_ab\n"  # an alias exists with its pattern
    declared = [a for pid in runner.pattern_ids() for a in runner.load(pid).aliases]
    assert len(declared) == len(set(declared))
    assert not set(declared) & set(runner.pattern_ids())


def test_the_run_uses_its_own_redis_and_says_so(data_dir: Path, tmp_path: Path) -> None:
    env_before = os.environ.pop("REDIS_URL", None)
    try:
        with make_run(data_dir, tmp_path, "cache") as (_proc, env, base, log):
            wait_for("ready", lambda: ready(f"http://127.0.0.1:{base}"))
            text = log.read_text()
            assert "this run's own redis-server" in text
            assert "redis://127.0.0.1:6379" not in text
            assert "redis" in cli(env, "status", "prediction_cache")
    finally:
        if env_before is not None:
            os.environ["REDIS_URL"] = env_before
