"""load_test's worked example: the README's output, produced by running it (patterns/example.py).

make example PATTERN=load_test

The target is web_single's API on port 8000 (load_test's first process); its load test Job
runs a 5 s smoke run as the pattern starts. Figures (requests, RPS, latencies, the machine's
load) change from run to run: VOLATILE hides them when the README block is compared.
"""

from __future__ import annotations

import re

from patterns.example import Replacement, Walkthrough

URL = "http://127.0.0.1:8000"
RUN = ".venv/bin/python -m patterns.load_test"
OUT = "bench-results/load_test/example"
SLO = "patterns/load_test/slo.yaml"

VOLATILE: list[tuple[re.Pattern[str], Replacement]] = [
    (re.compile(r"(?m)^(step \d+|POST \S+|GET \S+|all)\s.*$"), r"\1 <figures>"),
    (re.compile(r"(?m)^(probe +\d+ \w+ +\d+ users).*?(ok|BREACH.*)$"), r"\1 <figures> \2"),
    (re.compile(r"(?m)^machine: .*$"), "machine: <machine>"),
    (re.compile(r"(measured|got) [\d.e+-]+"), r"\1 <n>"),
    (re.compile(r"sustainable: \d+ rps"), "sustainable: <n> rps"),
]


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("a smoke run: 2 users for 5 s, then 5 users for 5 s, judged by the pattern's SLO")
    w.sh(f"cat {SLO}", expect="p99 < 250ms")
    w.sh(
        f"{RUN} run web_single --host {URL} --steps 2:5,5:5 --slo {SLO} --out {OUT}/smoke",
        expect="SLO met",
        timeout=120,
    )
    w.sh(f"ls {OUT}/smoke", expect="report.html")
    w.sh(
        "jq -c '{failures: .totals.failures, steps: [.steps[].users], slo: .slo.passed, "
        f"machine: (.environment | keys)}}' {OUT}/smoke/summary.json",
        expect='"failures":0,"steps":[2,5],"slo":true',
    )
    w.note("the same result judged again, as CI would after the run")
    w.sh(f"{RUN} report --slo {SLO} {OUT}/smoke", expect="SLO met")
    w.note("capacity: double the users until the SLO breaks, bisect, confirm twice")
    w.sh(
        f"{RUN} capacity web_single --host {URL} --slo {SLO} --start 2 --max-users 8 "
        f"--seconds 3 --out {OUT}/capacity",
        expect="confirmed twice",
        timeout=240,
    )

    w.section("failure")
    w.note("an SLO no server meets: exit 1, naming each threshold broken")
    w.sh("cat patterns/load_test/examples/impossible.yaml", expect="abort_after")
    w.sh(
        f"{RUN} report --slo patterns/load_test/examples/impossible.yaml {OUT}/smoke",
        expect="SLO breached",
        code=1,
    )
    w.note("the same SLO during a run: a breach sustained for abort_after stops it early")
    w.sh(
        f"{RUN} run web_single --host {URL} --steps 2:60 "
        f"--slo patterns/load_test/examples/impossible.yaml --out {OUT}/abort",
        expect="aborted early: SLO breached for 2 s",
        code=1,
        timeout=120,
    )
    w.note("an SLO file with a mistake: exit 2, naming the field")
    w.sh(
        f"{RUN} report --slo patterns/load_test/examples/bad-slo.yaml {OUT}/smoke",
        expect="thresholds.'POST /predict'[1]",
        code=2,
    )
    w.note("the target down: exit 3, no load made")
    w.sh("make stop PATTERN=load_test PROCESS=api", expect="stopped")
    w.sh(
        f"{RUN} run web_single --host {URL} --steps 2:5 --ready-timeout 2",
        expect="is not ready",
        code=3,
    )
    w.sh("make start PATTERN=load_test PROCESS=api", expect="api")
    w.until("make status PATTERN=load_test", re.compile(r"8000 +ready"))
