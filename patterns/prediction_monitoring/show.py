"""Print a drift result or a list of alerts (JSON on stdin) as a few readable lines.

    curl -s -X POST http://127.0.0.1:8002/drift/run | python -m patterns.prediction_monitoring.show
    curl -s "$RECEIVER/alerts" | python -m patterns.prediction_monitoring.show alerts
    curl -s "$PROMETHEUS/api/v1/alerts" | python -m patterns.prediction_monitoring.show alerts

The README's worked example uses it so its blocks stay short; the JSON itself is what the
monitor, the webhook receiver and Prometheus answer.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def drift_lines(body: dict[str, Any]) -> list[str]:
    """The verdict, the window, and per feature its PSI, KS p-value and verdict."""
    if "result" not in body:  # an error answer: show it as it is
        return [json.dumps(body)]
    result = body["result"]
    head = f"verdict {result['verdict']}: {result['instances']} instances"
    head += f" (minimum {result['min_instances']})"
    if body.get("stale"):
        head += f", STALE: {body.get('error')}"
    lines = [head]
    for reason in result.get("reasons") or []:
        lines.append(f"  reason: {reason}")
    for f in result.get("features") or []:
        lines.append(
            f"  {f['name']:<13} PSI {_number(f['psi'])}  KS p {_number(f['ks_pvalue'], 4)}"
            f"  {f['verdict']}"
        )
    if result.get("class_psi") is not None:
        rate = result.get("outlier_rate")
        lines.append(f"  classes PSI {_number(result['class_psi'])}  outlier rate {_number(rate)}")
    return lines


def alert_lines(body: dict[str, Any]) -> list[str]:
    """One line per alert: the receiver's list, or Prometheus' /api/v1/alerts."""
    alerts = body.get("alerts")
    if alerts is None:  # Prometheus: {"status": "success", "data": {"alerts": [...]}}
        alerts = (body.get("data") or {}).get("alerts") or []
    lines = []
    for a in alerts:
        labels = a.get("labels") or {}
        state = a.get("state") or a.get("status")
        where = f" feature={labels['feature']}" if "feature" in labels else ""
        summary = (a.get("annotations") or {}).get("summary", "")
        lines.append(
            f"{state} {labels.get('alertname')} ({labels.get('severity')}){where}: {summary}"
        )
    return lines or ["no alerts"]


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "drift"
    if what not in ("drift", "alerts"):
        print("usage: show [drift|alerts] < JSON", file=sys.stderr)
        return 2
    body = json.load(sys.stdin)
    print("\n".join(drift_lines(body) if what == "drift" else alert_lines(body)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
