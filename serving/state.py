"""Process state behind /readyz: the predictor (loaded in the background), draining, fatal
errors.

The server listens at once; the predictor loads (serving/predictor.py: the model opened in a
worker thread, verified, self-tested) and only then does /readyz turn 200. A missing model file
is waited for (up to `model_wait_seconds`); a tampered or failing model is fatal: the process
exits non-zero, so a bad model never gets traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from serving import metrics
from serving.errors import Unavailable
from serving.model import ModelError, ModelMissing
from serving.predictor import OnnxPredictor, Predictor
from serving.settings import ServingSettings

log = logging.getLogger("serving")

ReadyCheck = Callable[[], Awaitable[str | None]]
"""An async check of a hard dependency: returns a reason when it is down, else None."""
WarnCheck = Callable[[], str | None]
"""A condition /readyz shows without flipping readiness (a refused configuration file while
the last good one is served): a warning, else None."""


class ServiceState:
    def __init__(
        self,
        settings: ServingSettings,
        *,
        needs_model: bool = True,
        predictor: Predictor | None = None,
    ) -> None:
        self.settings = settings
        self.needs_model = needs_model
        self.predictor: Predictor = predictor if predictor is not None else OnnxPredictor(settings)
        """What answers predictions (the model contract); loaded with the app when
        `needs_model`."""
        self.fatal: str | None = None
        self.draining = False
        self.loaded = asyncio.Event()
        """Set once the predictor is ready (for background tasks that need it)."""
        self.ready_checks: list[ReadyCheck] = []
        self.warn_checks: list[WarnCheck] = []
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        """Long-running tasks (a queue consumer) started with the app; they should return
        soon after `draining` turns true, and are cancelled at shutdown otherwise."""
        self.on_fatal: Callable[[], None] = lambda: None
        """Set by the server runner: asks the process to exit non-zero."""

    def public(self, reason: str) -> str:
        """A reason as clients read it (/readyz, a 503): the model's files named relative to
        its folder, and the folder itself, however it was configured, not named (the log, for
        operators, keeps the full path)."""
        folder = self.settings.model_dir
        for form in dict.fromkeys((str(folder.resolve()), str(folder.absolute()), str(folder))):
            reason = reason.replace(form + os.sep, "").replace(form, "the model folder")
        return reason

    async def reasons(self) -> list[str]:
        reasons: list[str] = []
        if self.draining:
            reasons.append("shutting down")
        if self.fatal:
            reasons.append(self.public(self.fatal))
        elif self.needs_model and (waiting := self.predictor.not_ready()):
            reasons.append(self.public(waiting))
        for check in self.ready_checks:
            if (reason := await check()) is not None:
                reasons.append(reason)
        metrics.READY.labels(self.settings.service).set(0 if reasons else 1)
        return reasons

    def warnings(self) -> list[str]:
        return [w for check in self.warn_checks if (w := check()) is not None]

    async def wait_for_model(self) -> Predictor | None:
        """The predictor once it is ready, for background work that needs it; None as soon as
        it never will be (a fatal load error, or the process is stopping)."""
        while not self.loaded.is_set():
            if self.fatal or self.draining:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.loaded.wait(), 0.5)
        return self.predictor

    def ready(self) -> Predictor:
        """The predictor, ready to answer; else 503 naming why."""
        if self.fatal or not self.loaded.is_set():
            why = self.fatal or self.predictor.not_ready() or "model loading"
            raise Unavailable(f"model not ready: {self.public(why)}", reason="model_not_ready")
        return self.predictor

    async def load_model(self) -> None:
        """Load and publish the predictor; any failure to load is fatal."""
        try:
            await self.predictor.load()
        except ModelMissing as exc:
            self.die(f"model missing: {exc}")
            return
        except ModelError as exc:
            self.die(f"model rejected: {exc}")
            return
        except Exception as exc:  # never leave readiness stuck at "loading"
            log.exception("model load failed")
            self.die(f"model load failed: {exc!r}")
            return
        card = self.predictor.card
        self.loaded.set()
        metrics.MODEL_INFO.labels(self.settings.service, card.name, card.version, card.sha256).set(
            1
        )
        log.info(
            "model ready",
            extra={"model": card.name, "model_version": card.version, "sha256": card.sha256},
        )

    def die(self, reason: str) -> None:
        self.fatal = reason
        log.error("fatal", extra={"reason": reason})
        self.on_fatal()
