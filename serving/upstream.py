"""Calls from a proxy to the services behind it: one deadline budget, per-call timeouts, fan-out.

A request has one budget: the client's `X-Request-Deadline-Ms` (absolute Unix epoch ms), or a
default when it sends none. Every outgoing call gets `min(its own timeout, what is left)` and
carries the same absolute deadline, so each hop knows what remains without clock arithmetic
of its own. A call never raises: it returns an `Outcome` (ok, the backend's answer or why it
failed, and how long it took), and the pattern decides what a failure means (serial: fail or
skip the stage; parallel: require_all or best_effort). `fan_out` runs calls concurrently, so a
fan-out costs the slowest call, not the sum.

Predictions have no side effects, so connection failures are retried once; a timed-out call is
not retried: its budget is gone. Calls go over serving/h1.py's keep-alive pools (`Upstream`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field

from serving import h1, http, metrics
from serving.admission import DEADLINE_HEADER, deadline_seconds
from serving.app import create_app
from serving.errors import ApiError, DeadlineExceeded, Unavailable, error_fields
from serving.inference import ERRORS, body_doc, read_body
from serving.settings import MlspSettings, ServingSettings
from serving.state import ServiceState


def plain_http_url(url: str) -> str:
    """A service URL the lean client can call: http://host[:port][/prefix] (checked at start-up,
    so a typo stops the process instead of failing every request)."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r} is not an http://host:port URL")
    return url


ServiceUrl = Annotated[str, AfterValidator(plain_http_url)]


class Backend(BaseModel):
    """A service behind a proxy (one entry of a stage list or a backend list)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    url: ServiceUrl
    """Base URL, e.g. http://iris-svc:8000."""
    timeout: float = Field(0.5, gt=0, le=30)
    """Seconds this call may take at most (less when the request's budget is shorter)."""


@dataclass(frozen=True)
class Budget:
    deadline: float
    """Unix epoch seconds."""

    @classmethod
    def from_request(cls, request: Request, default_seconds: float) -> Budget:
        raw = request.headers.get(DEADLINE_HEADER.decode())
        if raw is None:
            return cls(time.time() + default_seconds)
        return cls(deadline_seconds(raw))  # admission refuses a bad one before this runs

    def left(self) -> float:
        return self.deadline - time.time()

    def headers(self) -> dict[str, str]:
        return {"X-Request-Deadline-Ms": str(int(self.deadline * 1000))}

    def spent(self, what: str) -> DeadlineExceeded:
        return DeadlineExceeded(f"the request's deadline passed {what}")


RELAYED = frozenset({400, 413, 415, 422})


class Malformed(Unavailable):
    """A backend answered 200 with a body the proxy cannot use."""

    def __init__(self, name: str, what: str) -> None:
        super().__init__(f"{name} answered an unexpected body: {what}", dependency=name)


@dataclass(frozen=True)
class Outcome:
    name: str
    ok: bool
    latency_ms: float
    status: int | None = None
    body: dict[str, Any] | None = None
    error: str | None = None
    """Why it failed: "timeout", "unreachable", "deadline" (no budget left) or "status 503"."""
    out_of_budget: bool = False
    """The call failed because the request's budget ran out (504), not the backend (503)."""

    @property
    def client_error(self) -> bool:
        """The backend refused the input itself (400, 413, 415, 422 with an error body): the
        caller's fault, relayed as is. Any other 4xx (404, 405: a backend that is not what the
        proxy expects) is the proxy's problem, a failed call."""
        return self.status in RELAYED and error_fields(self.body) is not None

    def as_error(self) -> ApiError:
        """The error the proxy answers with when this call was required."""
        fields = error_fields(self.body) if self.status in RELAYED else None
        if fields is not None:
            return Relayed(self.status or 400, fields)
        if self.out_of_budget:
            return DeadlineExceeded(f"the deadline passed while waiting for {self.name}")
        return Unavailable(f"{self.name} failed: {self.error}", dependency=self.name)

    def predictions(self, rows: int) -> list[dict[str, Any]]:
        """The answer's `predictions`, one dict per row sent, or Malformed (a 503 naming it)."""
        preds = (self.body or {}).get("predictions")
        if not isinstance(preds, list) or len(preds) != rows:
            raise Malformed(self.name, f"expected {rows} predictions")
        if not all(isinstance(p, dict) for p in preds):
            raise Malformed(self.name, "a prediction is not an object")
        return preds

    def trace(self) -> dict[str, Any]:
        model = (self.body or {}).get("model")
        version = model.get("version") if isinstance(model, dict) else None
        return {
            "name": self.name,
            "version": version,
            "latency_ms": round(self.latency_ms, 2),
            "outcome": "ok" if self.ok else self.error,
        }


def positive_probability(name: str, prediction: dict[str, Any]) -> float:
    """A one-vs-rest model's probability of its own class (the last label; "rest" is first)."""
    probabilities = prediction.get("probabilities")
    if not isinstance(probabilities, dict) or not probabilities:
        raise Malformed(name, "a one-vs-rest model's `probabilities` are missing")
    value = list(probabilities.values())[-1]
    if not isinstance(value, int | float):
        raise Malformed(name, "a probability is not a number")
    return float(value)


def positives(outcome: Outcome, n_rows: int) -> list[float]:
    """Each row's positive-class probability from one backend (Malformed if it cannot say)."""
    return [positive_probability(outcome.name, p) for p in outcome.predictions(n_rows)]


class Relayed(ApiError):
    """A backend's 4xx, passed on unchanged (code, message, field) with its status; read
    from either error shape (serving/errors.py), answered in the proxy's."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        extra = {k: v for k, v in error.items() if k not in ("code", "message", "request_id")}
        super().__init__(str(error.get("message", "")), **extra)
        self.status_code = status
        self.code = str(error.get("code", "bad_request"))


class Upstream:
    """Keep-alive connection pools to the services behind a proxy, one per origin
    (serving/h1.py: a fraction of httpx's cost per call, which is what a proxy spends)."""

    def __init__(self, max_connections: int = 100) -> None:
        self.max_connections = max_connections
        self._pools: dict[str, h1.Pool] = {}

    def pool(self, url: str) -> h1.Pool:
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = h1.Pool(url, max_connections=self.max_connections)
        return pool

    async def send(
        self,
        url: str,
        method: str,
        path: str,
        *,
        seconds: float,
        request_id: str | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> h1.Response:
        """One call within `seconds`; a connection failure (nothing sent) is retried once
        after a jittered pause, if time is left. Raises h1.H1Error."""
        all_headers = dict(headers or {})
        if request_id:
            all_headers["X-Request-ID"] = request_id
        deadline = time.monotonic() + seconds
        pool = self.pool(url)
        for attempt in (0, 1):
            try:
                return await pool.request(
                    method,
                    path,
                    body=body,
                    headers=all_headers,
                    seconds=max(deadline - time.monotonic(), 0.001),
                    connect_seconds=http.CONNECT_TIMEOUT,
                )
            except h1.ConnectFailed:
                pause = http.backoff(attempt)
                if attempt or deadline - time.monotonic() <= pause:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()


async def call(
    upstream: Upstream,
    backend: Backend,
    path: str,
    *,
    budget: Budget,
    request_id: str | None,
    content: bytes,
    content_type: str = "application/json",
    service: str = "proxy",
) -> Outcome:
    """POST `content` to backend + path within min(backend.timeout, budget left)."""
    started = time.perf_counter()
    left = budget.left()
    if left <= 0:
        return Outcome(backend.name, False, 0.0, error="deadline", out_of_budget=True)
    timeout = min(backend.timeout, left)
    gauge = metrics.DEPENDENCY_UP.labels(service, backend.name)
    try:
        resp = await upstream.send(
            backend.url,
            "POST",
            path,
            seconds=timeout,
            request_id=request_id,
            body=content,
            headers={"Content-Type": content_type, **budget.headers()},
        )
    except h1.ReadTimeout:
        elapsed = (time.perf_counter() - started) * 1000
        gauge.set(1)  # it took the connection; it is slow, not down
        return Outcome(
            backend.name, False, elapsed, error="timeout", out_of_budget=left < backend.timeout
        )
    except h1.H1Error as exc:
        gauge.set(0)
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(backend.name, False, elapsed, error=f"unreachable ({type(exc).__name__})")
    elapsed = (time.perf_counter() - started) * 1000
    gauge.set(1)
    try:
        body = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        body = None
    if resp.status == 200 and isinstance(body, dict):
        return Outcome(backend.name, True, elapsed, 200, body)
    return Outcome(
        backend.name,
        False,
        elapsed,
        resp.status,
        body if isinstance(body, dict) else None,
        error=f"status {resp.status}",
        out_of_budget=resp.status == 504,
    )


async def fan_out(
    upstream: Upstream,
    backends: Sequence[Backend],
    path: str,
    *,
    budget: Budget,
    request_id: str | None,
    content: bytes,
    service: str = "proxy",
) -> list[Outcome]:
    """The same request to every backend at once; outcomes in the backends' order."""
    return list(
        await asyncio.gather(
            *(
                call(
                    upstream,
                    b,
                    path,
                    budget=budget,
                    request_id=request_id,
                    content=content,
                    service=service,
                )
                for b in backends
            )
        )
    )


class ProxySettings(ServingSettings):
    """Settings of a service that calls others and loads no model (serial, parallel, prep)."""

    default_budget_ms: int = Field(1000, ge=1, le=60_000)
    """The budget of a request that sends no X-Request-Deadline-Ms."""
    upstream_connections: int = Field(100, ge=1, le=10_000)
    """Connection pool size towards the services behind (per process)."""


ProxyHandler = Callable[[Request, bytes, Budget], Awaitable[Response]]
"""(request, body already size-checked, the request's budget) -> the response."""


class PrimarySettings(MlspSettings):
    """A proxy before one primary model whose answers clients get (circuit_breaker,
    shadow_ab)."""

    primary_url: ServiceUrl
    """Base URL of the primary model server, e.g. http://circuit-breaker-primary:8000."""
    primary_timeout_ms: int = Field(500, ge=1, le=30_000)
    """Longest a call to the primary may take (less when the request's budget is shorter)."""


class FanOutSettings(ProxySettings):
    """A proxy before a list of named backends (parallel, parameter_based, condition_based)."""

    backends: list[Backend] = Field(min_length=1)
    """JSON list of {"name", "url", "timeout"}: the services this proxy may call."""


def proxy_app(
    settings: ProxySettings,
    routes: Mapping[str, tuple[str, ProxyHandler]],
    *,
    limit: int | None = None,
    content: Mapping[str, Any] | None = None,
    extend: Callable[[FastAPI, ServiceState], None] | None = None,
    limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A service with no model whose POST routes (path -> (summary, handler)) call others.

    The routes sit behind the same middleware as every server (request id, deadline and
    overload admission, metrics, access log); the body is read with the size limit first.
    `content`: the OpenAPI request body by media type (default: the shared API's rows schema);
    `extend(app, state)` adds routes, readiness checks or start-up tasks after them;
    `limits`: a body size limit per path, where one differs from `limit` (an image route).
    """
    doc = body_doc(rows=True)
    if content is not None:
        doc["requestBody"]["content"] = dict(content)

    def endpoint(handle: ProxyHandler, size: int) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            body = await read_body(request, size)
            budget = Budget.from_request(request, settings.default_budget_ms / 1000)
            return await handle(request, body, budget)

        return route

    def add_routes(app: FastAPI, state: ServiceState) -> None:
        for path, (summary, handle) in routes.items():
            app.add_api_route(
                path,
                endpoint(handle, (limits or {}).get(path, limit or settings.max_body_bytes)),
                methods=["POST"],
                tags=["predict"],
                summary=summary,
                responses=ERRORS,
                openapi_extra=doc,
            )
        if extend is not None:
            extend(app, state)

    return create_app(settings, needs_model=False, extend=add_routes)


def upstream_client(settings: ProxySettings) -> Upstream:
    return Upstream(settings.upstream_connections)
