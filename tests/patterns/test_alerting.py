"""prediction_monitoring's alert path with the real tools: the rules pass `promtool check
rules` and their unit tests (`promtool test rules`), and those tests fail when a threshold is
wrong; the run's Alertmanager (Debian's prometheus-alertmanager) delivers an alert sent by
`amtool`, its own client, to the webhook receiver."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from patterns import alerting
from patterns.supervisor import Stack

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
    assert got["labels"] == {  # type: ignore[comparison-overlap]
        "alertname": "MlspFeatureDriftCritical",
        "severity": "critical",
        "feature": "petal_length",
    }
    assert got["annotations"] == {"summary": "PSI 0.61"}  # type: ignore[comparison-overlap]


def test_the_receiver_refuses_a_body_that_is_not_a_webhook(stack: Stack) -> None:
    url = alerting.ensure_alertmanager(stack, stack.workdir, alerting.Context("x", {}, {}))
    receiver = dict(stack.managed)["alert-receiver"].url
    bad = httpx.post(f"{receiver}/alerts", json={"version": "4", "alerts": "many"}, timeout=5)
    assert bad.status_code == 422
    assert "alerts" in bad.text and "status" in bad.text
    assert httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
