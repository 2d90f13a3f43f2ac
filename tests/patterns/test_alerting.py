"""prediction_monitoring's alert path with the real tools: the rules pass `promtool check
rules` and their unit tests (`promtool test rules`), and those tests fail when a threshold is
wrong; the run's Alertmanager (Debian's prometheus-alertmanager) delivers an alert sent by
`amtool`, its own client, to the webhook receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from patterns import alerting
from patterns.runner import start_pattern
from patterns.supervisor import Stack

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "manifests" / "patterns" / "prediction_monitoring" / "alerts.yaml"
RULE_TESTS = RULES.with_name("alerts_test.yaml")
PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is missing: apt-get install prometheus"
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("(mlsp_drift_psi) > 0.25", "(mlsp_drift_psi) > 0.7"),  # critical too late
        ("(mlsp_drift_ks_pvalue) < 0.01", "(mlsp_drift_ks_pvalue) < 0.001"),
        ("> 180) or absent", "> 1800) or absent"),  # a stale monitor noticed too late
    ],
)
def test_the_rule_tests_catch_a_wrong_threshold(tmp_path: Path, old: str, new: str) -> None:
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path, ROOT)
    try:
        yield stack
    finally:
        stack.stop()


def test_alertmanager_delivers_an_alert_to_the_receiver(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLSP_ALERT_GROUP_WAIT", "0s")
    url = alerting.ensure_alertmanager(stack, stack.workdir, alerting.Context("x", {}, {}))
    receiver = dict(stack.managed)["alert-receiver"].url
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: apt-get install prometheus-alertmanager"
    sent = subprocess.run(
        [amtool, f"--alertmanager.url={url}", "alert", "add", "MlspFeatureDriftCritical",
         "severity=critical", "feature=petal_length", "--annotation=summary=PSI 0.61"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + 30
    alerts: list[dict[str, object]] = []
    while time.monotonic() < deadline and not alerts:
        alerts = httpx.get(f"{receiver}/alerts", timeout=2).json()["alerts"]
        time.sleep(0.2)
    assert alerts, "no notification reached the receiver"
    got = alerts[0]
    assert (got["alertname"], got["severity"], got["status"]) == (
        "MlspFeatureDriftCritical",
        "critical",
        "firing",
    )
    assert got["labels"] == {
        "alertname": "MlspFeatureDriftCritical",
        "severity": "critical",
        "feature": "petal_length",
    }
    assert got["annotations"] == {"summary": "PSI 0.61"}


def test_the_receiver_refuses_a_body_that_is_not_a_webhook(stack: Stack) -> None:
    url = alerting.ensure_alertmanager(stack, stack.workdir, alerting.Context("x", {}, {}))
    receiver = dict(stack.managed)["alert-receiver"].url
    bad = httpx.post(f"{receiver}/alerts", json={"version": "4", "alerts": "many"}, timeout=5)
    assert bad.status_code == 422
    assert "alerts" in bad.text and "status" in bad.text
    assert httpx.get(f"{url}/-/ready", timeout=5).status_code == 200


def _poll(what: str, check: Callable[[], T | None], seconds: float = 60) -> T:
    """check() until it returns something; fail naming `what` after `seconds` (a bound, not
    a timing claim: each step below normally takes one scrape or evaluation interval)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {seconds:.0f} s")


def _traffic(api: str, model: Path, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "patterns.prediction_monitoring.traffic", "--url", api,
         "--model-dir", str(model), "--seconds", "120", *extra],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_drifted_traffic_pages_someone_and_normal_traffic_does_not(
    data_dir: Path, tmp_path: Path
) -> None:
    """The whole loop with real parts: the api logs through Redis, the writer stores the rows,
    the monitor publishes gauges, Prometheus (scraping every second) evaluates the overlay's
    rules and Alertmanager notifies the webhook receiver."""
    fast = {"MLSP_SCRAPE_INTERVAL": "1s", "MLSP_ALERT_GROUP_WAIT": "1s"}
    fast["MLSP_DATABASE_URL"] = f"sqlite:///{tmp_path / 'prediction_log.db'}"  # its own log
    model = data_dir / "models" / "iris-svc"
    quiet = {"traffic": {"MLSP_TRAFFIC_COUNT": "1"}}  # the test sends its own traffic
    with start_pattern(
        "prediction_monitoring", data_dir=data_dir, env=fast, process_env=quiet
    ) as run:
        api, monitor = run.url("api"), run.url("monitor")
        prometheus = run.deps["prometheus"]
        receiver = dict(run.stack.managed)["alert-receiver"].url
        assert receiver is not None
        assert _traffic(api, model, "--count", "500")["statuses"] == {"200": 500}

        def logged(n: int) -> dict[str, Any] | None:
            body = httpx.post(f"{monitor}/drift/run", timeout=10).json()
            result: dict[str, Any] = body["result"]
            return result if result["instances"] >= n else None

        normal = _poll("500 logged instances", lambda: logged(500))
        assert normal["verdict"] in {"ok", "warning"}, normal

        def evaluated_after(t: float) -> bool | None:
            rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
            stamps = [g["lastEvaluation"] for g in rules if g["name"].startswith("mlsp")]
            return True if stamps and min(_epoch(s) for s in stamps) > t else None

        def scraped(query: str) -> float | None:
            got = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
            result = got.json()["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        _poll("the gauges in Prometheus", lambda: scraped("mlsp_monitor_window_instances >= 500"))
        seen = time.time()
        _poll("two rule evaluations", lambda: evaluated_after(seen + 1), seconds=30)
        firing = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        assert [a for a in firing if a["state"] == "firing"] == []
        assert httpx.get(f"{receiver}/alerts", timeout=5).json()["alerts"] == []

        sent = _traffic(api, model, "--count", "1500", "--drift", "petal_length=+2", "--seed", "1")
        assert sent["statuses"] == {"200": 1500}
        drifted = _poll("2000 logged instances", lambda: logged(2000))
        petal = next(f for f in drifted["features"] if f["name"] == "petal_length")
        assert petal["psi"] > 0.25 and petal["ks_pvalue"] < 0.01, petal

        def paged() -> dict[str, Any] | None:
            alerts = httpx.get(f"{receiver}/alerts", timeout=5).json()["alerts"]
            return next((a for a in alerts if a["alertname"] == "MlspFeatureDriftCritical"), None)

        alert = _poll("the critical alert at the receiver", paged)
        assert alert["status"] == "firing"
        assert alert["labels"]["feature"] == "petal_length"
        assert alert["labels"]["severity"] == "critical"
        assert "petal_length drifted" in alert["annotations"]["summary"]


def _epoch(stamp: str) -> float:
    """Prometheus' RFC 3339 timestamps (nanoseconds, Z) as seconds since the epoch."""
    from datetime import datetime

    head, _, frac = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + float(f"0.{frac or 0}")
