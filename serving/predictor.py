"""The model contract every server and pattern is built on: load -> verify -> ready, then
predict on a float32 batch.

    class Predictor(Protocol):
        async def load(self) -> None: ...         # open, verify (sha256, golden) or ModelError
        def not_ready(self) -> str | None: ...    # why it cannot answer yet (None: ready)
        @property
        def card(self) -> ModelCard: ...          # the model that answers: name, version, labels
        async def predict(self, x: Batch, call: Call) -> Prediction: ...

`OnnxPredictor` is the served ONNX model (serving/model.py) under a server's settings. A
pattern that changes how an answer is found wraps one (`Wrapper`: a cache in front, and the
fallback model, shadow and A/B arms to come) instead of replacing route handlers: the routes
(serving/app.py, serving/oip.py, the queue worker in serving/jobs.py) parse and shape, the
predictor answers. Pre-processing (an image to its tensor) and post-processing (a prediction
to its JSON body) live in serving/inference.py, around any predictor.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from serving import metrics, preprocessing
from serving.errors import Unavailable
from serving.model import ModelCard, ModelError, ModelMissing, OnnxModel, Prediction
from serving.settings import ServingSettings

Batch = npt.NDArray[np.float32]
"""Rows of features, shape [n, card.n_features], float32."""


@dataclass(slots=True)
class Call:
    """One prediction as a predictor sees it: what it may read and what it may add."""

    request_id: str | None = None
    log: dict[str, Any] = field(default_factory=dict)
    """Fields added to the request's access-log line (a cache adds its outcome)."""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Response headers a predictor adds (X-Cache), lower-case."""
    offload: bool = False
    """Run the model in a worker thread whatever the settings say (a queue worker's batch)."""


class Predictor(Protocol):
    """What answers predictions: the model, or something wrapping one (module docstring)."""

    async def load(self) -> None:
        """Open and verify the model, then be ready; raise ModelError when it never can be."""
        ...

    def not_ready(self) -> str | None:
        """Why it cannot answer now (loading, waiting for a file); None once ready."""
        ...

    @property
    def card(self) -> ModelCard:
        """The card of the model that answers; Unavailable (503) before it is ready."""
        ...

    async def predict(self, x: Batch, call: Call) -> Prediction:
        """Class ids and scores for the rows of `x` (checked by the caller)."""
        ...


class Wrapper:
    """A predictor around another: forwards the lifecycle and the card; override `predict`."""

    def __init__(self, inner: Predictor) -> None:
        self.inner = inner

    async def load(self) -> None:
        await self.inner.load()

    def not_ready(self) -> str | None:
        return self.inner.not_ready()

    @property
    def card(self) -> ModelCard:
        return self.inner.card

    async def predict(self, x: Batch, call: Call) -> Prediction:
        return await self.inner.predict(x, call)


class OnnxPredictor:
    """The ONNX model in `settings.model_dir`: waits for a missing file (up to
    `model_wait_seconds`), refuses a tampered or failing one, runs inline or in a thread."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.model: OnnxModel | None = None
        self._waiting: str | None = "model loading"

    def _open(self) -> OnnxModel:
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

    async def load(self) -> None:
        deadline = time.monotonic() + self.settings.model_wait_seconds
        while True:
            try:
                model = await asyncio.to_thread(self._open)
            except ModelMissing as exc:
                self._waiting = str(exc)
                if time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    continue
                raise
            self.model, self._waiting = model, None
            return

    def not_ready(self) -> str | None:
        return self._waiting if self.model is None else None

    def _ready(self) -> OnnxModel:
        if self.model is None:
            raise Unavailable(f"model not ready: {self._waiting}", reason="model_not_ready")
        return self.model

    @property
    def card(self) -> ModelCard:
        return self._ready().card

    async def predict(self, x: Batch, call: Call) -> Prediction:
        model, s = self._ready(), self.settings
        started = time.perf_counter()
        if s.inference_offload or call.offload:
            out = await asyncio.to_thread(model.predict, x)
        else:
            out = model.predict(x)
        if s.simulated_latency_ms:
            await asyncio.sleep(s.simulated_latency_ms / 1000)
        metrics.INFERENCE_DURATION.labels(s.service, model.card.name).observe(
            time.perf_counter() - started
        )
        return out
