"""inference_template's worked example: the README's output, produced by running it
(patterns/example.py). The run serves the example spec's service (examples/iris-rf.yaml):
MLflow over data/mlflow, the loader fetching iris-rf@production, the shared server configured
by the rendered ConfigMap's values.

make example PATTERN=inference_template
"""

from __future__ import annotations

from patterns.example import Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
SPEC = "patterns/inference_template/examples/iris-rf.yaml"
OUT = "build/services/iris-rf"
BAD = "build/services/bad-spec.yaml"
NEW = ".venv/bin/python -m patterns.inference_template new"
EXIT = 'echo "exit code $?"'
CONFIG = "patterns/inference_template/examples/iris-rf/overlay/config.env"


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("render a service from its spec (a fresh folder; --force replaces an old render)")
    w.sh(f"rm -rf {OUT} && {NEW} --spec {SPEC} --out {OUT}", expect=f"wrote {OUT}/test_smoke.py")
    w.note("the ConfigMap that configures the shared server: no code was generated")
    w.sh(f"cat {OUT}/overlay/config.env", expect="MLSP_EXPECT_LABELS=setosa,versicolor,virginica")
    w.note("a rerun is byte-identical")
    w.sh(
        f"cp -r {OUT} {OUT}.1 && {NEW} --spec {SPEC} --out {OUT} --force >/dev/null"
        f" && diff -r {OUT}.1 {OUT} && echo identical; rm -rf {OUT}.1",
        expect="identical",
    )
    w.note("the example's render, checked in, validated strictly as the pattern's overlay")
    w.sh(".venv/bin/python -m kube check inference_template", expect="0 errors")
    w.note("the service running (make run): the model the spec names, its labels")
    w.sh(
        curl_json(f"{URL}/predict", {"instances": [[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4]]}),
        expect='"model":{"name":"iris-rf"',
    )
    w.sh(
        f".venv/bin/python -m serving.oip_conformance {URL} --model iris-rf",
        expect="16/16 checks pass",
    )
    w.sh(
        f"SMOKE_URL={URL} .venv/bin/python -m pytest -q -p no:cacheprovider"
        " patterns/inference_template/examples/iris-rf/test_smoke.py 2>&1 | tail -1",
        expect="20 passed",
        timeout=120,
    )

    w.section("failure")
    w.note("a spec with an invalid field: exit 2, the field named, nothing written")
    w.sh(
        f"sed 's|models:/iris-rf@production|s3://bucket/iris-rf|' {SPEC} > {BAD}"
        f" && {NEW} --spec {BAD} --out build/services/bad 2>&1; {EXIT}",
        expect=lambda out: "model.uri: String should match pattern" in out and "exit code 2" in out,
    )
    w.sh(
        f"sed 's|\\[6.0, 2.7, 4.5, 1.5\\]|[6.0, 2.7]|' {SPEC} > {BAD}"
        f" && {NEW} --spec {BAD} --out build/services/bad 2>&1; {EXIT}",
        expect=lambda out: "examples[1] has 2 values" in out and "exit code 2" in out,
    )
    w.note("output already there: replaced only with --force")
    w.sh(
        f"{NEW} --spec {SPEC} --out {OUT} 2>&1; {EXIT}",
        expect=lambda out: "pass --force to replace them" in out and "exit code 2" in out,
    )
    w.note("the spec's server given another model (an alias moved): refused, exit 1, never ready")
    w.sh(
        f"(set -a; . {CONFIG}; MLSP_MODEL_DIR=data/models/iris-lr MLSP_PORT=8099"
        " .venv/bin/python -m patterns.inference_template.app 2>&1 | grep -o 'not the configured"
        ' model: model[^;"]*\'; exit ${PIPESTATUS[0]}); echo "exit code $?"',
        expect=lambda out: "the model has 'iris-lr'" in out and "exit code 1" in out,
    )
    w.note("the conformance suite on a model this server does not serve: each check that fails")
    w.note("says what it found (the first two here), and the suite exits 1")
    w.sh(
        f".venv/bin/python -m serving.oip_conformance {URL} --model iris-svc"
        " | grep -A1 '^FAIL' | sed -n 1,4p; echo \"exit code ${PIPESTATUS[0]}\"",
        expect="exit code 1",
    )
