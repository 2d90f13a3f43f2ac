"""prediction_monitoring, the monitor: drift of the logged traffic against the model's card.

Every MLSP_MONITOR_INTERVAL_SECONDS (default 60) it reads the last
MLSP_MONITOR_WINDOW_SECONDS (default 600) of `prediction_log` (serving/predlog.py) for the
model in MLSP_MODEL_DIR (only its card is read: the reference the drift is measured against),
through serving/db.py (MLSP_DATABASE_URL: SQLite locally, PostgreSQL on Kubernetes), computes
the drift (serving/drift.py) and publishes it. The book reads 2 minutes every minute; 10
minutes here because the statistics need instances: below MLSP_MONITOR_MIN_INSTANCES (200)
the verdict is `insufficient_data`, and a 2-minute window of a quiet service seldom holds 200,
while at 200 instances the noise floor of a 10-bin PSI (~9/n = 0.045) is already half the
warning threshold. A window overlapping the last one by 9 of 10 minutes also smooths a short
burst that an alert with `for:` would chase. At most MLSP_MONITOR_MAX_ROWS log rows (the
newest) are read per run; the request rate always counts the whole window.

Routes: GET /drift (the latest result as JSON, `stale` when the last run failed), POST
/drift/run (run now, answer the fresh result), GET /report (an HTML report: per feature the
reference and window histograms on the card's decile bins, the numbers, the verdicts).

Metrics (no `service` label: one monitor per served model):
`mlsp_drift_psi{feature}`, `mlsp_drift_ks_pvalue{feature}`, `mlsp_drift_mean_deviation{feature}`,
`mlsp_drift_class_psi`, `mlsp_outlier_rate`, `mlsp_monitor_window_instances`,
`mlsp_monitor_request_rate`, `mlsp_monitor_insufficient_data` (1/0), `mlsp_monitor_stale` (1/0),
`mlsp_monitor_last_run_timestamp_seconds` (last successful run), `mlsp_monitor_runs{outcome}`.
Below the minimum, every drift gauge is NaN (set, not removed): the series stay, a rule such as
`mlsp_drift_psi > 0.25` is false on NaN, and `mlsp_monitor_insufficient_data` says why. The
outlier rate is NaN too when no logged row carries an outlier flag. When the database is down
the gauges keep the last computed window (not refreshed, not faked) and
`mlsp_monitor_last_run_timestamp_seconds` stops moving, which is what the monitor-stale alert
reads; /drift and /report serve that result with `stale: true` and the error. The database is
the hard dependency (/readyz).

    MLSP_DATABASE_URL=... MLSP_MODEL_DIR=data/models/iris-svc \\
        python -m patterns.prediction_monitoring.monitor
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from prometheus_client import Counter, Gauge
from pydantic import Field

from serving import drift, predlog
from serving.app import create_app
from serving.db import Db, DbSettings, Store
from serving.errors import Unavailable
from serving.inference import ERRORS, json_response
from serving.model import ModelCard, read_card
from serving.settings import ServingSettings
from serving.state import ServiceState

log = logging.getLogger("serving")

PSI = Gauge("mlsp_drift_psi", "PSI of a feature on the training decile bins.", ["feature"])
KS_PVALUE = Gauge(
    "mlsp_drift_ks_pvalue", "KS two-sample p-value against the reference sample.", ["feature"]
)
MEAN_DEVIATION = Gauge(
    "mlsp_drift_mean_deviation",
    "|window mean - training mean| / |training mean| (the book's baseline).",
    ["feature"],
)
CLASS_PSI = Gauge("mlsp_drift_class_psi", "PSI of the predicted classes against the prior.")
OUTLIER_RATE = Gauge("mlsp_outlier_rate", "Share of window instances flagged as outliers.")
INSTANCES = Gauge("mlsp_monitor_window_instances", "Instances (rows) in the last window.")
REQUEST_RATE = Gauge(
    "mlsp_monitor_request_rate", "Requests per second over the window (sampling undone)."
)
INSUFFICIENT = Gauge(
    "mlsp_monitor_insufficient_data", "1 when the last window is below the minimum."
)
STALE = Gauge("mlsp_monitor_stale", "1 when the last run failed (the result shown is older).")
LAST_RUN = Gauge(
    "mlsp_monitor_last_run_timestamp_seconds", "When the last successful run finished."
)
RUNS = Counter("mlsp_monitor_runs", "Monitor runs, by outcome (ok, failed).", ["outcome"])


class MonitorSettings(ServingSettings, DbSettings):
    service: str = "monitor"
    pattern: str = "prediction_monitoring"
    statement_timeout_ms: int = 10_000
    connect_timeout_seconds: int = 2
    monitor_interval_seconds: float = Field(60.0, ge=1, le=86_400)
    """Seconds between two drift runs of the monitor."""
    monitor_window_seconds: float = Field(600.0, ge=10, le=7 * 86_400)
    """Length of the sliding window of prediction_log the monitor reads, in seconds."""
    monitor_min_instances: int = Field(drift.MIN_INSTANCES, ge=10)
    """Fewest instances in a window for which the monitor reports drift (else insufficient_data)."""
    monitor_max_rows: int = Field(200_000, ge=100, le=5_000_000)
    """Most prediction_log rows (requests) the monitor reads per run, the newest first."""


@dataclass
class LogWindow:
    """What one read of the log gave: the window, and how it was cut."""

    window: drift.Window
    since: float
    until: float
    log_rows: int
    """Log rows (requests) in the window, all of them."""
    read_rows: int
    """Log rows read (at most MLSP_MONITOR_MAX_ROWS, the newest)."""
    skipped: int
    """Rows read but left out: not the card's shape."""


def _outputs(out: Any, n: int) -> tuple[list[int], list[bool]] | None:
    """Class ids (-1 unknown) and outlier flags of one log row's output, or None if malformed."""
    if not isinstance(out, list) or len(out) != n:
        return None
    ids: list[int] = []
    flags: list[bool] = []
    for o in out:
        if not isinstance(o, dict):
            return None
        cid = o.get("class_id")
        ids.append(cid if isinstance(cid, int) and not isinstance(cid, bool) else -1)
        flag = o.get("outlier")
        if isinstance(flag, bool):
            flags.append(flag)
    return ids, flags


def _as_rows(inp: Any, width: int) -> Any:
    """The instances of one log row as a float array (NaN where null), or None if malformed."""
    if not isinstance(inp, list) or not inp:
        return None
    try:
        x = np.array(inp, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return x if x.ndim == 2 and x.shape[1] == width else None


def parse_log(
    rows: list[tuple[Any, Any]], width: int
) -> tuple[np.ndarray[Any, Any], list[int], list[bool], int]:
    """Log rows' (input, output) JSON -> instances (n, width), class ids, outlier flags, and how
    many log rows were malformed (left out)."""
    blocks: list[Any] = []
    ids: list[int] = []
    flags: list[bool] = []
    skipped = 0
    for raw_in, raw_out in rows:
        try:
            inp, out = orjson.loads(raw_in), orjson.loads(raw_out)
        except orjson.JSONDecodeError:
            skipped += 1
            continue
        x = _as_rows(inp, width)
        parsed = _outputs(out, len(x)) if x is not None else None
        if x is None or parsed is None:
            skipped += 1
            continue
        blocks.append(x)
        ids.extend(parsed[0])
        flags.extend(parsed[1])
    x_all = np.concatenate(blocks) if blocks else np.empty((0, width))
    return x_all, ids, flags, skipped


def read_window(db: Db, card: ModelCard, *, since: float, until: float, max_rows: int) -> LogWindow:
    """The card's model's log rows with since <= ts < until (the newest `max_rows`)."""
    where = "model_name = %s AND ts >= %s AND ts < %s AND sample_rate > 0"
    params = (card.name, since, until)
    count, requests = db.execute(
        f"SELECT COUNT(*), SUM(1.0 / sample_rate) FROM {predlog.TABLE} WHERE {where}",  # noqa: S608
        params,
    ).fetchone()
    rows = db.execute(
        f"SELECT input, output FROM {predlog.TABLE} WHERE {where} "  # noqa: S608
        "ORDER BY ts DESC LIMIT %s",
        (*params, max_rows),
    ).fetchall()
    x, ids, flags, skipped = parse_log(rows, len(card.feature_names))
    window = drift.Window(
        x,
        np.asarray(ids, dtype=np.int64),
        np.asarray(flags, dtype=np.bool_) if flags else None,
        float(requests or 0.0),
        until - since,
    )
    return LogWindow(window, since, until, int(count), len(rows), skipped)


def _set_gauges(card: ModelCard, result: drift.DriftResult) -> None:
    nan = math.nan
    by_name = {f.name: f for f in result.features}
    for name in card.feature_names:
        f = by_name.get(name)
        PSI.labels(name).set(nan if f is None or f.psi is None else f.psi)
        KS_PVALUE.labels(name).set(nan if f is None or f.ks_pvalue is None else f.ks_pvalue)
        dev = None if f is None else f.mean_deviation
        MEAN_DEVIATION.labels(name).set(nan if dev is None else dev)
    CLASS_PSI.set(nan if result.class_psi is None else result.class_psi)
    OUTLIER_RATE.set(nan if result.outlier_rate is None else result.outlier_rate)
    INSTANCES.set(result.instances)
    REQUEST_RATE.set(result.request_rate)
    INSUFFICIENT.set(1 if result.verdict == "insufficient_data" else 0)


_TICK = 0.5


class Monitor:
    """The latest drift result, and the runs that refresh it (one at a time)."""

    def __init__(self, settings: MonitorSettings, card: ModelCard) -> None:
        self.settings = settings
        self.card = card
        self.reference = drift.Reference.from_card(card)
        self.store = Store(settings, service=settings.service)
        self.latest: dict[str, Any] | None = None
        self.result: drift.DriftResult | None = None
        self.error: str | None = None
        self.last_attempt: float | None = None
        self._schema = False
        self._lock = asyncio.Lock()

    def _read(self, db: Db, until: float) -> LogWindow:
        if not self._schema:  # the writer may start later: the same idempotent DDL
            db.create_schema(predlog.SCHEMA)
            self._schema = True
        s = self.settings
        since = until - s.monitor_window_seconds
        return read_window(db, self.card, since=since, until=until, max_rows=s.monitor_max_rows)

    async def run(self) -> dict[str, Any]:
        """Read the window, compute, publish; Unavailable (503) when the database is down, the
        last result kept and flagged stale."""
        async with self._lock:
            until = time.time()
            self.last_attempt = until
            try:
                got = await self.store.run(lambda db: self._read(db, until))
            except Unavailable as exc:
                self._failed(exc.message)
                raise
            result = await asyncio.to_thread(
                drift.compare,
                self.reference,
                got.window,
                min_instances=self.settings.monitor_min_instances,
            )
            self.result, self.error = result, None
            self.latest = {
                "since": got.since,
                "until": got.until,
                "log_rows": got.log_rows,
                "read_rows": got.read_rows,
                "truncated": got.read_rows < got.log_rows,
                "skipped_rows": got.skipped,
                "finished": time.time(),
                "result": result.to_dict(),
            }
            _set_gauges(self.card, result)
            STALE.set(0)
            LAST_RUN.set(self.latest["finished"])
            RUNS.labels("ok").inc()
            log.info("drift", extra={"verdict": result.verdict, "instances": result.instances})
            return self.body()

    def _failed(self, reason: str) -> None:
        self.error = reason
        STALE.set(1)
        RUNS.labels("failed").inc()
        log.warning("drift run failed", extra={"reason": reason})

    def body(self) -> dict[str, Any]:
        """/drift's answer; 503 before any run has succeeded."""
        if self.latest is None:
            why = self.error or "no drift run has finished yet"
            raise Unavailable(f"no drift result: {why}", dependency="database", retry_after=5)
        return {
            "model": {"name": self.card.name, "version": self.card.version},
            "stale": self.error is not None,
            "error": self.error,
            "last_attempt": self.last_attempt,
            "window_seconds": self.settings.monitor_window_seconds,
            **self.latest,
        }

    async def loop(self, state: ServiceState) -> None:
        """Run every interval until the service drains."""
        while not state.draining:
            try:
                await self.run()
            except Unavailable:
                pass  # flagged stale; the next run retries
            except Exception:  # a bug must not stop the monitor: logged, flagged, retried
                log.exception("drift run crashed")
                self._failed("internal error (see the monitor's log)")
            # in short ticks, so a draining service stops within half a second
            for _ in range(math.ceil(self.settings.monitor_interval_seconds / _TICK)):
                if state.draining:
                    return
                await asyncio.sleep(_TICK)


# The plots are a few rectangles per feature: inline SVG written here from the numbers keeps
# the image free of a plotting stack (matplotlib is ~40 MB with its fonts), and no small,
# maintained SVG-chart package fits (pygal and leather are unmaintained).
_W, _H, _PAD = 420, 170, 28


def _svg(feature: drift.FeatureDrift) -> str:
    """Reference (grey) vs window (blue) share per decile bin, bins drawn equally wide."""
    ref, win = feature.reference_share, feature.window_share
    bins = len(ref)
    top = max([*ref, *win, 0.01])
    slot = (_W - 2 * _PAD) / bins
    plot_h = _H - 2 * _PAD
    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'role="img" aria-label="{html.escape(feature.name)} histogram">',
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#333"/>',
        f'<text x="{_PAD}" y="14" font-size="11">share per training decile bin '
        f"(max {top:.0%})</text>",
    ]
    for i in range(bins):
        x0 = _PAD + i * slot
        for j, (share, colour) in enumerate(((ref, "#9aa0a6"), (win, "#1a73e8"))):
            if i >= len(share):
                continue
            h = plot_h * share[i] / top
            parts.append(
                f'<rect x="{x0 + 2 + j * (slot - 4) / 2:.1f}" y="{_H - _PAD - h:.1f}" '
                f'width="{(slot - 4) / 2:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>bin {i}: {share[i]:.1%}</title></rect>"
            )
        if i < len(feature.edges):
            parts.append(
                f'<text x="{x0 + slot:.1f}" y="{_H - _PAD + 12}" font-size="9" '
                f'text-anchor="middle">{feature.edges[i]:g}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def report_html(body: dict[str, Any]) -> str:
    """The drift report: a summary, then per feature its plot, numbers and verdict."""
    r = body["result"]
    e = html.escape
    features = [drift.FeatureDrift(**f) for f in r["features"]]
    stale = (
        f'<p class="stale">STALE: the last run failed ({e(str(body["error"]))}); '
        "this is the previous result.</p>"
        if body["stale"]
        else ""
    )
    rows = [
        f"<h1>Drift report: {e(body['model']['name'])} {e(body['model']['version'])}</h1>",
        stale,
        f'<p>verdict <b class="{e(r["verdict"])}">{e(r["verdict"])}</b>; '
        f"{r['instances']} instances from {body['log_rows']} requests in "
        f"{r['window_seconds']:.0f} s ({r['request_rate']:.2f} req/s); "
        f"minimum {r['min_instances']}; reference {r['reference_rows']} training rows.</p>",
        f"<p>class PSI {_num(r['class_psi'])}, outlier rate {_num(r['outlier_rate'], '.1%')}</p>",
        "<ul>" + "".join(f"<li>{e(reason)}</li>" for reason in r["reasons"]) + "</ul>",
    ]
    if not features:
        rows.append("<p>Not enough instances in the window: no statistic is shown.</p>")
    for f in features:
        rows.append(
            f'<section class="feature"><h2>{e(f.name)}: {e(f.verdict)}</h2>{_svg(f)}'
            f"<table><tr><th>PSI</th><th>KS p</th><th>training mean</th><th>window mean</th>"
            f"<th>mean deviation</th><th>instances</th></tr><tr><td>{_num(f.psi)}</td>"
            f"<td>{_num(f.ks_pvalue, '.3g')}</td><td>{_num(f.reference_mean)}</td>"
            f"<td>{_num(f.window_mean)}</td><td>{_num(f.mean_deviation, '.1%')}</td>"
            f"<td>{f.instances}</td></tr></table></section>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em}.critical{color:#c5221f}"
        ".warning{color:#e37400}.ok{color:#188038}.stale{background:#fce8e6;padding:.5em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>drift report</title>"
        f"<style>{style}</style></head><body>{''.join(rows)}"
        "<p>grey: training reference; blue: window. Bins are the card's training deciles, "
        "fixed.</p></body></html>"
    )


def build(settings: MonitorSettings) -> FastAPI:
    card = read_card(settings.model_dir)
    monitor = Monitor(settings, card)

    def extend(app: FastAPI, state: ServiceState) -> None:
        async def database_up() -> str | None:
            try:
                await monitor.store.run(lambda db: db.execute("SELECT 1").fetchone())
            except Unavailable as exc:
                return exc.message
            return None

        state.ready_checks.append(database_up)
        state.background.append(lambda: monitor.loop(state))
        app.state.monitor = monitor

        @app.get("/drift", tags=["drift"], summary="The latest drift result", responses=ERRORS)
        async def latest() -> Response:
            return json_response(monitor.body())

        @app.post("/drift/run", tags=["drift"], summary="Run the drift now", responses=ERRORS)
        async def run_now() -> Response:
            return json_response(await monitor.run())

        @app.get(
            "/report",
            tags=["drift"],
            summary="The latest drift result as an HTML report",
            response_class=HTMLResponse,
            responses=ERRORS,
        )
        async def report() -> Response:
            return HTMLResponse(report_html(monitor.body()))

    return create_app(settings, needs_model=False, extend=extend)


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern("prediction_monitoring", MonitorSettings, build))
