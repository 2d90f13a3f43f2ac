"""web_single's worked example: the README's output, produced by running it (patterns/example.py).

make example PATTERN=web_single
"""

from __future__ import annotations

from patterns.example import CODE, Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
PREDICT = f"{URL}/predict"


def walk(w: Walkthrough) -> None:
    w.section("worked")
    rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4]]
    w.sh(curl_json(PREDICT, {"instances": rows}), expect='"label":"virginica"')
    tensor = {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [6.0, 2.7, 4.5, 1.5]}
    w.sh(
        curl_json(f"{URL}/v2/models/iris-svc/infer", {"inputs": [tensor]}),
        expect='"model_name":"iris-svc"',
    )
    w.note("the public Triton client, with its defaults (binary tensors both ways)")
    w.sh(
        f".venv/bin/python patterns/web_single/examples/triton_client.py {URL}",
        expect="binary outputs: [16, 24] bytes",
    )
    w.sh(f"curl -s {URL}/readyz", expect='"ready":true')

    w.section("failure")
    w.sh(curl_json(PREDICT, {"instances": [[5.1, 3.5, 1.4]]}), expect='"field":"instances[0]"')
    w.sh(
        curl_json(PREDICT, '{"instances":[[5.1,3.5,NaN,0.2]]}'),
        expect='"field":"instances[0][2]"',
    )
    w.sh(curl_json(PREDICT, {"instances": []}), expect='"field":"instances"')
    w.sh(curl_json(PREDICT, "not json", flags=f"-s {CODE}"), expect=" 400")
    w.sh(
        f"head -c 2000000 /dev/zero | curl -s -w ' %{{http_code}}\\n' {PREDICT} "
        "-H 'Content-Type: application/json' --data-binary @-",
        expect=" 413",
    )
    w.sh(
        f"""curl -s {URL}/metrics | grep '^mlsp_requests_total{{route="/predict"'""",
        expect='status="422"',
    )
    w.note("a crash: the runner restarts the process with backoff, as the kubelet would")
    w.sh("make kill PATTERN=web_single PROCESS=api", expect="killed")
    w.until("make status PATTERN=web_single", "restarts=1  http://127.0.0.1:8000  ready")
    w.sh(curl_json(PREDICT, {"instances": [[5.1, 3.5, 1.4, 0.2]]}), expect='"label":"setosa"')
