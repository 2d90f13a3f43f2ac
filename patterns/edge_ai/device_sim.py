"""device-sim: a device that keeps its model up to date from the hub and predicts locally.

It runs the edge-client's code (patterns/edge_ai/device.py) on its folder (a PVC): a sync at
start and every MLSP_SYNC_INTERVAL_SECONDS, and serves the shared API (/predict,
/predict/image, /metadata, OIP v2) from the active slot, through the shared app factory. The
hub is a soft dependency: while it is unreachable (or offers something refused) the device
keeps serving its last good model, and /readyz says so in `warnings`, still 200. A pointer
changed from outside (`python -m patterns.edge_ai.client rollback` on the same folder) is
picked up within a second. Not ready only until a first model is installed.
Manifest: manifests/patterns/edge_ai/.

    MLSP_MANIFEST_KEY=... MLSP_HUB_URL=http://127.0.0.1:8000 python -m patterns.edge_ai.device_sim
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from patterns.edge_ai.device import Device, DeviceSettings, SyncResult, open_checked
from serving import metrics
from serving.app import create_app
from serving.errors import Unavailable
from serving.http import backoff
from serving.inference import json_response
from serving.model import ModelCard, ModelError, OnnxModel, Prediction
from serving.predictor import Batch, Call
from serving.server import serve_pattern
from serving.state import ServiceState

log = logging.getLogger("edge_ai.device_sim")
HUB = "model-hub"


class SlotPredictor:
    """The model in the device's active slot, swapped whole when the pointer moves."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.model: OnnxModel | None = None
        self.serving: tuple[str, str] | None = None
        """(slot, sha256) of the model loaded."""
        self.why = "no model installed yet: waiting for the first sync"
        self.loaded = False
        """Set by `load` (the app then marks the service loaded), so readiness and the
        routes turn together."""

    def refresh(self) -> bool:
        """Load the active slot if it is not the one served; True when it changed."""
        active = self.device.active()
        if active is None:
            return False
        key = (active["slot"], active["sha256"])
        if key == self.serving:
            return False
        try:
            model = open_checked(self.device.slot(active["slot"]))
        except ModelError as exc:
            self.why = f"the active slot fails its checks: {exc}"
            log.error("active slot refused", extra={"slot": key[0], "error": str(exc)})
            self.serving = key  # not retried until the pointer moves again
            return False
        old = self.model
        self.model, self.serving = model, key
        s, card = self.device.s, model.card
        if old is not None:
            with contextlib.suppress(KeyError):
                metrics.MODEL_INFO.remove(
                    s.service, old.card.name, old.card.version, old.card.sha256
                )
        metrics.MODEL_INFO.labels(s.service, card.name, card.version, card.sha256).set(1)
        log.info(
            "model switched",
            extra={"slot": key[0], "model": card.name, "model_version": card.version},
        )
        return True

    async def load(self) -> None:
        while True:
            await asyncio.to_thread(self.refresh)
            if self.model is not None:
                self.loaded = True
                return
            await asyncio.sleep(0.2)

    def not_ready(self) -> str | None:
        return None if self.loaded else self.why

    def _ready(self) -> OnnxModel:
        if self.model is None:
            raise Unavailable(f"model not ready: {self.why}", reason="model_not_ready")
        return self.model

    @property
    def card(self) -> ModelCard:
        return self._ready().card

    async def predict(self, x: Batch, call: Call) -> Prediction:
        model = self._ready()
        started = time.perf_counter()
        out = model.predict(x)
        metrics.INFERENCE_DURATION.labels(self.device.s.service, model.card.name).observe(
            time.perf_counter() - started
        )
        return out


class Syncer:
    """Syncs at start and every interval; watches the pointer every second."""

    def __init__(self, device: Device, predictor: SlotPredictor, state: ServiceState) -> None:
        self.device, self.predictor, self.state = device, predictor, state
        self.last: SyncResult | None = None
        self.last_at: float | None = None

    def warning(self) -> str | None:
        last = self.last
        if last is None or last.status in {"updated", "up_to_date"}:
            return None
        return f"last sync {last.status}: {last.detail}"

    async def refresh(self) -> None:
        """The pointer watch: load the active slot if it moved; an error is logged, not fatal."""
        try:
            await asyncio.to_thread(self.predictor.refresh)
        except Exception:
            log.exception("reading the active slot failed")

    async def sync_once(self) -> None:
        """One sync; whatever it raises is logged and recorded as a failed sync (/readyz warns)
        so the loop goes on syncing and watching the pointer."""
        try:
            result = await asyncio.to_thread(self.device.sync)
        except Exception as exc:
            log.exception("sync failed")
            result = SyncResult("failed", f"{type(exc).__name__}: {exc}", None)
        self.last, self.last_at = result, time.time()
        up = 0 if result.status == "unreachable" else 1
        metrics.DEPENDENCY_UP.labels(self.device.s.service, HUB).set(up)
        level = {"updated": logging.INFO, "up_to_date": logging.DEBUG}.get(
            result.status, logging.WARNING
        )
        log.log(level, "sync", extra=result.as_json())
        await self.refresh()
        if self.predictor.model is None:
            self.predictor.why = (
                f"no model installed yet: last sync {result.status}: {result.detail}"
            )

    async def run(self) -> None:
        interval = self.device.s.sync_interval_seconds
        next_sync, attempt = 0.0, 0
        while not self.state.draining:
            if time.monotonic() >= next_sync:
                await self.sync_once()
                # Without a model, try again soon (the hub may be starting); then every interval.
                if self.predictor.model is None:
                    pause = min(interval, 0.5 + backoff(attempt, base=0.5, cap=10.0))
                    attempt += 1
                else:
                    pause, attempt = interval, 0
                next_sync = time.monotonic() + pause
            else:
                await self.refresh()
            await asyncio.sleep(1.0)


def install(app: FastAPI, state: ServiceState, syncer: Syncer) -> None:
    state.warn_checks.append(syncer.warning)
    state.background.append(syncer.run)

    @app.get("/edge/status", tags=["edge"], summary="The slots, the pointer and the last sync")
    async def status() -> Response:
        body: dict[str, Any] = await asyncio.to_thread(syncer.device.status)
        if syncer.last is not None:
            body["last_sync"] = {**syncer.last.as_json(), "at": syncer.last_at}
        return json_response(body)


def build(settings: DeviceSettings) -> FastAPI:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per sync call otherwise
    device = Device(settings)
    predictor = SlotPredictor(device)
    holder: dict[str, Syncer] = {}

    def extend(app: FastAPI, state: ServiceState) -> None:
        holder["s"] = Syncer(device, predictor, state)
        install(app, state, holder["s"])

    return create_app(settings, predictor=predictor, extend=extend)


if __name__ == "__main__":
    sys.exit(serve_pattern("edge_ai", DeviceSettings, build))
