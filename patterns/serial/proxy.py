"""serial, the proxy: models in order, each stage using what the previous one decided.

MLSP_STAGES (a ConfigMap on Kubernetes) lists the stages, each its own Deployment and Service:
`{"name", "url", "timeout", "on_error": "fail"|"skip", "stop_below"}`. The default chain is the
book's: stage 1 `outlier` (iris-ocsvm) stops every row whose score is below 0.0 with label
"unknown", so an outlier never reaches stage 2 `classify` (iris-svc).

- One budget for the whole chain: X-Request-Deadline-Ms, or MLSP_DEFAULT_BUDGET_MS (1000).
  Each call's timeout is min(the stage's timeout, what is left); the deadline is forwarded.
  Budget spent -> 504.
- A failed stage with on_error=fail -> 503 naming it; with skip, the chain goes on without it
  (a skipped gate lets every row through). A stage's 4xx (bad input) is relayed as is.
- The response carries a per-stage trace: stages[{name, version, latency_ms, outcome, rows}],
  outcome one of ok, skipped (failed, on_error=skip), not_run (no row left for it).

    MLSP_STAGES='[{"name":"outlier","url":"http://127.0.0.1:8001","stop_below":0.0},
                  {"name":"classify","url":"http://127.0.0.1:8002"}]' \
        python -m patterns.serial.proxy
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from serving.errors import Unavailable
from serving.inference import json_response, parse_instances
from serving.upstream import (
    Backend,
    Budget,
    Malformed,
    Outcome,
    ProxySettings,
    call,
    proxy_app,
    upstream_client,
)

PATTERN = "serial"
UNKNOWN = "unknown"


class Stage(Backend):
    on_error: Literal["fail", "skip"] = "fail"
    stop_below: float | None = None
    """A gate: rows whose score is below this stop here with label "unknown"."""


class SerialSettings(ProxySettings):
    stages: list[Stage] = Field(min_length=1)
    """JSON list of the stages, in order: {"name", "url", "timeout", ...} (see the README)."""


def _skip_or_raise(
    stage: Stage, outcome: Outcome, step: dict[str, Any], trace: list[dict[str, Any]]
) -> None:
    """A failed stage: raise (with the trace so far) unless it may be skipped, then mark it."""
    if outcome.client_error or outcome.out_of_budget or stage.on_error == "fail":
        error = outcome.as_error()
        error.extra["stages"] = trace
        raise error
    step["outcome"] = "skipped"
    step["error"] = outcome.error


def _gate(
    stage: Stage,
    threshold: float,
    pending: list[int],
    predictions: list[dict[str, Any]],
    answers: list[dict[str, Any] | None],
) -> list[int]:
    """Answer "unknown" for the rows scoring below the threshold; the rows that go on."""
    still = []
    for i, p in zip(pending, predictions, strict=True):
        if not isinstance(p.get("score"), int | float):
            raise Malformed(stage.name, "a gate needs an outlier model's `score`")
        if p["score"] < threshold:
            answers[i] = {"label": UNKNOWN, "stopped_by": stage.name, "score": p["score"]}
        else:
            still.append(i)
    return still


def build(settings: SerialSettings) -> FastAPI:
    client = upstream_client(settings)

    async def predict(request: Request, body: bytes, budget: Budget) -> Response:
        rows = parse_instances(body)
        rid = request.scope["state"]["request_id"]
        answers: list[dict[str, Any] | None] = [None] * len(rows)
        pending = list(range(len(rows)))  # rows still travelling down the chain
        trace: list[dict[str, Any]] = []
        failed: list[str] = []
        for stage in settings.stages:
            if not pending:
                trace.append({"name": stage.name, "outcome": "not_run", "rows": 0})
                continue
            if budget.left() <= 0:
                raise budget.spent(f"before stage {stage.name}")
            content = orjson.dumps({"instances": [rows[i] for i in pending]})
            outcome = await call(
                client,
                stage,
                "/predict",
                budget=budget,
                request_id=rid,
                content=content,
                service=settings.service,
            )
            step = {**outcome.trace(), "rows": len(pending)}
            trace.append(step)
            if not outcome.ok:
                _skip_or_raise(stage, outcome, step, trace)
                failed.append(stage.name)
                continue
            predictions = outcome.predictions(len(pending))
            if stage.stop_below is None:
                for i, p in zip(pending, predictions, strict=True):
                    answers[i] = p
                continue
            still = _gate(stage, stage.stop_below, pending, predictions, answers)
            step["stopped"] = len(pending) - len(still)
            pending = still
        if any(a is None for a in answers):
            raise Unavailable(
                f"no stage answered: {', '.join(failed)} failed",
                dependency=",".join(failed),
                stages=trace,
            )
        return json_response({"request_id": rid, "predictions": answers, "stages": trace})

    summary = "Run the stages in order; a gate stops outliers before the next model"
    return proxy_app(settings, {"/predict": (summary, predict)})


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, SerialSettings, build))
