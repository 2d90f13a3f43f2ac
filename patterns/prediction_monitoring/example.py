"""prediction_monitoring's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=prediction_monitoring
"""

from __future__ import annotations

import re

from patterns.example import Walkthrough

API = "http://127.0.0.1:8000"
MONITOR = "http://127.0.0.1:8002"
SHOW = ".venv/bin/python -m patterns.prediction_monitoring.show"
RUN = f"curl -s -X POST {MONITOR}/drift/run | {SHOW}"
RECEIVER = '"$(make url PATTERN=prediction_monitoring PROCESS=alert-receiver)"'
PROMETHEUS = '"$(make url PATTERN=prediction_monitoring PROCESS=prometheus)"'
TRAFFIC = f".venv/bin/python -m patterns.prediction_monitoring.traffic --url {API}"
LOGGED = (
    "python3 -c \"import sqlite3; c = sqlite3.connect('data/prediction_monitoring.db'); "
    "print(c.execute('SELECT COUNT(*) FROM prediction_log').fetchone()[0])\""
)
"""The traffic Job's request, logged (the table exists once the writer stored it)."""
EMPTY_LOG = (
    "python3 -c \"import sqlite3; c = sqlite3.connect('data/prediction_monitoring.db'); "
    "c.execute('DELETE FROM prediction_log'); c.commit()\""
)

PROCESS_ENV = {"traffic": {"MLSP_TRAFFIC_COUNT": "1"}}
"""The example sends its own traffic (below); the Job's default is 400 requests."""

VOLATILE = [
    (re.compile(r"(PSI |KS p |outlier rate )\d+\.\d+"), r"\1<n>"),
    (re.compile(r"(drifted: PSI )\d+\.\d+"), r"\1<n>"),
    (re.compile(r"(?m)^(mlsp_drift_psi\{[^}]*\} )[\d.e-]+$"), r"\1<n>"),
    (re.compile(r"(reason: .*?(?:psi|ks p|outlier rate) )[\d.e+-]+"), r"\1<n>"),
    (re.compile(r'"seconds":[\d.]+'), '"seconds":<n>'),
]
"""Statistics of rows a model trained again would classify alike but not bit for bit; the
verdicts and which feature drifted do not move."""


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the log is kept across runs: start from an empty one, once the traffic Job is done")
    w.note("and its request is in the log")
    w.until(
        "make status PATTERN=prediction_monitoring | grep -o 'traffic *completed'",
        "completed",
        within=60,
    )
    w.until(LOGGED, re.compile(r"^[1-9]\d*$", re.M))
    w.sh(EMPTY_LOG)
    w.note("an empty window has no numbers, only the reason")
    w.sh(RUN, expect="verdict insufficient_data: 0 instances")
    w.note("500 requests of flowers like the training data (rows of the card's reference sample)")
    w.sh(f"{TRAFFIC} --count 500", expect='"statuses":{"200":500}')
    w.until(RUN, re.compile(r"verdict (ok|warning): 500 instances"))
    w.note("every feature against its training deciles, in a browser: one plot per feature")
    w.sh(f"curl -s {MONITOR}/report | grep -o '<svg' | wc -l", expect="4")
    w.note("what Prometheus scrapes (Prometheus and Alertmanager run with the pattern)")
    w.sh(f"curl -s {MONITOR}/metrics | grep '^mlsp_drift_psi'", expect="petal_length")
    w.note("and what it makes of it: nothing fires (pending alerts, if any, are shown too)")
    w.until(f"curl -s {PROMETHEUS}/api/v1/alerts | {SHOW} alerts", "no alerts", within=60)

    w.note("now the world changes: 1,500 flowers with petals 2 cm longer than any in training")
    w.sh(
        f"{TRAFFIC} --count 1500 --drift petal_length=+2 --seed 1",
        expect='"statuses":{"200":1500}',
    )
    w.until(RUN, re.compile(r"verdict critical: 2000 instances"))
    w.note("Prometheus evaluates the rules, Alertmanager notifies the webhook receiver")
    w.until(
        f"curl -s {RECEIVER}/alerts | {SHOW} alerts",
        "firing MlspFeatureDriftCritical (critical) feature=petal_length",
        within=90,
        every=1.0,
    )

    w.section("failure")
    w.note("the monitor stops (scaled to 0): its gauges vanish from Prometheus, and after a")
    w.note("minute without them the stale-monitor alert pages someone (every other is blind)")
    w.sh("make stop PATTERN=prediction_monitoring PROCESS=monitor")
    w.until(
        f"curl -s {RECEIVER}/alerts | {SHOW} alerts | grep MlspMonitorStale",
        "firing MlspMonitorStale (critical)",
        within=150,
        every=2.0,
    )
    w.sh("make start PATTERN=prediction_monitoring PROCESS=monitor")
    w.until(f"curl -s {MONITOR}/readyz", '"ready":true')
    w.note("back: the log kept every prediction meanwhile, so the window is whole again")
    w.until(RUN, "verdict critical: 2000 instances")
