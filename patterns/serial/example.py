"""serial's worked example: the README's output, produced by running it (patterns/example.py).

make example PATTERN=serial
"""

from __future__ import annotations

from patterns.example import CODE, Walkthrough, curl_json, status_is

CLASSIFY = "http://127.0.0.1:8001"
PROXY = "http://127.0.0.1:8002"
PREDICT = f"{PROXY}/predict"
INLIER = [5.1, 3.4, 1.5, 0.2]
OUTLIER = [7.0, 3.2, 4.7, 1.4]
CLASSIFY_COUNT = f"curl -s {CLASSIFY}/metrics | grep '^mlsp_requests_total{{route=\"/predict\"'"


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("an inlier and an outlier in one batch: the gate stops the second row")
    w.sh(
        curl_json(PREDICT, {"instances": [INLIER, OUTLIER]}),
        expect=lambda out: (
            '"label":"setosa"' in out
            and '"label":"unknown","stopped_by":"outlier"' in out
            and '"outcome":"ok","rows":2,"stopped":1}' in out
            and '"outcome":"ok","rows":1}]' in out
        ),
    )
    w.note("classify saw one row, in one call")
    w.sh(CLASSIFY_COUNT, expect='status="200"} 1.0')
    w.note("only the outlier: classify is not called at all")
    w.sh(
        curl_json(PREDICT, {"instances": [OUTLIER]}),
        expect='{"name":"classify","outcome":"not_run","rows":0}',
    )
    w.sh(CLASSIFY_COUNT, expect='status="200"} 1.0')

    w.section("failure")
    w.note("bad input: refused by stage 1 and relayed with the trace so far")
    w.sh(
        curl_json(PREDICT, {"instances": [[1.0, 2.0]]}, flags=f"-s {CODE}"),
        expect=status_is(422, '"field":"instances[0]"'),
    )
    w.note("a budget already spent on arrival: 504 before any stage is called")
    w.sh(
        curl_json(
            PREDICT,
            {"instances": [INLIER]},
            flags=f'-s {CODE} -H "X-Request-Deadline-Ms: $(( $(date +%s%3N) + 1 ))"',
        ),
        expect=status_is(504, '"code":"deadline_exceeded"'),
    )
    w.note("stage 2 goes away (held down, as if scaled to 0)")
    w.sh("make stop PATTERN=serial PROCESS=classify", expect="classify: stopped")
    w.sh(
        curl_json(PREDICT, {"instances": [INLIER]}, flags="-si"),
        expect=lambda out: "503 Service Unavailable" in out and '"dependency":"classify"' in out,
    )
    w.note("an outlier needs no stage 2: still answered")
    w.sh(curl_json(PREDICT, {"instances": [OUTLIER]}), expect='"label":"unknown"')
    w.sh(
        f"curl -s {PROXY}/metrics | grep ^mlsp_dependency_up",
        expect='mlsp_dependency_up{dependency="classify",service="serial-proxy"} 0.0',
    )
    w.sh("make start PATTERN=serial PROCESS=classify", expect="classify: running")
    w.until("make status PATTERN=serial", "http://127.0.0.1:8001  ready")
    w.sh(curl_json(PREDICT, {"instances": [INLIER, OUTLIER]}), expect='"label":"setosa"')
