"""parallel's worked example: the README's output, produced by running it (patterns/example.py).

make example PATTERN=parallel
"""

from __future__ import annotations

import re

from patterns.example import CODE, Walkthrough, curl_json, status_is

SETOSA = "http://127.0.0.1:8000"
PROXY = "http://127.0.0.1:8003"
PREDICT = f"{PROXY}/predict"
ROWS = [[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.7, 3.0, 5.8, 2.2]]
LATENCY_MS = 200
TIMED = "-s -w '\\nHTTP %{http_code} in %{time_total} s\\n'"

PROCESS_ENV = {
    name: {"MLSP_SIMULATED_LATENCY_MS": str(LATENCY_MS)}
    for name in ("setosa", "versicolor", "virginica")
}
"""A demo setting: every backend takes 200 ms per call, so the proxy's latency shows it waits
for the slowest call, not the sum of the three."""


def took(output: str) -> float:
    """The seconds curl's `-w` line reports."""
    found = re.search(r"in (\d+\.\d+) s$", output.rstrip())
    return float(found[1]) if found else float("inf")


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("one backend alone: one 200 ms call")
    w.sh(
        curl_json(f"{SETOSA}/predict", {"instances": [ROWS[0]]}, flags=TIMED),
        expect=lambda out: "HTTP 200" in out and took(out) >= LATENCY_MS / 1000,
    )
    w.note("one row per class through the proxy: three 200 ms calls at once, one answer in")
    w.note("about 200 ms (one after another they would take 600 ms)")
    w.sh(
        curl_json(PREDICT, {"instances": ROWS}, flags=TIMED),
        expect=lambda out: (
            all(f'"label":"{c}"' in out for c in ("setosa", "versicolor", "virginica"))
            and '"partial":false,"missing":[]' in out
            and "HTTP 200" in out
            and LATENCY_MS / 1000 <= took(out) < 2.25 * LATENCY_MS / 1000
        ),
    )

    w.section("failure")
    w.note("bad input: a backend's 422, relayed as is")
    w.sh(
        curl_json(PREDICT, {"instances": [[5.0, 3.4]]}, flags=f"-s {CODE}"),
        expect=status_is(422, '"field":"instances[0]"'),
    )
    w.note("a budget already spent on arrival: 504 before any backend is called")
    w.sh(
        curl_json(
            PREDICT,
            {"instances": [ROWS[0]]},
            flags=f'-s {CODE} -H "X-Request-Deadline-Ms: $(( $(date +%s%3N) + 1 ))"',
        ),
        expect=status_is(504, '"code":"deadline_exceeded"'),
    )
    w.note("one backend goes away (held down, as if scaled to 0); require_all: 503 naming it")
    w.sh("make stop PATTERN=parallel PROCESS=virginica", expect="virginica: stopped")
    w.sh(
        curl_json(PREDICT, {"instances": ROWS}, flags="-si"),
        expect=lambda out: (
            "503 Service Unavailable" in out
            and "retry-after: 1" in out
            and '"dependency":"virginica"' in out
        ),
    )
    w.sh(
        f"curl -s {PROXY}/metrics | grep ^mlsp_dependency_up",
        expect='mlsp_dependency_up{dependency="virginica",service="parallel-proxy"} 0.0',
    )
    w.sh("make start PATTERN=parallel PROCESS=virginica", expect="virginica: running")
    w.until("make status PATTERN=parallel", "http://127.0.0.1:8002  ready")
    w.sh(curl_json(PREDICT, {"instances": ROWS}), expect='"partial":false,"missing":[]')
