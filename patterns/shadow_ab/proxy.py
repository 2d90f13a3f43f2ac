"""shadow_ab, the proxy: every client gets the primary model's answer (iris-svc); a sample of
the requests is also sent to a candidate, the shadow (iris-rf), whose answer nobody sees but
the shadow_log table, where both answers are recorded side by side for the report.

The trade-off: the candidate is judged on live traffic at no risk to users, for the price of
its compute and of one more moving part; it proves agreement and speed, not that the
candidate's answers are better (online_ab measures outcomes).

- The shadow call is fire-and-forget: started with the primary's, never awaited by the
  client, with its own timeout (MLSP_SHADOW_TIMEOUT_MS) and a cap on calls in flight
  (MLSP_SHADOW_MAX_INFLIGHT: above it the request is not shadowed, and that is counted).
- Sampling: MLSP_SHADOW_PERCENT of the requests, by a hash of the request id (a retry with the
  same X-Request-ID gets the same decision).
- The pair (version, label, probabilities and latency of each model, the shadow's error)
  goes to the table through a bounded queue and a batch writer (patterns/shadow_ab/log.py);
  the table is soft: down, pairs are dropped and counted, clients see nothing.
- GET /shadow/report: agreement, mean |Δp| (total variation), p50/p95 latencies and their
  deltas, the shadow's error rate, and `go | no_go` with its reasons (agreement >= 0.95,
  p95 <= 1.2x the primary's, errors <= 1%, on at least MLSP_SHADOW_MIN_PAIRS pairs); JSON, or
  an HTML page with plots for a browser (Accept: text/html, or ?format=html). The gauges
  follow the report, recomputed every MLSP_SHADOW_REPORT_SECONDS.

Manifests: manifests/patterns/shadow_ab/ (proxy, primary and shadow Deployments, PostgreSQL).

    MLSP_PRIMARY_URL=http://127.0.0.1:8001 MLSP_SHADOW_URL=http://127.0.0.1:8002 \\
        python -m patterns.shadow_ab.proxy
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import html
import sys
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field

from patterns.shadow_ab import log as shadowlog
from serving import charts
from serving.db import Db, DbSettings, Store
from serving.errors import DeadlineExceeded, Unavailable
from serving.inference import json_response, parse_instances
from serving.schemas import ErrorResponse
from serving.state import ServiceState
from serving.upstream import (
    Backend,
    Budget,
    Outcome,
    PrimarySettings,
    ProxySettings,
    ServiceUrl,
    call,
    proxy_app,
    upstream_client,
)

PATTERN = "shadow_ab"


class ShadowSettings(ProxySettings, PrimarySettings, DbSettings):
    shadow_url: ServiceUrl
    """Base URL of the candidate, called in the shadow."""
    primary_timeout_ms: int = Field(2_000, ge=1, le=30_000)
    """Longest a call to the primary may take (less when the request's budget is shorter)."""
    shadow_timeout_ms: int = Field(1_000, ge=1, le=30_000)
    """Longest a shadow call may take; past it the pair is recorded as a shadow timeout."""
    shadow_percent: float = Field(100.0, ge=0, le=100)
    """Share of requests shadowed, chosen by a hash of the request id."""
    shadow_max_inflight: int = Field(50, ge=1, le=10_000)
    """Shadow calls in flight above which a request is not shadowed (counted as dropped)."""
    shadow_min_pairs: int = Field(100, ge=1)
    """Pairs the report needs before it gives a verdict (else insufficient_data)."""
    shadow_window_seconds: int = Field(3600, ge=1)
    """The report's window: pairs logged this long ago at most."""
    shadow_report_seconds: float = Field(15.0, gt=0, le=3600)
    """How often the gauges are recomputed from the table."""
    database_url: str = "sqlite:///data/shadow_ab.db"
    """sqlite:///PATH (local default) or postgresql://USER:PASSWORD@HOST/DB: the shadow_log."""


def sampled(request_id: str, percent: float) -> bool:
    """The same request id always gets the same decision."""
    h = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
    return h % 10_000 < percent * 100


class ShadowProxy:
    def __init__(self, settings: ShadowSettings) -> None:
        self.s = settings
        self.client = upstream_client(settings)
        self.primary = Backend(
            name="primary", url=settings.primary_url, timeout=settings.primary_timeout_ms / 1000
        )
        self.shadow = Backend(
            name="shadow", url=settings.shadow_url, timeout=settings.shadow_timeout_ms / 1000
        )
        self.store = Store(settings, service=settings.service, name="shadow_log")
        self.writer = shadowlog.writer(self.store, settings.service)
        self.inflight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.thresholds = shadowlog.Thresholds(min_pairs=settings.shadow_min_pairs)
        self._report: tuple[float, dict[str, Any], int] | None = None

    def _start_shadow(self, body: bytes, rid: str, primary: asyncio.Future[Outcome]) -> str:
        if not sampled(rid, self.s.shadow_percent):
            return "not_sampled"
        if self.inflight >= self.s.shadow_max_inflight:
            shadowlog.DROPPED.labels(self.s.service, "cap").inc()
            return "dropped"
        self.inflight += 1
        task = asyncio.create_task(self._shadow(body, rid, primary))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return "sampled"

    async def _shadow(self, body: bytes, rid: str, primary: asyncio.Future[Outcome]) -> None:
        try:
            budget = Budget(time.time() + self.shadow.timeout)
            outcome = await call(
                self.client, self.shadow, "/predict", budget=budget, request_id=rid,
                content=body, service=self.s.service,
            )  # fmt: skip
        finally:
            self.inflight -= 1
        answer = await primary
        rows = len((answer.body or {}).get("predictions") or [])
        error = outcome.error
        if outcome.ok and not shadowlog.well_formed(outcome.body, rows):
            error = "malformed answer"  # a 200 without a usable prediction per row
        kind = "ok" if error is None else "timeout" if error == "timeout" else "error"
        shadowlog.CALLS.labels(self.s.service, kind).inc()
        if not answer.ok or not shadowlog.well_formed(answer.body, rows):
            return  # nothing to compare with: the client got an error
        assert answer.body is not None
        shadow_body = outcome.body if error is None else None
        self.writer.put(
            shadowlog.pair_rows(
                rid, answer.body, answer.latency_ms, shadow_body, outcome.latency_ms, error
            )
        )

    async def predict(self, request: Request, body: bytes, budget: Budget) -> Response:
        rows = parse_instances(body)  # bad input: 422 here, neither model is called
        rid: str = request.scope["state"]["request_id"]
        primary: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        shadowed = self._start_shadow(body, rid, primary)
        request.scope["state"]["log_extra"]["shadow"] = shadowed
        try:
            outcome = await call(
                self.client, self.primary, "/predict", budget=budget, request_id=rid,
                content=body, service=self.s.service,
            )  # fmt: skip
        except BaseException:
            primary.cancel()
            raise
        usable = outcome.ok and len((outcome.body or {}).get("predictions") or []) == len(rows)
        primary.set_result(outcome if usable else Outcome("primary", False, outcome.latency_ms))
        if outcome.client_error:
            raise outcome.as_error()
        if not usable:
            if outcome.out_of_budget:
                raise DeadlineExceeded("the deadline passed while waiting for the primary")
            raise Unavailable(f"primary failed: {outcome.error}", dependency="primary")
        return json_response(outcome.body, headers={"X-Shadow": shadowed})

    async def report(self, max_age: float = 0.0) -> dict[str, Any]:
        """The report over the window; one computed less than `max_age` seconds ago is reused
        (a page reloaded in a loop must not recompute a 200,000-row window each time)."""
        cached = self._report
        fresh = cached is not None and time.monotonic() - cached[0] < max_age
        if cached is not None and fresh and cached[2] == self.writer.written:
            return copy.deepcopy(cached[1])  # nothing written since, and less than max_age old
        since = time.time() - self.s.shadow_window_seconds
        written = self.writer.written

        def compute(db: Db) -> dict[str, Any]:
            self.writer.ensure(db)
            return shadowlog.report(db, since, 200_000, self.thresholds)

        out = await self.store.run(compute)
        for name in ("agreement", "mean_abs_dp", "p95_ratio"):
            if out[name] is not None:
                shadowlog.GAUGES[name].labels(self.s.service).set(out[name])
        if out["shadow_error_rate"] is not None:
            shadowlog.GAUGES["error_rate"].labels(self.s.service).set(out["shadow_error_rate"])
        shadowlog.GAUGES["go"].labels(self.s.service).set(int(out["verdict"] == "go"))
        shadowlog.GAUGES["pairs"].labels(self.s.service).set(out["pairs"])
        if max_age > 0:  # only what a reader asked for is reused by the next reader
            self._report = (time.monotonic(), out, written)
            return copy.deepcopy(out)
        return out

    async def refresh_gauges(self, state: ServiceState) -> None:
        while not state.draining:
            with contextlib.suppress(Unavailable):  # soft: the report route says so if asked
                await self.report()
            ticks = max(1, int(self.s.shadow_report_seconds / 0.25))
            for _ in range(ticks):  # in short sleeps: stop soon at shutdown
                if state.draining:
                    break
                await asyncio.sleep(self.s.shadow_report_seconds / ticks)

    def extend(self, app: FastAPI, state: ServiceState) -> None:
        self.writer.attach(state)
        state.background.append(lambda: self.refresh_gauges(state))

        @app.get(
            "/shadow/report",
            tags=["shadow"],
            summary="The shadow against the primary: agreement, |Δp|, latency, errors, verdict",
            responses={200: {"content": {"text/html": {}}}, 503: {"model": ErrorResponse}},
        )
        async def shadow_report(request: Request, format: str | None = None) -> Response:
            body = await self.report(max_age=1.0)
            accept = request.headers.get("accept", "")
            if format == "html" or (format is None and "text/html" in accept):
                return HTMLResponse(report_html(body))
            series = body.pop("series")
            body["agreement_over_time"] = series["agreement"]
            return json_response(body)

    def app(self) -> FastAPI:
        summary = "The primary's answer; the shadow's is recorded, never returned"
        app = proxy_app(self.s, {"/predict": (summary, self.predict)}, extend=self.extend)
        app.state.proxy = self
        return app


def _n(value: float | None, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def report_html(r: dict[str, Any]) -> str:
    e = html.escape
    lat = r["latency_ms"]
    series = r.pop("series")
    top = max([*series["primary_ms"], *series["shadow_ms"], 1.0])
    step = top / 10
    edges = [step * i for i in range(11)]
    labels = [f"{x:.0f}" for x in edges[:-1]]
    dp_edges = [i / 20 for i in range(11)]
    body = [
        f"<h1>Shadow report: {e(', '.join(r['shadow_versions']) or 'shadow')} behind the "
        f"primary ({e(', '.join(r['primary_versions']))})</h1>",
        f'<p>verdict <b class="{e(r["verdict"])}">{e(r["verdict"])}</b> on {r["pairs"]} rows '
        f"of {r['requests']} requests</p>",
        "<ul>" + "".join(f"<li>{e(x)}</li>" for x in r["reasons"]) + "</ul>",
        "<table><tr><th></th><th>primary</th><th>shadow</th><th>delta</th></tr>"
        + "".join(
            f"<tr><td>{q} ms</td><td>{_n(lat['primary'][q], '.2f')}</td>"
            f"<td>{_n(lat['shadow'][q], '.2f')}</td>"
            f"<td>{_n(r['latency_delta_ms'][q], '+.2f')}</td></tr>"
            for q in ("p50", "p95")
        )
        + f"</table><p>agreement {_n(r['agreement'])}, mean |&Delta;p| "
        f"{_n(r['mean_abs_dp'])}, shadow error rate {_n(r['shadow_error_rate'], '.2%')}</p>",
        charts.line("agreement over time (share of rows, UTC)", series["agreement"]),
        charts.bars(
            "|Δp| per row (total variation), share of rows",
            [f"{x:.2f}" for x in dp_edges[:-1]],
            [("rows", charts.histogram(series["abs_dp"], dp_edges))],
            percent=True,
        ),
        charts.bars(
            "latency per request (ms), share of requests",
            labels,
            [
                ("primary", charts.histogram(series["primary_ms"], edges)),
                ("shadow", charts.histogram(series["shadow_ms"], edges)),
            ],
            percent=True,
        ),
    ]
    return charts.page("shadow report", body)


def build(settings: ShadowSettings) -> FastAPI:
    return ShadowProxy(settings).app()


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, ShadowSettings, build))
