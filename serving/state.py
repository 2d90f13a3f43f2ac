"""Process state behind /readyz: the model (loaded in the background), draining, fatal errors.

The server listens at once; the model loads in a worker thread, passes its golden self-test and
only then does /readyz turn 200. A missing model file is waited for (up to
`model_wait_seconds`); a tampered or failing model is fatal: the process exits non-zero, so a
bad model never gets traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from serving import metrics, preprocessing
from serving.errors import Unavailable
from serving.model import ModelError, ModelMissing, OnnxModel
from serving.settings import ServingSettings

log = logging.getLogger("serving")

ReadyCheck = Callable[[], Awaitable[str | None]]
"""An async check of a hard dependency: returns a reason when it is down, else None."""


class ServiceState:
    def __init__(self, settings: ServingSettings, *, needs_model: bool = True) -> None:
        self.settings = settings
        self.needs_model = needs_model
        self.model: OnnxModel | None = None
        self.load_error: str | None = "model loading" if needs_model else None
        self.fatal: str | None = None
        self.draining = False
        self.loaded = asyncio.Event()
        """Set once the model has passed its self-test (for background tasks that need it)."""
        self.ready_checks: list[ReadyCheck] = []
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        """Long-running tasks (a queue consumer) started with the app; they should return
        soon after `draining` turns true, and are cancelled at shutdown otherwise."""
        self.on_fatal: Callable[[], None] = lambda: None
        """Set by the server runner: asks the process to exit non-zero."""

    async def reasons(self) -> list[str]:
        reasons: list[str] = []
        if self.draining:
            reasons.append("shutting down")
        if self.fatal:
            reasons.append(self.fatal)
        elif self.needs_model and self.model is None and self.load_error:
            reasons.append(self.load_error)
        for check in self.ready_checks:
            if (reason := await check()) is not None:
                reasons.append(reason)
        metrics.READY.labels(self.settings.service).set(0 if reasons else 1)
        return reasons

    async def wait_for_model(self) -> OnnxModel | None:
        """The model once it has passed its self-test, for background work that needs it;
        None as soon as it never will be (a fatal load error, or the process is stopping)."""
        while not self.loaded.is_set():
            if self.fatal or self.draining:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.loaded.wait(), 0.5)
        return self.model

    def require_model(self) -> OnnxModel:
        if self.model is None:
            raise Unavailable(
                f"model not ready: {self.fatal or self.load_error}", reason="model_not_ready"
            )
        return self.model

    def _load(self) -> OnnxModel:
        s = self.settings
        model = OnnxModel.load(
            s.model_dir,
            intra_op_threads=s.ort_intra_op_threads,
            inter_op_threads=s.ort_inter_op_threads,
        )
        contract = model.card.preprocess
        if contract is not None and contract.version != preprocessing.PREPROCESS_VERSION:
            raise ModelError(
                f"skew: model expects preprocessing {contract.name} "
                f"v{contract.version}, this server implements "
                f"v{preprocessing.PREPROCESS_VERSION}"
            )
        model.self_test()
        return model

    async def load_model(self) -> None:
        """Load, self-test, publish. Waits for a missing file; anything else is fatal."""
        deadline = time.monotonic() + self.settings.model_wait_seconds
        while True:
            try:
                model = await asyncio.to_thread(self._load)
            except ModelMissing as exc:
                self.load_error = str(exc)
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    continue
                self.die(f"model missing: {exc}")
                return
            except ModelError as exc:
                self.die(f"model rejected: {exc}")
                return
            except Exception as exc:  # never leave readiness stuck at "loading"
                log.exception("model load failed")
                self.die(f"model load failed: {exc!r}")
                return
            break
        card = model.card
        self.model, self.load_error = model, None
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
