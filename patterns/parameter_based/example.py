"""parameter_based's worked example: the README's output, produced by running it
(patterns/example.py).

make example PATTERN=parameter_based
"""

from __future__ import annotations

import json

from patterns.example import CODE, Walkthrough, curl_json, status_is

PROXY = "http://127.0.0.1:8000"
PREDICT = f"{PROXY}/predict"
FILE = "data/parameter_based/parameters.yaml"
SHIPPED = "manifests/patterns/parameter_based/parameters.yaml"
BROKEN = "data/parameter_based/broken.yaml"
ONE_OF_EACH = {"instances": [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]]}
SHOW = (
    '.venv/bin/python -c "import json,sys; a=json.load(sys.stdin); '
    "print(a['parameters'], a['status'], a.get('called'), "
    "[p['label'] for p in a.get('predictions', [])])\""
)
"""The answer in one line: the parameters' digest, status, the backends called, the labels."""
PARAMETERS = f"curl -s {PROXY}/parameters"
READY = f"curl -s {PROXY}/readyz"


def write(yaml: str) -> str:
    """The step that replaces the file whole, as the kubelet swaps a ConfigMap (a reader never
    sees half a file): written aside, then renamed over it."""
    return f"printf '{yaml}' > {FILE}.new && mv {FILE}.new {FILE}"


def predict(body: object = ONE_OF_EACH) -> str:
    return f"{curl_json(PREDICT, body)} | {SHOW}"


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("the parameters the ConfigMap ships (the book's defaults), as the local file")
    w.sh(f"mkdir -p data/parameter_based && cp {SHIPPED} {FILE}")
    w.until(PARAMETERS, '"source":"' + FILE)
    w.note("one flower of each class: setosa's model says 0.98 >= 0.9, setosa decides;")
    w.note("versicolor's says 0.66 < 0.85: abstain; virginica is off, its model is not called")
    w.sh(curl_json(PREDICT, ONE_OF_EACH), expect='"called":["setosa","versicolor"]')
    w.note("the business switches virginica on and accepts versicolor from 0.6: edit the file")
    w.note("(written aside, then renamed over it, as the kubelet swaps a ConfigMap's files)")
    w.sh(write("classes:\\n  versicolor: {threshold: 0.6}\\n  virginica: {active: true}\\n"))
    w.note("no restart: within a second the proxy validated it and swapped it in")
    w.until(PARAMETERS, '"calls":["setosa","versicolor","virginica"]')
    w.sh(predict(), expect="['setosa', 'versicolor', 'virginica']")
    w.note("the kill switch: nothing is called, every answer says so")
    w.sh(write("activate_all: false\\n"))
    w.until(predict(), "disabled")
    w.note("every answer names the parameters that made it (also in the X-Parameters-Digest")
    w.note("header and the access log line); the metrics show which are served")
    w.sh(f"curl -s {PROXY}/metrics | grep -E '^mlsp_config_(info|valid)'", expect="} 1.0")

    w.section("failure")
    w.sh(write("classes:\\n  virginica: {active: true}\\n"))
    w.until(predict(), "'virginica']")
    w.note("a bad edit (a threshold of 9) is refused: the last good parameters stay, the")
    w.note("service stays ready, and /readyz says what is wrong")
    w.sh(write("classes:\\n  virginica: {active: true, threshold: 9}\\n"))
    w.until(READY, "refused")
    w.sh(predict(), expect="['setosa', 'abstain', 'virginica']")
    w.sh(f"curl -s {PROXY}/metrics | grep -E '^mlsp_config_(valid|reloads_total)'")
    w.note("a typo in a class name would never decide: refused too")
    w.sh(write("classes:\\n  virginca: {active: true}\\n"))
    w.until(READY, "virginca is active but has no backend")
    w.note("a backend that is down only matters while its class is active")
    w.sh(write("classes:\\n  virginica: {active: false}\\n"))
    w.until(PARAMETERS, '"calls":["setosa","versicolor"]')
    w.sh("make stop PATTERN=parameter_based PROCESS=virginica", expect="virginica: stopped")
    w.sh(predict(), expect="['setosa', 'abstain', 'abstain']")
    w.sh(write("classes:\\n  virginica: {active: true}\\n"))
    w.until(PARAMETERS, '"calls":["setosa","versicolor","virginica"]')
    w.sh(
        curl_json(PREDICT, ONE_OF_EACH, flags=f"-s {CODE}"),
        expect=status_is(503, '"dependency":"virginica"'),
    )
    w.sh("make start PATTERN=parameter_based PROCESS=virginica", expect="virginica: running")
    w.note("a file that is invalid when the proxy starts: it refuses to start (exit 2), naming")
    w.note("the field; on Kubernetes the old pods keep serving while the new one crash-loops")
    w.sh(f"printf 'classes:\\n  setosa: {{threshold: -1}}\\n' > {BROKEN}")
    backends = json.dumps([{"name": "setosa", "url": "http://127.0.0.1:8001"}])
    w.sh(
        f"MLSP_BACKENDS='{backends}' MLSP_PARAMETERS_FILE={BROKEN} MLSP_PORT=8099 "
        ".venv/bin/python -m patterns.parameter_based.proxy; echo exit $?",
        expect="exit 2",
    )
