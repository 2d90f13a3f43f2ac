"""circuit_breaker, the proxy: a circuit breaker and a bulkhead in front of the primary model
(iris-svc), with degraded answers when it cannot answer (serving/breaker.py).

- Every POST /predict goes to the primary (MLSP_PRIMARY_URL, within MLSP_PRIMARY_TIMEOUT_MS and
  the request's budget) unless the breaker is open or MLSP_MAX_INFLIGHT calls to it are already
  in progress (the bulkhead: the excess is not queued, nor refused, but answered degraded).
- The breaker opens when at least 50% of the calls of the last 10 s failed (5xx, timeout,
  connection error) and there were at least 20, or after 5 failures in a row; it stays open
  MLSP_OPEN_SECONDS (10), then admits 3 probes: all succeed -> closed, one fails -> open again.
  Optionally slow calls count too (MLSP_BREAKER_SLOW_CALL_MS, MLSP_BREAKER_SLOW_CALL_RATE).
- Degraded answers, in order: the primary's recent answer to the same input (kept in this
  process, keyed by the canonical float32 rows), then the fallback model in this process
  (iris-lr, MLSP_MODEL_DIR), else 503 with Retry-After naming the primary. Each answer carries
  `source` (primary | cache | fallback_model), `degraded`, and when degraded a `reason`.
- Bad input is refused here (422 naming the field, with the fallback model's width) or relayed
  from the primary; neither counts against the primary. GET /breaker shows the breaker.

    MLSP_PRIMARY_URL=http://127.0.0.1:8001 MLSP_MODEL_DIR=data/models/iris-lr \\
        python -m patterns.circuit_breaker.proxy
"""

from __future__ import annotations

import sys
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from serving.breaker import (
    BreakerConfig,
    BreakerSettings,
    Bulkhead,
    CircuitBreaker,
    Clock,
    Fallback,
    Guard,
    Refused,
    answer_key,
)
from serving.cache import LocalTier
from serving.inference import json_response, parse_instances, to_matrix
from serving.predictor import Call, Predictor
from serving.state import ServiceState
from serving.upstream import (
    Backend,
    Budget,
    Outcome,
    PrimarySettings,
    ProxySettings,
    call,
    proxy_app,
    upstream_client,
)

PATTERN = "circuit_breaker"
PRIMARY = "primary"


class BreakerProxySettings(ProxySettings, PrimarySettings, BreakerSettings):
    """The proxy in front of the primary: its URL and timeout, the bulkhead, the fallbacks."""

    max_inflight: int | None = Field(100, ge=1)
    """The bulkhead: calls to the primary in progress above which a request is answered by the
    fallback at once (on this proxy the excess is answered degraded, not refused)."""
    fallback_model: bool = True
    """Answer from the in-process fallback model (MLSP_MODEL_DIR) when the primary cannot and
    no recent answer is cached; false: the cache, then 503."""
    fallback_cache_bytes: int = Field(8 << 20, ge=0, le=1 << 32)
    """Bytes of the primary's recent answers kept in this process (LRU) to answer a repeated
    input while the primary is out; 0: no cache."""
    fallback_cache_ttl_seconds: int = Field(600, ge=1, le=86_400)
    """How long a recent answer of the primary may be served in its place."""


def _why(result: Outcome | Refused, state: str) -> tuple[str, str]:
    """(the metric's reason, the answer's reason in words) of a degraded answer."""
    if isinstance(result, Refused):
        return result.reason, f"breaker {state}" if result.reason == "open" else "bulkhead full"
    return "failed", f"{PRIMARY} failed: {result.error}"


class BreakerProxy:
    """The proxy's parts: the guard (breaker + bulkhead), the fallback chain, the routes."""

    def __init__(self, settings: BreakerProxySettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.client = upstream_client(settings)
        self.primary = Backend(
            name=PRIMARY, url=settings.primary_url, timeout=settings.primary_timeout_ms / 1000
        )
        self.breaker = CircuitBreaker(
            PRIMARY,
            BreakerConfig.from_settings(settings),
            clock=clock or time.monotonic,
            service=settings.service,
        )
        self.guard = Guard(self.breaker, Bulkhead(settings.max_inflight or 100))
        self.recent = (
            LocalTier(settings.fallback_cache_bytes, settings.fallback_cache_ttl_seconds)
            if settings.fallback_cache_bytes
            else None
        )
        self.fallback = Fallback(
            PRIMARY, recent=self.recent, model=self.fallback_model, service=settings.service
        )
        self.state: ServiceState | None = None

    def fallback_model(self) -> Predictor | None:
        """The in-process fallback model once it is loaded (None: off, or not yet)."""
        state = self.state
        if state is None or not self.settings.fallback_model or not state.loaded.is_set():
            return None
        return state.predictor

    async def ask_primary(self, body: bytes, rows: int, rid: str, budget: Budget) -> Outcome:
        outcome = await call(
            self.client,
            self.primary,
            "/predict",
            budget=budget,
            request_id=rid,
            content=body,
            service=self.settings.service,
        )
        answer = outcome.body or {}
        preds, model = answer.get("predictions"), answer.get("model")
        usable = isinstance(preds, list) and len(preds) == rows and isinstance(model, dict)
        if outcome.ok and not usable:
            return Outcome(PRIMARY, False, outcome.latency_ms, 200, error="unusable answer")
        return outcome

    async def predict(self, request: Request, body: bytes, budget: Budget) -> Response:
        scope_state = request.scope["state"]
        rid: str = scope_state["request_id"]
        log: dict[str, Any] = scope_state["log_extra"]
        rows = parse_instances(body)
        model = self.fallback_model()
        width = model.card.n_features if model is not None else len(rows[0])
        x = to_matrix(rows, width, self.settings.max_batch)
        if budget.left() <= 0:
            raise budget.spent("before the primary was called")
        key = answer_key(x)
        result = await self.guard.run(lambda: self.ask_primary(body, len(rows), rid, budget))
        if isinstance(result, Outcome) and result.ok and result.body is not None:
            answer = {"model": result.body["model"], "predictions": result.body["predictions"]}
            self.fallback.remember(key, answer)
            log["source"] = PRIMARY
            return json_response(
                {"request_id": rid, **answer, "source": PRIMARY, "degraded": False}
            )
        if isinstance(result, Outcome) and result.client_error:
            raise result.as_error()
        reason, why = _why(result, self.breaker.state)
        degraded = await self.fallback.answer(
            x, key, Call(rid, log), reason=reason, why=why, retry_after=self.breaker.retry_after()
        )
        return json_response(degraded)

    def extend(self, app: FastAPI, state: ServiceState) -> None:
        self.state = state
        if self.settings.fallback_model:  # loaded (verified, self-tested) like a server's model
            state.background.append(state.load_model)

            async def fallback_loaded() -> str | None:
                if state.loaded.is_set():
                    return None
                return f"fallback model: {state.public(state.predictor.not_ready() or 'loading')}"

            state.ready_checks.append(fallback_loaded)

        @app.get("/breaker", tags=["health"], summary="The breaker in front of the primary")
        async def show() -> Response:
            cached = len(self.recent) if self.recent is not None else 0
            return json_response({**self.guard.snapshot(), "cached_answers": cached})

    def app(self) -> FastAPI:
        app = proxy_app(
            self.settings.model_copy(update={"max_inflight": None}),  # the bulkhead instead
            {"/predict": ("Predict through the breaker; degraded answers when open", self.predict)},
            extend=self.extend,
        )
        app.state.proxy = self
        return app


def build(settings: BreakerProxySettings, *, clock: Clock | None = None) -> FastAPI:
    """The proxy; `clock` drives the breaker (monotonic seconds; tests pass their own)."""
    return BreakerProxy(settings, clock).app()


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, BreakerProxySettings, build))
