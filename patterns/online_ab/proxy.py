"""online_ab, the proxy: each user is assigned to variant A (iris-svc) or B (iris-rf) and stays
there; their outcomes are recorded, and a report says, per variant, what happened and whether
the difference is real (patterns/online_ab/stats.py).

The trade-off: the only way to know whether B is better for users is to let some users have
it; the proxy bounds the damage (a kill switch, an automatic stop on errors) and keeps the
evidence honest (sticky assignment, a check of the split, a decision safe to look at hourly).

- Assignment: a user (X-User-ID) new to the experiment gets A when sha256(experiment + user id)
  mod 10000 < A's weight x 100, else B, and keeps it (ab_assignments) when the weights change
  later; without X-User-ID the request id stands in (logged `sticky: false`). Weights 100/0
  (the kill switch) or the automatic stop send everyone to A, assigned or not.
- The experiment is a file reloaded while serving (MLSP_EXPERIMENT_FILE, on Kubernetes the
  ConfigMap online-ab-experiment; serving/hotconfig.py): name, weights, metric, limits.
- Automatic stop: over the last MLSP_AB_ERROR_WINDOW answers of each variant, when B's error
  rate (5xx, timeouts) exceeds A's by `max_error_delta`, every request goes to A (in this
  replica, until the experiment file changes: a decision a person then confirms).
- POST /outcomes {request_id | user_id, value}: the outcome, joined to the variant that user or
  request had; posting the same again is a replay (200, `replayed: true`).
- GET /ab/report: per variant n, users, rate or mean; B - A with its 95% interval and p-value,
  the SRM check, the always-valid p-value and the decision; JSON, or an HTML page with plots.

Manifests: manifests/patterns/online_ab/ (proxy, variant-a, variant-b with HPAs, PostgreSQL).
"""

from __future__ import annotations

import collections
import copy
import hashlib
import html
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, model_validator

from patterns.online_ab import stats
from serving import charts
from serving.db import BatchWriter, Db, DbSettings, Store
from serving.errors import DeadlineExceeded, InvalidInput, NotFound, Unavailable
from serving.hotconfig import WatchedFile
from serving.inference import json_response, parse_instances
from serving.schemas import ErrorResponse
from serving.state import ServiceState
from serving.upstream import (
    Backend,
    Budget,
    ProxySettings,
    ServiceUrl,
    call,
    proxy_app,
    upstream_client,
)

PATTERN = "online_ab"
EXPOSURES = Counter("mlsp_ab_exposures", "Answers served, by variant.", ["service", "variant"])
DROPPED = Counter(
    "mlsp_ab_exposures_dropped",
    "Exposures not recorded, by reason (full: the write queue; error: the table).",
    ["service", "reason"],
)
STOPPED = Gauge("mlsp_ab_stopped", "1 once the automatic stop sent everyone to A.", ["service"])
VARIANTS = ("a", "b")
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ab_assignments (experiment TEXT NOT NULL, user_id TEXT NOT NULL,"
    " variant TEXT NOT NULL, weight_a DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (experiment, user_id))",
    "CREATE TABLE IF NOT EXISTS ab_exposures (request_id TEXT PRIMARY KEY, experiment TEXT NOT"
    " NULL, user_id TEXT NOT NULL, variant TEXT NOT NULL, sticky INTEGER NOT NULL,"
    " ts DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ab_outcomes (experiment TEXT NOT NULL, subject TEXT NOT NULL,"
    " variant TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (experiment, subject))",
)


class Weights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    a: float = Field(60.0, ge=0, le=100)
    b: float = Field(40.0, ge=0, le=100)


class Experiment(BaseModel):
    """The experiment file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("iris-svc-vs-iris-rf", pattern=r"^[\w.-]{1,64}$")
    weights: Weights = Field(default_factory=Weights)
    """Percent of new users per variant (the book's 60/40); {a: 100, b: 0} is the kill switch."""
    metric: stats.Metric = "rate"
    """rate: outcomes are 0 or 1 (z-test); mean: any number (Welch's t)."""
    max_error_delta: float = Field(0.05, ge=0, le=1)
    """B's error rate above A's by more than this stops the experiment (everyone to A)."""
    tau: float = Field(0.1, gt=0)
    """The mSPRT mixture's scale: the size of difference the decision is tuned to find."""
    min_outcomes: int = Field(100, ge=2)
    """Outcomes each variant needs before the decision is more than `continue`."""

    @model_validator(mode="after")
    def _split(self) -> Experiment:
        if abs(self.weights.a + self.weights.b - 100) > 1e-9:
            w = self.weights
            raise ValueError(f"weights: a and b must add up to 100, got {w.a:g} + {w.b:g}")
        return self


class AbSettings(ProxySettings, DbSettings):
    variant_a_url: ServiceUrl
    """Base URL of variant A (the control)."""
    variant_b_url: ServiceUrl
    """Base URL of variant B (the challenger)."""
    variant_timeout_ms: int = Field(2_000, ge=1, le=30_000)
    """Longest a call to a variant may take (less when the request's budget is shorter)."""
    experiment_file: Path = Path("data/online_ab/experiment.yaml")
    """The experiment (YAML), reloaded when it changes; while it does not exist, every field
    takes its default (the book's 60/40 experiment); invalid at start-up, the process stops."""
    experiment_reload_seconds: float = Field(1.0, gt=0, le=300)
    """How often the experiment file is read for a change."""
    ab_error_window: int = Field(200, ge=10, le=100_000)
    """Answers per variant the automatic stop compares (it needs half of them in each)."""
    database_url: str = "sqlite:///data/online_ab.db"
    """sqlite:///PATH (local default) or postgresql://USER:PASSWORD@HOST/DB."""


def bucket(experiment: str, user_id: str) -> int:
    """0..9999, the same for a user in an experiment whatever the weights."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def by_weights(experiment: Experiment, user_id: str) -> str:
    return "a" if bucket(experiment.name, user_id) < experiment.weights.a * 100 else "b"


class OnlineAb:
    def __init__(self, settings: AbSettings) -> None:
        self.s = settings
        self.client = upstream_client(settings)
        timeout = settings.variant_timeout_ms / 1000
        self.backends = {
            "a": Backend(name="variant-a", url=settings.variant_a_url, timeout=timeout),
            "b": Backend(name="variant-b", url=settings.variant_b_url, timeout=timeout),
        }
        self.experiment = WatchedFile(
            settings.experiment_file,
            Experiment,
            name="experiment",
            interval=settings.experiment_reload_seconds,
        )
        self.experiment.load()  # ConfigInvalid: the process does not start
        self.store = Store(settings, service=settings.service, name="ab_tables")
        self.assigned: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self.errors = {v: collections.deque[int](maxlen=settings.ab_error_window) for v in VARIANTS}
        self.stopped: tuple[str, str] | None = None
        """(the experiment's digest, why) once the automatic stop sent everyone to A."""
        self.exposures = BatchWriter(
            self.store,
            SCHEMA,
            "INSERT INTO ab_exposures VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (request_id) DO NOTHING",
            on_drop=lambda why, n: DROPPED.labels(settings.service, why).inc(n),
        )
        """Exposures are written off the request path, in batches (an outcome posted for a
        request id can be a 404 for the half second before its exposure is stored)."""

        self._report: tuple[float, Any, dict[str, Any]] | None = None
        self.changes = 0
        """Assignments and outcomes this process wrote (the report's cache is stale after)."""

    def ensure(self, db: Db) -> None:
        self.exposures.ensure(db)

    def halted(self, exp: Experiment) -> str | None:
        """Why everyone goes to A now (the kill switch, the automatic stop), else None."""
        if exp.weights.b == 0:
            return "kill switch: weights 100/0"
        if self.stopped is not None and self.stopped[0] == self.experiment.digest:
            return self.stopped[1]
        return None

    async def assign(self, exp: Experiment, user: str) -> str:
        """The user's variant: remembered (this process, then the table), else by weights and
        remembered from now on."""
        key = (exp.name, user)
        if (known := self.assigned.get(key)) is not None:
            self.assigned.move_to_end(key)
            return known
        fresh = by_weights(exp, user)

        def remember(db: Db) -> str:
            self.ensure(db)
            db.begin()
            db.execute(
                "INSERT INTO ab_assignments VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (experiment, user_id) DO NOTHING",
                (exp.name, user, fresh, exp.weights.a, time.time()),
            )
            row = db.execute(
                "SELECT variant FROM ab_assignments WHERE experiment = %s AND user_id = %s",
                (exp.name, user),
            ).fetchone()
            db.commit()
            return str(row[0])

        variant = await self.store.run(remember)
        self.changes += 1
        self.assigned[key] = variant
        if len(self.assigned) > 100_000:
            self.assigned.popitem(last=False)
        return variant

    def record_error(self, variant: str, failed: bool, exp: Experiment) -> None:
        if self.stopped is not None and self.stopped[0] != self.experiment.digest:
            # the experiment was edited since the stop (a person decided): watch afresh
            self.stopped = None
            STOPPED.labels(self.s.service).set(0)
            for window in self.errors.values():
                window.clear()
        self.errors[variant].append(int(failed))
        a, b = self.errors["a"], self.errors["b"]
        half = self.s.ab_error_window // 2
        if self.stopped is not None or len(a) < half or len(b) < half:
            return
        rate_a, rate_b = sum(a) / len(a), sum(b) / len(b)
        if rate_b - rate_a > exp.max_error_delta:
            why = (
                f"automatic stop: B's error rate {rate_b:.1%} > A's {rate_a:.1%} "
                f"+ {exp.max_error_delta:.0%}"
            )
            self.stopped = (self.experiment.digest, why)
            STOPPED.labels(self.s.service).set(1)

    async def predict(self, request: Request, body: bytes, budget: Budget) -> Response:
        parse_instances(body)  # bad input: 422 here, no variant is charged with it
        state = request.scope["state"]
        rid: str = state["request_id"]
        exp = self.experiment.current
        user = request.headers.get("x-user-id")
        sticky = bool(user)
        assigned = await self.assign(exp, user) if user else by_weights(exp, rid)
        served = "a" if self.halted(exp) else assigned
        state["log_extra"].update(variant=served, sticky=sticky, experiment=exp.name)
        outcome = await call(
            self.client, self.backends[served], "/predict", budget=budget, request_id=rid,
            content=body, service=self.s.service,
        )  # fmt: skip
        if not outcome.client_error:
            self.record_error(served, not outcome.ok, exp)
        EXPOSURES.labels(self.s.service, served).inc()
        if outcome.client_error:
            raise outcome.as_error()
        if not outcome.ok or outcome.body is None:
            if outcome.out_of_budget:
                raise DeadlineExceeded(f"the deadline passed while waiting for variant {served}")
            raise Unavailable(
                f"variant {served} failed: {outcome.error}", dependency=self.backends[served].name
            )
        self.exposures.put([(rid, exp.name, user or rid, served, int(sticky), time.time())])
        headers = {"X-Variant": served, "X-Experiment": exp.name}
        return json_response({**outcome.body, "variant": served}, headers=headers)

    async def outcome(self, body: OutcomeIn) -> Response:
        exp = self.experiment.current
        halted = self.halted(exp) is not None
        if exp.metric == "rate" and body.value not in (0.0, 1.0):
            raise InvalidInput([("value", "a rate's outcome is 0 or 1")])

        def store(db: Db) -> dict[str, Any]:
            self.ensure(db)
            if body.request_id is not None:
                subject, table, column = f"r:{body.request_id}", "ab_exposures", "request_id"
            else:
                subject, table, column = f"u:{body.user_id}", "ab_assignments", "user_id"
            key = subject[2:]
            row = db.execute(
                f"SELECT variant FROM {table} WHERE {column} = %s AND experiment = %s",  # noqa: S608
                (key, exp.name),
            ).fetchone()
            if row is None:
                what = "request_id" if body.request_id is not None else "user_id"
                raise NotFound(f"{what}: not exposed in experiment {exp.name}", field=what)
            # while halted (kill switch, automatic stop) every user is served A: an outcome
            # then is A's, whatever the user's assignment
            variant = "a" if halted else str(row[0])
            db.begin()
            cur = db.execute(
                "INSERT INTO ab_outcomes VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (experiment, subject) DO NOTHING",
                (exp.name, subject, variant, body.value, time.time()),
            )
            db.commit()
            return {"experiment": exp.name, "variant": variant, "replayed": cur.rowcount == 0}

        stored = await self.store.run(store)
        self.changes += 1
        return json_response(stored)

    async def report(self) -> dict[str, Any]:
        exp = self.experiment.current

        def read(db: Db) -> dict[str, Any]:
            self.ensure(db)
            outcomes = db.execute(
                "SELECT variant, value FROM ab_outcomes WHERE experiment = %s ORDER BY ts",
                (exp.name,),
            ).fetchall()
            users = dict(db.execute(
                "SELECT variant, COUNT(*) FROM ab_assignments WHERE experiment = %s"
                " AND weight_a = %s GROUP BY variant", (exp.name, exp.weights.a),
            ).fetchall())  # fmt: skip
            exposures = dict(db.execute(
                "SELECT variant, COUNT(*) FROM ab_exposures WHERE experiment = %s GROUP BY variant",
                (exp.name,),
            ).fetchall())  # fmt: skip
            return {"outcomes": outcomes, "users": users, "exposures": exposures}

        cached = self._report
        key = (self.experiment.digest, self.stopped, self.changes, self.exposures.written)
        if cached is not None and cached[1] == key and time.monotonic() - cached[0] < 1.0:
            return copy.deepcopy(cached[2])  # a page reloaded in a loop reads the table once

        def compute(db: Db) -> dict[str, Any]:  # in the store's thread: off the event loop
            return build_report(exp, read(db), self.halted(exp))

        out = await self.store.run(compute)
        self._report = (time.monotonic(), key, out)
        return copy.deepcopy(out)

    def extend(self, app: FastAPI, state: ServiceState) -> None:
        watched = self.experiment
        watched.attach(state)
        self.exposures.attach(state)

        errors: dict[int | str, dict[str, Any]] = {
            c: {"model": ErrorResponse} for c in (400, 404, 413, 422, 503)
        }

        @app.post(
            "/outcomes",
            tags=["experiment"],
            summary="An outcome of a request or a user",
            responses=errors,
        )
        async def outcomes(body: OutcomeIn) -> Response:
            return await self.outcome(body)

        @app.get("/ab/report", tags=["experiment"], summary="Per variant: outcome, difference, p",
                 responses={200: {"content": {"text/html": {}}}, 503: errors[503]})  # fmt: skip
        async def ab_report(request: Request, format: str | None = None) -> Response:
            body = await self.report()
            if format == "html" or (
                format is None and "text/html" in request.headers.get("accept", "")
            ):
                return HTMLResponse(report_html(body))
            body.pop("curve")
            return json_response(body)

    def app(self) -> FastAPI:
        summary = "The assigned variant's answer (X-Variant)"
        app = proxy_app(self.s, {"/predict": (summary, self.predict)}, extend=self.extend)
        app.state.ab = self
        return app


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(None, min_length=1, max_length=128)
    user_id: str | None = Field(None, min_length=1, max_length=128)
    value: float = Field(allow_inf_nan=False)
    """0 or 1 for a rate (a conversion), any number for a mean."""

    @model_validator(mode="after")
    def _one_subject(self) -> OutcomeIn:
        if (self.request_id is None) == (self.user_id is None):
            raise ValueError("exactly one of request_id and user_id")
        return self


def build_report(exp: Experiment, raw: dict[str, Any], halted: str | None) -> dict[str, Any]:
    outcomes = raw["outcomes"]
    values = np.array([float(v) for _, v in outcomes], dtype=np.float64)
    is_b = np.array([str(var) == "b" for var, _ in outcomes], dtype=bool)
    a, b = values[~is_b], values[is_b]
    fixed = stats.compare(a, b, exp.metric)
    avp, curve, crossing = stats.always_valid_p(values, is_b, exp.tau)
    users = (int(raw["users"].get("a", 0)), int(raw["users"].get("b", 0)))
    srm = stats.srm(users, (exp.weights.a, exp.weights.b))
    enough = min(len(a), len(b)) >= exp.min_outcomes
    where = crossing if crossing is not None else fixed["difference"]
    decision, why = stats.decide(avp, where, srm["flagged"], enough)
    return {
        "experiment": exp.name,
        "metric": exp.metric,
        "weights": exp.weights.model_dump(),
        "halted": halted,
        "variants": {
            v: {
                "outcomes": len(x),
                "users": users[i],
                "exposures": int(raw["exposures"].get(v, 0)),
                exp.metric: float(x.mean()) if len(x) else None,
            }
            for i, (v, x) in enumerate((("a", a), ("b", b)))
        },
        "b_minus_a": fixed,
        "srm": srm,
        "always_valid_p": avp,
        "decision": decision,
        "why": why,
        "curve": curve,
    }


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def report_html(r: dict[str, Any]) -> str:
    e = html.escape
    va, vb = r["variants"]["a"], r["variants"]["b"]
    m = r["metric"]
    ci = r["b_minus_a"]["ci95"]
    body = [
        f"<h1>Experiment {e(r['experiment'])}: A/B</h1>",
        f'<p>decision <b class="{e(r["decision"])}">{e(r["decision"])}</b>: {e(r["why"])}</p>',
        f"<p>{'HALTED: ' + e(r['halted']) if r['halted'] else ''}</p>",
        "<table><tr><th></th><th>outcomes</th><th>users</th><th>exposures</th>"
        f"<th>{e(m)}</th></tr>"
        + "".join(
            f"<tr><td>{v.upper()}</td><td>{x['outcomes']}</td><td>{x['users']}</td>"
            f"<td>{x['exposures']}</td><td>{_num(x[m], '.4f')}</td></tr>"
            for v, x in r["variants"].items()
        )
        + "</table>",
        f"<p>B - A {_num(r['b_minus_a']['difference'], '+.4f')}"
        + (f", 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}], fixed-horizon p {r['b_minus_a']['p_value']:.4g}"
           if ci else "")
        + f"; always-valid p {r['always_valid_p']:.4g}; SRM p "
        f"{_num(r['srm']['p_value'], '.3g')}"
        f"{' FLAGGED' if r['srm']['flagged'] else ''}</p>",
        charts.bars(f"{m} per variant", ["A", "B"], [(m, [va[m] or 0.0, vb[m] or 0.0])]),
        charts.bars("users per variant (current weights)", ["A", "B"],
                    [("users", [float(va["users"]), float(vb["users"])])]),
        charts.line("always-valid p-value by outcomes seen (stop below 0.05)",
                    [(str(k), p) for k, p in r["curve"]]),
    ]  # fmt: skip
    return charts.page("A/B report", body)


def build(settings: AbSettings) -> FastAPI:
    return OnlineAb(settings).app()


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, AbSettings, build))
