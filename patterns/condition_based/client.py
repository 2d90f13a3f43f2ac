"""condition_based's demo client: one request per rule, built from the rules the router
serves (GET /routes), so its headers always match them (the book's client sent a header no
rule read). Each request must come back from the rule it was built for (`X-Route-Rule`); a
rule an earlier one shadows is reported, and the client exits 1.

- header and query conditions become the request's headers and query parameters;
- an `image/*` content type sends a PNG digit to /predict/image (others, rows to /predict);
- a time window cannot be sent at another hour: it is asked of /routes/explain at its start,
  with the rule's other conditions; so is the default, at an hour no window holds.

    python -m patterns.condition_based.client --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from typing import Any

import httpx

from serving.preprocessing import render_digit

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
DIGIT = [0.0] * 64
for _r in range(1, 7):
    DIGIT[_r * 8 + 4] = 16.0  # a one: a vertical stroke


def request_for(rule: dict[str, Any]) -> dict[str, Any]:
    """What to send for `rule`: path, headers, query, and either json or an image."""
    when = rule.get("when") or {}
    headers = dict(when.get("header") or {})
    sent: dict[str, Any] = {"headers": headers, "params": dict(when.get("query") or {})}
    media = when.get("content_type")
    if media and fnmatch.fnmatchcase("image/png", media):
        headers["Content-Type"] = "image/png"
        return {**sent, "path": "/predict/image", "content": render_digit(DIGIT)}
    return {**sent, "path": "/predict", "json": ROW}


def quiet_hour(rules: list[dict[str, Any]]) -> str:
    """An HH:MM no time window holds (for the default rule)."""
    windows = [r["when"]["time"] for r in rules if (r.get("when") or {}).get("time")]
    for hour in range(24):
        t = f"{hour:02d}:00"
        if not any(_holds(w, t) for w in windows):
            return t
    raise SystemExit("every hour is in some window: the default can only be explained")


def _holds(window: dict[str, str], t: str) -> bool:
    start, end = window["start"][:5], window["end"][:5]
    return start <= t < end if start < end else t >= start or t < end


def demo(client: httpx.Client, rule: dict[str, Any], rules: list[dict[str, Any]]) -> str:
    when = rule.get("when") or {}
    send = request_for(rule)
    if when.get("time") or not when:
        at = when["time"]["start"][:5] if when.get("time") else quiet_hour(rules)
        params = {**send["params"], "at": at}
        answer = client.get("/routes/explain", headers=send["headers"], params=params).json()
        return f"explained at {at}: rule {answer['rule']} -> {answer['backend']}"
    resp = client.post(
        send["path"],
        headers=send["headers"],
        params=send["params"],
        json=send.get("json"),
        content=send.get("content"),
    )
    model = (resp.json().get("model") or {}).get("name") if resp.status_code == 200 else None
    return (
        f"sent: rule {resp.headers.get('x-route-rule')} -> "
        f"{resp.headers.get('x-routed-to')}, {resp.status_code}, answered by {model}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the router")
    args = parser.parse_args(argv)
    failed = 0
    with httpx.Client(base_url=args.url, timeout=15) as client:
        rules = client.get("/routes").json()["rules"]
        for rule in rules:
            line = demo(client, rule, rules)
            ok = f"rule {rule['name']} -> {rule['backend']}" in line
            failed += not ok
            print(f"{rule['name']:>10}: {line}{'' if ok else '  <- NOT this rule'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
