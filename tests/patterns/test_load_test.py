"""load_test: the SLO file, the figures, the capacity search, and real locust runs against
web_single started by the runner (a few seconds of load, a few users)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube import manifests
from patterns.load_test import capacity, slo
from patterns.load_test.__main__ import main
from patterns.load_test.figures import Counts, figures, parse_steps, percentile
from patterns.load_test.run import BREACH, FAILED, OK, USAGE
from patterns.load_test.slo import SloError
from patterns.runner import RunningPattern, start_pattern

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "patterns" / "load_test"
SLO = HERE / "slo.yaml"
IMPOSSIBLE = HERE / "examples" / "impossible.yaml"
BAD = HERE / "examples" / "bad-slo.yaml"


# --- the SLO file -------------------------------------------------------------------------


def test_slo_reads_k6_style_thresholds_in_their_units() -> None:
    got = slo.parse(
        {
            "thresholds": {
                "*": ["p(99) < 0.25s", "errors < 1%", "rps >= 20"],
                "POST /predict": "p95<=40ms",
            },
            "abort_after": "10s",
        }
    )
    overall = got.thresholds["*"]
    assert [(t.metric, t.op, t.value) for t in overall] == [
        ("p99_ms", "<", 250.0),
        ("error_rate", "<", 0.01),
        ("rps", ">=", 20.0),
    ]
    assert [(t.metric, t.value) for t in got.thresholds["POST /predict"]] == [("p95_ms", 40.0)]
    assert got.abort_after == 10.0
    assert slo.load(SLO).thresholds["POST /predict"][0].text == "p99 < 250ms"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"thresholds": {"POST /predict": ["p99 < 50ms", "p98 < 40ms"]}}, "'POST /predict'[1]"),
        ({"thresholds": {"*": ["p99 << 5"]}}, "thresholds.'*'[0]"),
        ({"thresholds": {"*": ["errors < 150%"]}}, "thresholds.'*'[0]"),
        ({"thresholds": {"*": ["p99 < 5%"]}}, "thresholds.'*'[0]"),
        ({"thresholds": {"*": ["rps > 5ms"]}}, "thresholds.'*'[0]"),
        ({"thresholds": {"*": [7]}}, "thresholds.'*'[0]"),
        ({"thresholds": {"*": []}}, "thresholds.'*'"),
        ({"thresholds": {"predict": ["p99 < 5"]}}, "thresholds.'predict'"),
        ({"thresholds": {}}, "thresholds"),
        ({"thresholds": {"*": ["p99 < 5"]}, "abort_after": "soon"}, "abort_after"),
        ({"thresholds": {"*": ["p99 < 5"]}, "abortafter": "5s"}, "abortafter"),
        (["p99 < 5"], "(file)"),
    ],
)
def test_a_bad_slo_file_is_refused_naming_the_field(doc: object, field: str) -> None:
    with pytest.raises(SloError) as err:
        slo.parse(doc)
    assert field in err.value.field


def test_report_with_a_bad_slo_file_exits_2_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"totals": {}}))
    assert main(["report", "--slo", str(BAD), str(tmp_path)]) == USAGE
    err = capsys.readouterr().err
    assert "thresholds.'POST /predict'[1]" in err and "'98'" in err
    assert main(["report", "--slo", str(tmp_path / "missing.yaml"), str(tmp_path)]) == USAGE


def test_an_slo_file_nested_too_deeply_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 20_000 + "]" * 20_000)
    (tmp_path / "summary.json").write_text(json.dumps({"totals": {}}))
    assert main(["report", "--slo", str(deep), str(tmp_path)]) == USAGE
    assert f"{deep}: not YAML: nested too deeply" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kubectl", [None, "#!/bin/sh\necho 'error: no cluster here' >&2\nexit 1\n"]
)
def test_a_port_forward_that_cannot_start_exits_3(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kubectl: str | None,
) -> None:
    """--kubernetes without kubectl, or with a kubectl that fails: the run could not be made."""
    if kubectl is not None:
        (tmp_path / "kubectl").write_text(kubectl)
        (tmp_path / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["run", "web_single", "--kubernetes", "--out", str(tmp_path / "out")]) == FAILED
    err = capsys.readouterr().err
    assert "--kubernetes: port-forward to svc/" in err
    assert ("no cluster here" if kubectl else "cannot run kubectl") in err


FAST = {"requests": 1000, "rps": 200.0, "p99_ms": 8.0, "p95_ms": 4.0, "error_rate": 0.0}


def test_check_finds_each_breach_and_an_endpoint_nobody_called() -> None:
    rules = slo.load(SLO)
    assert slo.check(rules, {"*": FAST, "POST /predict": FAST}) == []
    slow = {**FAST, "p99_ms": 900.0, "rps": 5.0}
    breaches = slo.check(rules, {"*": slow, "POST /predict": FAST})
    assert [(b.endpoint, b.threshold) for b in breaches] == [
        ("*", "p99 < 250ms"),
        ("*", "rps > 20"),
    ]
    # a capacity search leaves throughput floors out
    assert len(slo.check(rules, {"*": slow, "POST /predict": FAST}, floors=False)) == 1
    missing = slo.check(rules, {"*": FAST})
    assert {b.endpoint for b in missing} == {"POST /predict"}
    assert all(b.actual is None for b in missing)


# --- figures --------------------------------------------------------------------------------


def test_percentiles_follow_locusts_rule() -> None:
    """Locust's rule: the smallest response time with at most (1-q) of requests above it,
    so its CSV, its HTML report and the summary agree."""
    hist = {1: 50, 2: 40, 10: 9, 100: 1}
    got = [percentile(hist, 100, q) for q in (0.5, 0.9, 0.95, 0.99, 0.999)]
    assert got == [2.0, 10.0, 10.0, 100.0, 100.0]
    assert percentile({}, 0, 0.99) == 0.0


def test_a_steps_figures_are_the_difference_of_two_snapshots() -> None:
    before = Counts(10, 1, 300.0, 30.0, {30: 10})
    after = Counts(110, 3, 850.0, 30.0, {5: 50, 6: 50, 30: 10})
    f = figures(after.minus(before), seconds=10.0)
    assert (f["requests"], f["failures"], f["rps"]) == (100, 2, 10.0)
    assert f["error_rate"] == 0.02 and f["mean_ms"] == 5.5
    # the step's slowest requests were 6 ms; the 30 ms ones came before it
    assert (f["p50_ms"], f["p99_ms"], f["max_ms"]) == (6.0, 6.0, 6.0)
    assert figures(after, seconds=10.0)["p99_ms"] == 30.0


@pytest.mark.parametrize("text", ["10", "0:5", "5:0", "2000:5", "5:700", ",".join(["1:1"] * 11)])
def test_steps_are_bounded(text: str) -> None:
    with pytest.raises(ValueError, match="steps"):
        parse_steps(text)
    assert [s.users for s in parse_steps("10:20,50:20,100:20")] == [10, 50, 100]


# --- capacity search ------------------------------------------------------------------------


def server(knee: int, flaky: set[int] | None = None) -> tuple[capacity.Probe, list[int]]:
    """A simulated target: p99 stays at 5 ms up to `knee` users and then grows; a probe at a
    user count in `flaky` fails once (errors), as a noisy neighbour can make it."""
    probes: list[int] = []
    flaky = set(flaky or ())

    def probe(users: int) -> Mapping[str, Any]:
        probes.append(users)
        p99 = 5.0 if users <= knee else 5.0 + 10 * (users - knee)
        errors = 0.05 if users in flaky else 0.0
        flaky.discard(users)
        f = {"requests": 100 * users, "rps": 100.0 * min(users, knee), "p99_ms": p99}
        f["error_rate"] = errors
        return {"totals": f, "endpoints": {"POST /predict": f}}

    return probe, probes


RULE = slo.parse({"thresholds": {"*": ["p99 < 50ms", "rps > 100000"]}})


def test_capacity_bisects_to_the_knee_and_confirms_twice() -> None:
    probe, probes = server(knee=37)
    found = capacity.search(probe, RULE, start=5, max_users=200, say=lambda line: None)
    # 37 users hold p99 < 50 ms and so does 41 (5 + 10*4 = 45); 42 does not (55)
    assert found.users is not None and 37 <= found.users <= 41
    assert probes[:4] == [5, 10, 20, 40] and probes[-2:] == [found.users, found.users]
    assert [a.purpose for a in found.attempts][-2:] == ["confirm", "confirm"]
    assert found.rps == 3700.0 and not found.capped and not found.exhausted


def test_a_confirmation_that_breaks_sends_the_search_lower() -> None:
    probe, probes = server(knee=37, flaky={40})
    found = capacity.search(probe, RULE, start=5, max_users=40, say=lambda line: None)
    # 40 held once (capped), broke on confirmation (5% errors > 1%): 20 is confirmed instead
    # of 40, then the bisection goes on above it
    assert 40 in probes and found.users is not None and 20 <= found.users < 40


def test_capacity_is_bounded_and_says_when_nothing_holds() -> None:
    probe, probes = server(knee=0)
    found = capacity.search(probe, RULE, start=5, say=lambda line: None)
    assert found.users is None and probes == [5]
    probe, probes = server(knee=10_000)
    found = capacity.search(probe, RULE, start=1, max_users=1000, max_probes=4, say=print)
    assert len(probes) == 4 and found.exhausted and found.users is None


# --- real runs against web_single -----------------------------------------------------------


@pytest.fixture(scope="module")
def web(data_dir: Path) -> Iterator[RunningPattern]:
    """load_test's processes: web_single's API and the load test Job (a 5 s smoke run)."""
    with start_pattern("load_test", data_dir=data_dir) as run:
        yield run


@pytest.fixture(scope="module")
def smoke_run(web: RunningPattern, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spec's smoke run: 10 s (2 users, then 5) with the pattern's SLO."""
    out = tmp_path_factory.mktemp("smoke")
    argv = ["run", "web_single", "--host", web.url("api"), "--steps", "2:5,5:5"]
    assert main([*argv, "--slo", str(SLO), "--out", str(out)]) == OK
    return out


@pytest.mark.slow
def test_a_10_s_smoke_run_has_no_errors_and_writes_every_result(smoke_run: Path) -> None:
    s = json.loads((smoke_run / "summary.json").read_text())
    assert s["totals"]["requests"] > 0 and s["totals"]["failures"] == 0
    assert [st["users"] for st in s["steps"]] == [2, 5]
    assert all(st["figures"]["*"]["requests"] > 0 for st in s["steps"])
    assert {"POST /predict", "POST /v2/models/iris-svc/infer"} <= set(s["endpoints"])
    env = s["environment"]
    assert env["cores"] and env["cpu_model"] and env["python"] and len(env["git_sha"]) >= 7
    assert s["slo"] == {"file": str(SLO), "passed": True, "breaches": []}
    assert s["aborted"] is None
    for name in ("locust_stats.csv", "locust_stats_history.csv", "report.html"):
        assert (smoke_run / name).stat().st_size > 0
    # the summary's counts are locust's own (its CSV is written every few seconds, so it may
    # miss the last few requests of the run)
    rows = (smoke_run / "locust_stats.csv").read_text().splitlines()
    aggregated = next(r.split(",") for r in rows if r.split(",")[1] == "Aggregated")
    requests = s["totals"]["requests"]
    assert 0.99 * requests <= int(aggregated[2]) <= requests and aggregated[3] == "0"


@pytest.mark.slow
def test_an_impossible_slo_exits_1(smoke_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--slo", str(IMPOSSIBLE), str(smoke_run)]) == BREACH
    assert "BREACH POST /predict" in capsys.readouterr().out
    assert main(["report", "--slo", str(SLO), str(smoke_run / "summary.json")]) == OK


@pytest.mark.slow
def test_run_stops_early_on_a_sustained_breach(web: RunningPattern, tmp_path: Path) -> None:
    argv = ["run", "web_single", "--host", web.url("api"), "--steps", "2:40"]
    assert main([*argv, "--slo", str(IMPOSSIBLE), "--out", str(tmp_path)]) == BREACH
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["aborted"].startswith("SLO breached for 2 s: POST /predict: mean < 0.001ms")
    assert s["steps"][0]["seconds"] < 40 and s["slo"]["passed"] is False


@pytest.mark.slow
def test_capacity_with_an_impossible_slo_finds_nothing_and_exits_1(
    web: RunningPattern, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["capacity", "web_single", "--host", web.url("api"), "--slo", str(IMPOSSIBLE)]
    assert main([*argv, "--start", "2", "--seconds", "2", "--out", str(tmp_path)]) == BREACH
    out = capsys.readouterr().out
    assert "sustainable: none" in out and "cores, load average" in out
    result = json.loads((tmp_path / "capacity.json").read_text())
    assert [a["users"] for a in result["attempts"]] == [2] and result["users"] is None


@pytest.mark.slow
def test_an_unreachable_target_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "web_single", "--host", "http://127.0.0.1:9", "--ready-timeout", "0.5"]
    assert main(argv) == FAILED
    assert "not ready" in capsys.readouterr().err


@pytest.mark.slow
def test_the_load_test_job_process_runs_clean(web: RunningPattern) -> None:
    assert web.proc("locust").wait(timeout=90) == 0
    log = web.logs["locust"].read_text()
    line = next(ln for ln in log.splitlines() if '"event": "summary"' in ln)
    summary = json.loads(line)
    assert summary["totals"]["requests"] > 0 and summary["totals"]["failures"] == 0
    assert summary["slo"]["passed"] is True


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.slow
def test_overlay_runs_the_book_steps_against_three_replicas_from_a_configmap() -> None:
    docs = manifests.load(manifests.render("load_test"))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by[("Deployment", "web-single")]["spec"]["replicas"] == 3
    assert by[("PodDisruptionBudget", "web-single")]["spec"]["minAvailable"] == 2
    job = by[("Job", "load-test")]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in job["containers"][0]["env"]}
    assert env["MLSP_STEPS"] == "10:20,50:20,100:20"
    assert env["MLSP_TARGET_URL"] == "http://web-single:8000"
    cm_name = next(v["configMap"]["name"] for v in job["volumes"] if "configMap" in v)
    data = next(d for d in docs if d["metadata"]["name"] == cm_name)["data"]
    # the ConfigMap's files are the ones the local runs use
    assert data["locustfile.py"] == (ROOT / "patterns/web_single/locustfile.py").read_text()
    assert data["slo.yaml"] == SLO.read_text()
    assert yaml.safe_load(data["slo.yaml"]) == yaml.safe_load(SLO.read_text())
