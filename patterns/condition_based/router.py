"""condition_based, the router: each request goes to the model its conditions select, by
ordered rules read from a file (patterns/condition_based/rules.py), never to a hidden default.

The trade-off: specialised models (a model for one segment, one for images, one tuned for
night traffic) beat one general model, at the price of a routing table someone must be able to
read. Here the table is a ConfigMap (manifests/patterns/condition_based/routes.yaml), checked
at start-up (a rule naming a backend that does not exist stops the process), reloaded while
serving (validated, then swapped: serving/hotconfig.py), and explained: GET /routes/explain
answers which rule a request with these headers, query and content type would hit, and why
each earlier rule did not; `?at=HH:MM` evaluates it at another local time.

POST /predict (rows) and POST /predict/image (a PNG or JPEG, or rows) are sent, body and
content type unchanged, to the chosen backend's /predict/image for an image, else /predict;
an image routed to a model that takes none is a 415 naming the rule. The backend's answer
comes back as it is, with `X-Routed-To` (backend) and `X-Route-Rule` (rule). A backend that
is down or slow is a 503 (504 past the request's budget) naming it: no silent fallback to
another model, whose answer the client did not ask for.

    MLSP_BACKENDS='[{"name":"iris-svc","url":"http://127.0.0.1:8001"}, ...]' \\
        MLSP_ROUTES_FILE=manifests/patterns/condition_based/routes.yaml \\
        python -m patterns.condition_based.router
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from patterns.condition_based.rules import Facts, Routes, media_type, route
from serving.errors import BadRequest, DeadlineExceeded, Unavailable, UnsupportedMediaType
from serving.hotconfig import WatchedFile
from serving.inference import body_doc, json_response
from serving.schemas import ErrorResponse
from serving.state import ServiceState
from serving.upstream import Budget, FanOutSettings, call, proxy_app, upstream_client

PATTERN = "condition_based"
Clock = Callable[[], datetime]
"""Now, timezone-aware (tests pass their own)."""


class RouterSettings(FanOutSettings):
    routes_file: Path = Path("manifests/patterns/condition_based/routes.yaml")
    """The rules (YAML), required: reloaded when the file changes; at start-up a missing or
    invalid file, or a rule naming an unknown backend, stops the process."""
    routes_reload_seconds: float = Field(1.0, gt=0, le=300)
    """How often the rules file is read for a change."""
    max_image_bytes: int = Field(5 << 20, ge=1024)
    """Largest image the router forwards (413 above); the backend checks it again."""


def facts_of(request: Request, local: datetime, *, drop: tuple[str, ...] = ()) -> Facts:
    query = {k: v for k, v in request.query_params.items() if k not in drop}
    return Facts(
        headers={k.lower(): v for k, v in request.headers.items()},
        query=query,
        content_type=media_type(request.headers.get("content-type")),
        local=local,
    )


def at_time(value: str, now: datetime) -> datetime:
    """`?at=` as HH:MM today in the rules' zone, or an ISO datetime (400 otherwise)."""
    try:
        if len(value) <= 5:
            return datetime.combine(now.date(), time.fromisoformat(value), now.tzinfo)
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=now.tzinfo)
        return parsed.astimezone(now.tzinfo)
    except (ValueError, OverflowError):  # year 1 at +05:00 overflows in the conversion
        raise BadRequest(
            f"at: {value!r} is neither HH:MM nor an ISO datetime in range", field="at"
        ) from None


class Router:
    def __init__(self, settings: RouterSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.client = upstream_client(settings)
        self.backends = {b.name: b for b in settings.backends}

        def known_backends(routes: Routes) -> None:
            for i, rule in enumerate(routes.rules):
                if rule.backend not in self.backends:
                    raise ValueError(
                        f"rules[{i}].backend: {rule.backend!r} is not a backend "
                        f"({', '.join(self.backends)})"
                    )

        self.routes = WatchedFile(
            settings.routes_file,
            Routes,
            name="routes",
            interval=settings.routes_reload_seconds,
            check=known_backends,
            required=True,
        )
        self.routes.load()  # ConfigInvalid: the process does not start

    def now(self, routes: Routes) -> datetime:
        return self.clock().astimezone(routes.zone())

    async def forward(self, request: Request, body: bytes, budget: Budget) -> Response:
        routes, digest = self.routes.served()
        facts = facts_of(request, self.now(routes))
        rule, _ = route(routes, facts)
        backend = self.backends[rule.backend]
        # rows go to the model's /predict, an image to its /predict/image, whichever route
        # the client used (the middleware already refuses an image on /predict)
        image = (facts.content_type or "").startswith("image/")
        path = "/predict/image" if image else "/predict"
        scope_state = request.scope["state"]
        scope_state["log_extra"].update(rule=rule.name, routed_to=backend.name, routes=digest)
        outcome = await call(
            self.client,
            backend,
            path,
            budget=budget,
            request_id=scope_state["request_id"],
            content=body,
            content_type=request.headers.get("content-type", "application/json"),
            service=self.settings.service,
        )
        headers = {"X-Routed-To": backend.name, "X-Route-Rule": rule.name}
        if outcome.client_error:
            raise outcome.as_error()
        if image and outcome.status == 404:  # a model server without an image route
            raise UnsupportedMediaType(
                f"rule {rule.name} routes to {backend.name}, which takes no images",
                field="Content-Type",
                rule=rule.name,
            )
        if not outcome.ok or outcome.body is None:
            if outcome.out_of_budget:
                raise DeadlineExceeded(f"the deadline passed while waiting for {backend.name}")
            raise Unavailable(
                f"rule {rule.name} routes to {backend.name}, which failed: {outcome.error}",
                dependency=backend.name,
                rule=rule.name,
            )
        return json_response(outcome.body, headers=headers)

    def extend(self, app: FastAPI, state: ServiceState) -> None:
        watched = self.routes
        watched.attach(state)

        @app.get("/routes", tags=["routing"], summary="The rules being served, in order")
        async def rules() -> Response:
            current = watched.current
            return json_response(
                {
                    "digest": watched.digest,
                    "refused": watched.error,
                    "timezone": current.timezone,
                    "local_time": f"{self.now(current):%Y-%m-%d %H:%M %Z}",
                    "rules": current.model_dump(mode="json", exclude_none=True)["rules"],
                }
            )

        @app.get(
            "/routes/explain",
            tags=["routing"],
            summary="The rule a request with these headers, query and content type would hit",
            responses={400: {"model": ErrorResponse}},
            description="Send the headers and query parameters the real request would carry; "
            "`at` (HH:MM in the rules' zone, or an ISO datetime) evaluates at another time.",
        )
        async def explain(request: Request, at: str | None = None) -> Response:
            current = watched.current
            now = self.now(current)
            local = at_time(at, now) if at else now
            rule, trace = route(current, facts_of(request, local, drop=("at",)))
            return json_response(
                {
                    "rule": rule.name,
                    "backend": rule.backend,
                    "local_time": f"{local:%Y-%m-%d %H:%M %Z}",
                    "routes": watched.digest,
                    "evaluated": trace,
                }
            )

    def app(self) -> FastAPI:
        s = self.settings
        return proxy_app(
            s,
            {
                "/predict": ("Rows, to the model the first matching rule names", self.forward),
                "/predict/image": ("An image, to the model the rules name", self.forward),
            },
            content=body_doc(rows=True, images=True)["requestBody"]["content"],
            limits={"/predict/image": s.max_image_bytes},
            extend=self.extend,
        )


def build(settings: RouterSettings, *, clock: Clock | None = None) -> FastAPI:
    return Router(settings, clock).app()


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, RouterSettings, build))
