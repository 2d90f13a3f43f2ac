"""prediction_cache: skip the model call when the same input comes back (Redis in front).

POST /predict (rows), POST /predict/image and the OIP v2 infer route are the shared API
(docs/catalogue.md) of the model in MLSP_MODEL_DIR; the model is wrapped by a cache
(`CachedPredictor`, on the model contract of serving/predictor.py and serving/cache.py):

- key `mlsp:prediction_cache:{model}:{version}:{sha256(float32 rows)}`: the batch as the
  model sees it, little-endian (5.1 and 5.10 are one key; an image is keyed by its tensor, so
  two files with the same pixels share a key). A new model version never reads an old
  version's answers; at start-up the old keys are removed by SCAN+UNLINK in the background
  (the TTL, MLSP_CACHE_TTL_SECONDS, removes whatever a sweep misses);
- the value: the model's answer, `{"class_ids": [...], "scores": [[...]]}`; the response is
  shaped from it per request (its own request id);
- Redis is soft: an error or a 50 ms timeout is a BYPASS and the model answers (still 200);
- concurrent identical misses make one model call (single-flight);
- repeats are answered from an in-process tier first (MLSP_CACHE_LOCAL_BYTES, LRU, same TTL):
  a key names everything its answer depends on, so a value never changes under its key;
- `X-Cache: HIT|MISS|BYPASS` on every prediction, `mlsp_cache_requests_total` per outcome.

Invalid input is refused before the cache is consulted (a 4xx is never cached).

    MLSP_REDIS_URL=redis://127.0.0.1:6379/0 python -m patterns.prediction_cache.api
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import orjson
from fastapi import FastAPI

from serving.app import create_app
from serving.cache import SoftCache, SoftCacheSettings, canonical_rows, digest, glob_escape, x_cache
from serving.inference import encode
from serving.model import ModelCard, Prediction
from serving.predictor import Batch, Call, OnnxPredictor, Predictor, Wrapper
from serving.settings import ServingSettings
from serving.state import ServiceState

log = logging.getLogger("prediction_cache")

PATTERN = "prediction_cache"


class CacheSettings(ServingSettings, SoftCacheSettings):
    """The model server's settings and the cache's: TTL 3600 s (the book's repository set
    none), a 32 MiB local tier with the same TTL (an answer never changes under its key)."""


class CachedPredictor(Wrapper):
    """The model with a cache in front: an answer is looked up by model, version and the
    batch's bytes, and computed (once for concurrent equal misses) when it is not there."""

    def __init__(self, inner: Predictor, cache: SoftCache) -> None:
        super().__init__(inner)
        self.cache = cache

    def prefix(self, card: ModelCard) -> str:
        """Every key of this model version starts so."""
        return self.cache.key(card.name, card.version) + ":"

    async def predict(self, x: Batch, call: Call) -> Prediction:
        async def compute() -> bytes:
            out = await self.inner.predict(x, call)
            return encode({"class_ids": out.class_ids, "scores": out.scores})

        key = self.prefix(self.card) + digest(canonical_rows(x))
        value, outcome = await self.cache.get_or_compute(key, compute)
        call.log["cache"] = outcome
        call.headers.extend(x_cache(outcome))
        answer = orjson.loads(value)
        return Prediction(
            np.asarray(answer["class_ids"], dtype=np.int64),
            np.asarray(answer["scores"], dtype=np.float32),
        )


def build(settings: CacheSettings) -> FastAPI:
    cache = SoftCache.from_settings(settings, name=PATTERN, service=settings.service)
    predictor = CachedPredictor(OnnxPredictor(settings), cache)

    def extend(app: FastAPI, state: ServiceState) -> None:
        async def sweep_old_versions() -> None:
            if await state.wait_for_model() is None:  # nothing to sweep: it never loads
                return
            card = predictor.card
            removed = await cache.sweep(
                cache.key(glob_escape(card.name), "*"), predictor.prefix(card)
            )
            log.info("cache swept", extra={"model": card.name, "removed_keys": removed})

        state.background.append(sweep_old_versions)

    return create_app(settings, extend=extend, predictor=predictor)


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, CacheSettings, build))
