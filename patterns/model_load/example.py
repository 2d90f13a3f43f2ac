"""model_load's worked example: the README's output, produced by running it
(patterns/example.py). The run starts its own MLflow server over data/mlflow; the loader (an
init process, as an initContainer) resolves iris-svc@production, verifies it and writes it
into the run's folder; then the server starts on what the loader wrote.

make example PATTERN=model_load
"""

from __future__ import annotations

import re

from patterns.example import Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
MLFLOW = '"$(make url PATTERN=model_load PROCESS=mlflow)"'
PRINT = 'import json, sys; m = json.load(sys.stdin); print(m["name"], m["version"], m["sha256"])'
ALIAS = (
    f"curl -s {MLFLOW}'/api/2.0/mlflow/registered-models/alias?name=iris-svc&alias=production'"
    ' | python3 -c \'import json, sys; v = json.load(sys.stdin)["model_version"];'
    ' print(v["name"], v["version"], v["tags"])\''
)
LOADER = ".venv/bin/python -m serving.loader --dest data/loaded/iris-svc"
LAST_LINE = '2>&1 | tail -1; echo "exit code ${PIPESTATUS[0]}"'

VOLATILE = [(re.compile(r'"retry_in_s":[\d.]+'), '"retry_in_s":<n>')]
"""The loader's backoff is jittered."""


def loader_fails(w: Walkthrough, tracking: str, args: str, shows: str) -> None:
    """Run the loader against `tracking` with `--uri ARGS`: its last log line shows `shows`,
    and it exits 1."""
    w.sh(
        f"MLFLOW_TRACKING_URI={tracking} {LOADER} --uri {args} {LAST_LINE}",
        expect=lambda out: shows in out and "exit code 1" in out,
        timeout=30,
    )


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the registry: which version the alias names, and its sha256 tag")
    w.sh(ALIAS, expect=re.compile(r"^iris-svc 1 ", re.M))
    w.note("what the server serves: the version the loader resolved, the same sha256")
    w.sh(f"curl -s {URL}/metadata | python3 -c '{PRINT}'", expect=re.compile(r"^iris-svc 1 "))
    w.sh(
        curl_json(f"{URL}/predict", {"instances": [[6.3, 3.3, 6.0, 2.5]]}),
        expect='"label":"virginica"',
    )
    w.sh(f"curl -s {URL}/metrics | grep '^mlsp_model_info'", expect='version="1"')

    w.section("failure")
    w.note("the loader alone, as the init step runs it: MLflow unreachable, a 3 s deadline;")
    w.note("it retries with jittered backoff, then exits 1 (the last line of its log)")
    loader_fails(w, "http://127.0.0.1:1", "models:/iris-svc@production --deadline 3", "unreachable")
    w.note("an alias nobody set (a fresh cluster whose training Job has not run yet): the")
    w.note("same retries, then exit 1")
    loader_fails(w, MLFLOW, "models:/iris-svc@nope --deadline 3", "not in the registry yet")
    w.note("a URI that can never work: exit 1 at once, no retry")
    loader_fails(w, MLFLOW, "iris-svc", '"retryable":false')
    w.sh("ls data/loaded 2>&1", expect="No such file or directory", code=2)
    w.note("the server keeps serving what it verified at start")
    w.sh(f"curl -s {URL}/readyz", expect='"ready":true')
