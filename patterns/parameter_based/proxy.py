"""parameter_based, the proxy: runtime thresholds and on/off switches in front of parallel's
three one-vs-rest models, read from a file that is reloaded while serving.

The trade-off: a trained model cannot be edited, but what the business does with its scores
can be changed in seconds, by anyone who may edit a ConfigMap, without a build or a restart.
The parameters (MLSP_PARAMETERS_FILE, on Kubernetes the ConfigMap parameter-based-parameters
of manifests/patterns/parameter_based/, mounted as a folder so its updates reach the pod):

    activate_all: true            # false: every answer is {"status": "disabled"}, no call made
    classes:
      setosa:     {threshold: 0.9,  active: true}
      versicolor: {threshold: 0.85, active: true}
      virginica:  {threshold: 0.95, active: false}

Anything unset takes the value above (the book's defaults); a class not in the book takes
threshold 0.95, active. POST /predict calls the backend of each *active* class only, at once
(an inactive backend is never called: the book's code called all three and failed with a
KeyError on a missing parameter). Per row, an active class decides 1 when its model's
probability reaches the threshold, else 0; the label is the deciding class with the highest
probability, or `abstain` when none decides. Every answer and its log line carry the
parameters' digest (`parameters`, and the X-Parameters-Digest header); GET /parameters shows
them. A changed file is validated, then swapped whole; a refused one keeps the last good
parameters (serving/hotconfig.py).

    MLSP_BACKENDS='[{"name":"setosa","url":"http://127.0.0.1:8001"}, ...]' \\
        MLSP_PARAMETERS_FILE=data/parameter_based/parameters.yaml \\
        python -m patterns.parameter_based.proxy
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from serving.errors import DeadlineExceeded, Unavailable
from serving.hotconfig import WatchedFile
from serving.inference import json_response, parse_instances
from serving.state import ServiceState
from serving.upstream import (
    Budget,
    FanOutSettings,
    fan_out,
    positives,
    proxy_app,
    upstream_client,
)

PATTERN = "parameter_based"
ABSTAIN = "abstain"
DEFAULT_THRESHOLD = 0.95
BOOK = {"setosa": (0.9, True), "versicolor": (0.85, True), "virginica": (0.95, False)}
"""The book's defaults: threshold and on/off per class."""


class ClassParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(None, ge=0.0, le=1.0)
    """The model's probability at or above which the class decides 1."""
    active: bool | None = None
    """false: the class's backend is not called and the class never decides."""


class Parameters(BaseModel):
    """The parameter file, with every unset value filled in from the book's defaults."""

    model_config = ConfigDict(extra="forbid")

    activate_all: bool = True
    """false: every prediction answers {"status": "disabled"} and calls nothing."""
    classes: dict[str, ClassParameters] = Field(default_factory=dict)

    _named: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _defaults(self) -> Parameters:
        self._named = frozenset(self.classes)
        named = {name: self.classes.get(name, ClassParameters()) for name in BOOK}
        self.classes = {**named, **self.classes}  # the book's classes first, then any other
        for name, params in self.classes.items():
            threshold, active = BOOK.get(name, (DEFAULT_THRESHOLD, True))
            if params.threshold is None:
                params.threshold = threshold
            if params.active is None:
                params.active = active
        return self

    def named(self) -> frozenset[str]:
        """The classes the file names (the others took their defaults)."""
        return self._named

    def threshold(self, name: str) -> float:
        """A class the file does not name (nor the book): DEFAULT_THRESHOLD."""
        params = self.classes.get(name)
        value = params.threshold if params is not None else None
        return DEFAULT_THRESHOLD if value is None else value

    def active(self, name: str) -> bool:
        """A class the file does not name (nor the book): active, unless activate_all is off."""
        params = self.classes.get(name)
        return self.activate_all and (params is None or params.active is not False)


class ParameterSettings(FanOutSettings):
    parameters_file: Path = Path("data/parameter_based/parameters.yaml")
    """The parameters (YAML): thresholds and switches, reloaded when the file changes (a
    missing file: every parameter takes its default; invalid at start-up: the process stops)."""
    parameters_reload_seconds: float = Field(1.0, gt=0, le=300)
    """How often the parameters file is read for a change."""


def decide(params: Parameters, scores: dict[str, list[float]], rows: int) -> list[dict[str, Any]]:
    """Each row's decisions (1/0 per active class), the label (highest deciding probability,
    else `abstain`) and the scores behind them."""
    out = []
    for i in range(rows):
        row = {name: values[i] for name, values in scores.items()}
        decisions = {name: int(p >= params.threshold(name)) for name, p in row.items()}
        passing = [name for name, yes in decisions.items() if yes]
        label = max(passing, key=row.__getitem__) if passing else ABSTAIN
        out.append({"label": label, "decisions": decisions, "scores": row})
    return out


class ParameterProxy:
    def __init__(self, settings: ParameterSettings) -> None:
        self.settings = settings
        self.client = upstream_client(settings)
        names = {b.name for b in settings.backends}

        def known_classes(params: Parameters) -> None:
            """A class the file names active must have a backend (a typo would otherwise never
            decide); the book's classes without a backend are simply not called."""
            unknown = sorted(n for n in params.named() - names if params.active(n))
            if unknown:
                raise ValueError(
                    f"classes: {', '.join(unknown)} is active but has no backend "
                    f"(backends: {', '.join(sorted(names))})"
                )

        self.parameters = WatchedFile(
            settings.parameters_file,
            Parameters,
            name="parameters",
            interval=settings.parameters_reload_seconds,
            check=known_classes,
        )
        self.parameters.load()  # ConfigInvalid: the process does not start

    async def predict(self, request: Request, body: bytes, budget: Budget) -> Response:
        rows = parse_instances(body)
        rid: str = request.scope["state"]["request_id"]
        params, digest = self.parameters.served()
        request.scope["state"]["log_extra"]["parameters"] = digest
        headers = {"X-Parameters-Digest": digest}
        if not params.activate_all:
            answer: dict[str, Any] = {"request_id": rid, "parameters": digest, "status": "disabled"}
            return json_response(answer, headers=headers)
        active = [b for b in self.settings.backends if params.active(b.name)]
        outcomes = await fan_out(
            self.client,
            active,
            "/predict",
            budget=budget,
            request_id=rid,
            content=body,
            service=self.settings.service,
        )
        for o in outcomes:
            if o.client_error:
                raise o.as_error()
        failed = [o for o in outcomes if not o.ok]
        if failed:
            if all(o.out_of_budget for o in failed):
                raise DeadlineExceeded(
                    f"the deadline passed while waiting for {', '.join(o.name for o in failed)}"
                )
            raise Unavailable(
                "an active class's backend failed: "
                + ", ".join(f"{o.name} ({o.error})" for o in failed),
                dependency=",".join(o.name for o in failed),
                backends=[o.trace() for o in outcomes],
            )
        scores = {o.name: positives(o, len(rows)) for o in outcomes}
        answer = {
            "request_id": rid,
            "parameters": digest,
            "status": "ok",
            "predictions": decide(params, scores, len(rows)),
            "called": [o.name for o in outcomes],
            "backends": [o.trace() for o in outcomes],
        }
        return json_response(answer, headers=headers)

    def extend(self, app: FastAPI, state: ServiceState) -> None:
        watched = self.parameters
        watched.attach(state)

        @app.get("/parameters", tags=["health"], summary="The parameters being served")
        async def show() -> Response:
            return json_response(
                {
                    "digest": watched.digest,
                    "source": watched.source,
                    "refused": watched.error,
                    "parameters": watched.current.model_dump(mode="json"),
                    "calls": [b.name for b in self.settings.backends
                              if watched.current.active(b.name)],
                }
            )  # fmt: skip

    def app(self) -> FastAPI:
        summary = "Thresholds and switches on the active classes' one-vs-rest models"
        return proxy_app(self.settings, {"/predict": (summary, self.predict)}, extend=self.extend)


def build(settings: ParameterSettings) -> FastAPI:
    return ParameterProxy(settings).app()


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, ParameterSettings, build))
