"""The local runner: every declared process starts and becomes ready; aliases; dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis

from patterns import runner
from patterns.runner import RunnerError, Stack, start_pattern

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("pattern_id", runner.pattern_ids())
def test_every_declared_process_starts_and_becomes_ready(data_dir: Path, pattern_id: str) -> None:
    with start_pattern(pattern_id, data_dir=data_dir) as run:
        assert set(run.urls) == {p.name for p in run.pattern.processes if p.port and not p.init}
        for name, url in run.urls.items():
            assert httpx.get(f"{url}/readyz").status_code == 200, name
            assert httpx.get(f"{url}/livez").status_code == 200, name


def test_aliases_resolve_and_unknown_names_fail_clearly() -> None:
    assert runner.resolve("async") == "asynchronous"
    assert runner.resolve("web_single") == "web_single"
    with pytest.raises(RunnerError, match="unknown pattern 'nope'"):
        runner.load("nope")


def test_missing_model_says_how_to_get_it(tmp_path: Path) -> None:
    with (
        pytest.raises(RunnerError, match="make models"),
        start_pattern("web_single", data_dir=tmp_path),
    ):
        pass


def test_cli_lists_patterns_and_resolves() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "patterns.runner", "list"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "web_single" in out
    bad = subprocess.run(
        [sys.executable, "-m", "patterns.runner", "resolve", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown pattern" in bad.stderr


def test_unreachable_redis_is_replaced_by_a_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{runner.free_port()}/0")
    stack = Stack(tmp_path)
    try:
        url = runner.ensure_redis(stack)
        assert url != runner.os.environ["REDIS_URL"]
        assert redis.Redis.from_url(url).ping()
    finally:
        stack.stop()
    assert all(p.poll() is not None for _, p in stack.procs)


def test_reachable_redis_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = Stack(tmp_path)
    try:
        first = runner.ensure_redis(stack)  # whatever is there, or a started one
        monkeypatch.setenv("REDIS_URL", first)
        assert runner.ensure_redis(stack) == first
    finally:
        stack.stop()


def test_mlflow_server_is_started_when_none_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{runner.free_port()}")
    stack = Stack(tmp_path)
    try:
        url = runner.ensure_mlflow(stack, tmp_path / "data")
        assert httpx.get(f"{url}/health").status_code == 200
        exps = httpx.get(f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 10})
        assert exps.status_code == 200
    finally:
        stack.stop()
