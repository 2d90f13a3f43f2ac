"""shadow_ab's record: the shadow_log table (one row per input row: both models' answers side
by side), its batched writer, and the report computed from it.

The rows go through serving/db.py's BatchWriter: a bounded in-memory queue (a full queue drops
and counts, never blocks a request) and inserts in batches (500 rows or 0.5 s) in one
transaction, `ON CONFLICT DO NOTHING` on (request_id, row_index). The table is a soft
dependency: down, the rows are dropped and counted, the clients see nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from prometheus_client import Counter, Gauge

from serving.db import BatchWriter, Db, Store

log = logging.getLogger("serving")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS shadow_log ("
    " request_id TEXT NOT NULL, row_index INTEGER NOT NULL, ts DOUBLE PRECISION NOT NULL,"
    " primary_version TEXT NOT NULL, primary_label TEXT NOT NULL, primary_probs TEXT NOT NULL,"
    " primary_ms DOUBLE PRECISION NOT NULL,"
    " shadow_version TEXT, shadow_label TEXT, shadow_probs TEXT, shadow_ms DOUBLE PRECISION,"
    " shadow_error TEXT, agree INTEGER, abs_dp DOUBLE PRECISION,"
    " PRIMARY KEY (request_id, row_index))",
    "CREATE INDEX IF NOT EXISTS shadow_log_ts ON shadow_log (ts)",
)
COLUMNS = (
    "request_id, row_index, ts, primary_version, primary_label, primary_probs, primary_ms,"
    " shadow_version, shadow_label, shadow_probs, shadow_ms, shadow_error, agree, abs_dp"
)
INSERT = (  # constants only: no value is ever formatted into it
    f"INSERT INTO shadow_log ({COLUMNS}) VALUES ({', '.join(['%s'] * 14)})"  # noqa: S608
    " ON CONFLICT (request_id, row_index) DO NOTHING"
)
Row = tuple[Any, ...]

CALLS = Counter(
    "mlsp_shadow_calls", "Shadow calls by outcome (ok, error, timeout).", ["service", "outcome"]
)
DROPPED = Counter(
    "mlsp_shadow_dropped",
    "Requests not shadowed or pairs not recorded, by reason (cap, log_full, log_error).",
    ["service", "reason"],
)
GAUGES = {
    name: Gauge(f"mlsp_shadow_{name}", doc, ["service"], multiprocess_mode="max")
    for name, doc in (
        ("agreement", "Share of rows where the shadow's label equals the primary's."),
        ("mean_abs_dp", "Mean total-variation distance between the two models' probabilities."),
        ("error_rate", "Share of shadowed requests the shadow failed (error or timeout)."),
        ("p95_ratio", "The shadow's p95 latency over the primary's."),
        ("go", "1: the report's verdict is go; 0: no_go or not enough data."),
        ("pairs", "Rows compared in the report's window."),
    )
}


def well_formed(body: dict[str, Any] | None, rows: int) -> bool:
    """A model server's answer with a label and probabilities for each of `rows` rows."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), dict):
        return False
    preds = body.get("predictions")
    return (
        isinstance(preds, list)
        and len(preds) == rows
        and all(
            isinstance(p, dict) and "label" in p and isinstance(p.get("probabilities"), dict)
            for p in preds
        )
    )


def pair_rows(
    rid: str,
    primary: dict[str, Any],
    primary_ms: float,
    shadow: dict[str, Any] | None,
    shadow_ms: float | None,
    error: str | None,
) -> list[Row]:
    """One row per input row: the primary's answer and the shadow's (or its error)."""
    now = time.time()
    p_model, rows = primary["model"], primary["predictions"]
    s_rows = shadow["predictions"] if shadow is not None else [None] * len(rows)
    s_version = str(shadow["model"].get("version")) if shadow is not None else None
    out = []
    for i, (p, s) in enumerate(zip(rows, s_rows, strict=True)):
        agree, dp, s_label, s_probs = None, None, None, None
        if s is not None:
            s_label, s_probs = str(s["label"]), s["probabilities"]
            agree = int(s_label == str(p["label"]))
            classes = set(p["probabilities"]) | set(s_probs)
            dp = 0.5 * sum(
                abs(float(p["probabilities"].get(c, 0.0)) - float(s_probs.get(c, 0.0)))
                for c in classes
            )
        out.append(
            (rid, i, now, str(p_model.get("version")), str(p["label"]),
             orjson.dumps(p["probabilities"]).decode(), primary_ms,
             s_version, s_label, None if s_probs is None else orjson.dumps(s_probs).decode(),
             shadow_ms, error, agree, dp)
        )  # fmt: skip
    return out


def writer(store: Store, service: str) -> BatchWriter:
    """The pairs' way into the table: serving/db.py's batch writer, its drops counted."""

    def dropped(why: str, n: int) -> None:
        DROPPED.labels(service, f"log_{why}").inc(n)

    return BatchWriter(store, SCHEMA, INSERT, on_drop=dropped)


@dataclass(frozen=True)
class Thresholds:
    min_pairs: int = 100
    agreement: float = 0.95
    p95_ratio: float = 1.2
    error_rate: float = 0.01


def _pct(values: np.ndarray[Any, Any], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def report(db: Db, since: float, limit: int, t: Thresholds) -> dict[str, Any]:
    """The comparison over the rows logged since `since` (at most `limit`, newest first)."""
    cur = db.execute(
        "SELECT ts, request_id, primary_version, shadow_version, primary_ms, shadow_ms,"
        " shadow_error, agree, abs_dp FROM shadow_log WHERE ts >= %s ORDER BY ts DESC LIMIT %s",
        (since, limit),
    )
    rows = cur.fetchall()[::-1]
    compared = [r for r in rows if r[7] is not None]
    per_request: dict[str, tuple[float, float | None, bool]] = {}
    for r in rows:
        per_request.setdefault(
            r[1], (float(r[4]), None if r[5] is None else float(r[5]), r[6] is not None)
        )
    p_ms = np.array([v[0] for v in per_request.values()])
    s_ms = np.array([v[1] for v in per_request.values() if v[1] is not None and not v[2]])
    errors = sum(1 for v in per_request.values() if v[2])
    agree = np.array([r[7] for r in compared], dtype=np.float64)
    dp = np.array([r[8] for r in compared], dtype=np.float64)
    out: dict[str, Any] = {
        "pairs": len(compared),
        "requests": len(per_request),
        "primary_versions": sorted({str(r[2]) for r in rows}),
        "shadow_versions": sorted({str(r[3]) for r in rows if r[3] is not None}),
        "agreement": float(agree.mean()) if len(agree) else None,
        "mean_abs_dp": float(dp.mean()) if len(dp) else None,
        "shadow_error_rate": errors / len(per_request) if per_request else None,
        "latency_ms": {
            "primary": {"p50": _pct(p_ms, 50), "p95": _pct(p_ms, 95)},
            "shadow": {"p50": _pct(s_ms, 50), "p95": _pct(s_ms, 95)},
        },
    }
    lat = out["latency_ms"]
    out["latency_delta_ms"] = {
        q: None if lat["shadow"][q] is None or lat["primary"][q] is None
        else lat["shadow"][q] - lat["primary"][q]
        for q in ("p50", "p95")
    }  # fmt: skip
    ratio = (
        lat["shadow"]["p95"] / lat["primary"]["p95"]
        if lat["shadow"]["p95"] is not None and lat["primary"]["p95"]
        else None
    )
    out["p95_ratio"] = ratio
    out["verdict"], out["reasons"] = verdict(out, t)
    out["series"] = {
        "agreement": _over_time([(r[0], r[7]) for r in compared]),
        "abs_dp": [float(x) for x in dp[-5000:]],
        "primary_ms": [float(x) for x in p_ms[-5000:]],
        "shadow_ms": [float(x) for x in s_ms[-5000:]],
    }
    return out


def verdict(r: dict[str, Any], t: Thresholds) -> tuple[str, list[str]]:
    """go only when every criterion holds on enough pairs; each failed one is a reason. The
    error rate is judged on requests, so a shadow that always fails (and so leaves no pair to
    compare) is a no_go, not a lack of data."""
    if r["requests"] < t.min_pairs:
        return "insufficient_data", [f"{r['requests']} requests, at least {t.min_pairs} needed"]
    reasons = []
    if r["shadow_error_rate"] > t.error_rate:
        reasons.append(f"shadow errors {r['shadow_error_rate']:.2%} > {t.error_rate:.0%}")
    if r["pairs"] < t.min_pairs:
        if reasons:
            return "no_go", reasons
        return "insufficient_data", [f"{r['pairs']} pairs compared, at least {t.min_pairs}"]
    if r["agreement"] < t.agreement:
        reasons.append(f"agreement {r['agreement']:.3f} < {t.agreement}")
    if r["p95_ratio"] is None or r["p95_ratio"] > t.p95_ratio:
        shown = "n/a" if r["p95_ratio"] is None else f"{r['p95_ratio']:.2f}"
        reasons.append(f"shadow p95 {shown}x the primary's > {t.p95_ratio}x")
    if reasons:
        return "no_go", reasons
    return "go", [
        f"agreement {r['agreement']:.3f} >= {t.agreement}",
        f"shadow p95 {r['p95_ratio']:.2f}x the primary's <= {t.p95_ratio}x",
        f"shadow errors {r['shadow_error_rate']:.2%} <= {t.error_rate:.0%}",
    ]


def _over_time(points: list[tuple[float, int]], buckets: int = 20) -> list[tuple[str, float]]:
    """Agreement per time bucket, labelled with its start (HH:MM:SS UTC)."""
    if not points:
        return []
    start, end = points[0][0], points[-1][0]
    width = max((end - start) / buckets, 1e-9)
    sums: dict[int, list[int]] = {}
    for ts, agree in points:
        sums.setdefault(min(int((ts - start) / width), buckets - 1), []).append(agree)
    return [
        (time.strftime("%H:%M:%S", time.gmtime(start + b * width)), sum(v) / len(v))
        for b, v in sorted(sums.items())
    ]
