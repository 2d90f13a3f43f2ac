"""parallel, the proxy: the same input to several models at once, one aggregated answer.

POST /predict (iris rows) goes concurrently to every backend in MLSP_BACKENDS (the book's three
one-vs-rest models: setosa, versicolor, virginica, one image with MLSP_MODEL_DIR picking the
model); the answer per row is the class whose model gives its positive class the highest
probability. Latency is the slowest call, not the sum (serving/upstream.py: fan_out).

Each call has its own timeout, capped by the request's budget (X-Request-Deadline-Ms, or
MLSP_DEFAULT_BUDGET_MS). When a backend fails, MLSP_AGGREGATION decides:
- `require_all` (default): 503 naming the failed backends;
- `best_effort`: answer from the others with `partial: true` and the `missing` backends
  (still 503 when none answered).
A backend's 4xx (bad input) is relayed as is; the budget running out is a 504.

    MLSP_BACKENDS='[{"name":"setosa","url":"http://127.0.0.1:8001"}, ...]' \
        python -m patterns.parallel.proxy
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import Response

from serving.errors import DeadlineExceeded, Unavailable
from serving.inference import json_response, parse_instances
from serving.upstream import (
    Budget,
    FanOutSettings,
    Malformed,
    Outcome,
    fan_out,
    positives,
    proxy_app,
    upstream_client,
)

PATTERN = "parallel"


class ParallelSettings(FanOutSettings):
    aggregation: Literal["require_all", "best_effort"] = "require_all"
    """require_all: one backend missing is a 503 naming it; best_effort: 200, partial:true."""


def usable(outcomes: list[Outcome], n_rows: int) -> list[Outcome]:
    """The outcomes with a malformed answer turned into failures (503 or `missing`)."""
    out = []
    for o in outcomes:
        if o.ok:
            try:
                positives(o, n_rows)
            except Malformed as exc:
                o = replace(o, ok=False, error=f"malformed ({exc.message})")
        out.append(o)
    return out


def aggregate(answered: list[Outcome], n_rows: int) -> list[dict[str, Any]]:
    per_backend = {o.name: positives(o, n_rows) for o in answered}
    out = []
    for i in range(n_rows):
        scores = {name: values[i] for name, values in per_backend.items()}
        out.append({"label": max(scores.items(), key=lambda kv: kv[1])[0], "scores": scores})
    return out


def build(settings: ParallelSettings) -> FastAPI:
    client = upstream_client(settings)

    async def predict(request: Request, body: bytes, budget: Budget) -> Response:
        rows = parse_instances(body)
        rid = request.scope["state"]["request_id"]
        outcomes = await fan_out(
            client,
            settings.backends,
            "/predict",
            budget=budget,
            request_id=rid,
            content=body,
            service=settings.service,
        )
        for o in outcomes:
            if o.client_error:
                raise o.as_error()
        outcomes = usable(outcomes, len(rows))
        answered = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]
        if failed and (settings.aggregation == "require_all" or not answered):
            if all(o.out_of_budget for o in failed):
                raise DeadlineExceeded(
                    f"the deadline passed while waiting for {', '.join(o.name for o in failed)}"
                )
            raise Unavailable(
                f"{len(failed)} of {len(outcomes)} backends failed "
                f"({settings.aggregation}): " + ", ".join(f"{o.name} ({o.error})" for o in failed),
                dependency=",".join(o.name for o in failed),
                backends=[o.trace() for o in outcomes],
            )
        request.scope["state"]["log_extra"]["partial"] = bool(failed)
        return json_response(
            {
                "request_id": rid,
                "predictions": aggregate(answered, len(rows)),
                "partial": bool(failed),
                "missing": [o.name for o in failed],
                "backends": [o.trace() for o in outcomes],
            }
        )

    summary = "Fan out to every backend at once; argmax of their positive-class probabilities"
    return proxy_app(settings, {"/predict": (summary, predict)})


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, ParallelSettings, build))
