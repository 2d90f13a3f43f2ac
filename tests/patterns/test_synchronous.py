"""synchronous as real processes: deadline propagation, overload shedding, the fail-safe client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from patterns.runner import free_port, start_pattern
from serving.admission import deadline_header
from tests.conftest import spawn_server

pytestmark = pytest.mark.slow


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {"MLSP_MODEL_DIR": str(data_dir / "models" / "digits-lr"), **extra}


def rows(data_dir: Path) -> list[list[float]]:
    card = json.loads((data_dir / "models" / "digits-lr" / "model.json").read_text())
    return [card["golden"][0]["input"]]


def run_client(url: str, data_dir: Path, **extra: str) -> tuple[int, list[dict[str, object]]]:
    env = {
        **os.environ,
        "MLSP_SERVER_URL": url,
        "MLSP_MODEL_DIR": str(data_dir / "models" / "digits-lr"),
        **extra,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "patterns.synchronous.client"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_line_ships_confident_items_through_the_runner(data_dir: Path) -> None:
    with start_pattern("synchronous", data_dir=data_dir, env={"MLSP_ITEMS": "20"}) as run:
        client = run.proc("client")
        assert client.wait(60) == 0
        lines = [json.loads(x) for x in run.logs["client"].read_text().splitlines()]
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["ship"] + summary["recheck"] == 20
    items = lines[:-1]
    assert summary["ship"] > 0 and summary["ship"] == sum(x["route"] == "ship" for x in items)
    for x in items:  # routed by confidence alone when the server answers
        assert x["route"] == ("ship" if x["confidence"] >= 0.9 else "recheck"), x


def test_a_request_past_its_deadline_gets_504_in_time_and_goes_to_recheck(
    data_dir: Path, tmp_path: Path
) -> None:
    env = server_env(data_dir, MLSP_SIMULATED_LATENCY_MS="1000")
    with spawn_server("patterns.synchronous.server", env, tmp_path / "server.log") as url:
        budget = 0.3
        headers = deadline_header(budget)
        deadline = int(headers["X-Request-Deadline-Ms"]) / 1000
        resp = httpx.post(
            f"{url}/predict", json={"instances": rows(data_dir)}, headers=headers, timeout=5
        )
        late_by = time.time() - deadline
        assert resp.status_code == 504 and resp.json()["error"]["code"] == "deadline_exceeded"
        assert late_by < 0.05, late_by  # the spec's bound: deadline + 50 ms, not the 1 s delay
        gone = httpx.post(
            f"{url}/predict", json={"instances": rows(data_dir)}, headers=deadline_header(-1)
        )
        assert gone.status_code == 504  # already passed: refused before any work
        for value in ("soon", "9" * 320, "-5"):  # 320 digits would overflow a float: 400
            bad = httpx.post(
                f"{url}/predict",
                json={"instances": rows(data_dir)},
                headers={"X-Request-Deadline-Ms": value},
            )
            assert bad.status_code == 400, (value, bad.text)
            assert bad.json()["error"]["field"] == "X-Request-Deadline-Ms"
        code, lines = run_client(url, data_dir, MLSP_ITEMS="3", MLSP_TIMEOUT_SECONDS="0.3")
    assert code == 0
    items = [x for x in lines if x["event"] == "item"]
    assert [x["route"] for x in items] == ["recheck"] * 3  # never shipped on a failure
    assert {x["reason"] for x in items} == {"http 504"}


def test_max_inflight_plus_one_concurrent_requests_give_exactly_one_503(
    data_dir: Path, tmp_path: Path
) -> None:
    limit = 4
    env = server_env(data_dir, MLSP_SIMULATED_LATENCY_MS="700", MLSP_MAX_INFLIGHT=str(limit))
    with spawn_server("patterns.synchronous.server", env, tmp_path / "server.log") as url:

        def call(_: int) -> httpx.Response:
            return httpx.post(f"{url}/predict", json={"instances": rows(data_dir)}, timeout=5)

        with ThreadPoolExecutor(limit + 1) as pool:
            responses = list(pool.map(call, range(limit + 1)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * limit + [503]
        shed = next(r for r in responses if r.status_code == 503)
        assert shed.headers["retry-after"] and shed.json()["error"]["reason"] == "overloaded"
        assert httpx.get(f"{url}/readyz").status_code == 200  # shedding is not unreadiness


def test_an_unreachable_server_sends_every_item_to_recheck(data_dir: Path) -> None:
    code, lines = run_client(
        f"http://127.0.0.1:{free_port()}", data_dir, MLSP_ITEMS="2", MLSP_WAIT_READY_SECONDS="0.5"
    )
    assert code == 0
    items = [x for x in lines if x["event"] == "item"]
    assert [x["route"] for x in items] == ["recheck", "recheck"]
    assert all(str(x["reason"]).startswith("unreachable") for x in items)
