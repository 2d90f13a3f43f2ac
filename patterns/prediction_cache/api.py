"""prediction_cache: skip the model call when the same input comes back (Redis in front).

POST /predict (rows) and POST /predict/image are the shared API (docs/catalogue.md) of the
model in MLSP_MODEL_DIR,
with a cache in front (serving/cache.py):

- key `mlsp:prediction_cache:{model}:{version}:{sha256(canonical input)}`: float32
  little-endian rows (5.1 and 5.10 are one key) or the raw image bytes with the preprocessing
  version in front. A new model version
  never reads an old version's answers; at start-up the old keys are removed by SCAN+UNLINK
  in the background (the TTL, MLSP_CACHE_TTL_SECONDS, removes whatever a sweep misses);
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
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import FastAPI

from serving import preprocessing
from serving.app import (
    PREDICT,
    PREDICT_IMAGE,
    create_app,
    image_features,
    image_model,
    infer,
    parse_rows,
    prediction_body,
)
from serving.cache import (
    SoftCache,
    SoftCacheSettings,
    canonical_rows,
    digest,
    glob_escape,
    x_cache,
)
from serving.middleware import FastHandler, FastResult
from serving.model import OnnxModel
from serving.settings import ServingSettings
from serving.state import ServiceState

log = logging.getLogger("prediction_cache")

PATTERN = "prediction_cache"


class CacheSettings(ServingSettings, SoftCacheSettings):
    """The model server's settings and the cache's: TTL 3600 s (the book's repository set
    none), a 32 MiB local tier with the same TTL (an answer never changes under its key)."""


def with_request_id(cached: bytes, rid: str) -> bytes:
    """A cached body is stored without request id; splice this request's in front."""
    return b'{"request_id":' + orjson.dumps(rid) + b"," + cached[1:]


def build(settings: CacheSettings) -> FastAPI:
    cache = SoftCache.from_settings(settings, name=PATTERN, service=settings.service)

    def model_prefix(model: OnnxModel) -> str:
        return cache.key(model.card.name, model.card.version) + ":"

    async def answer(
        state: ServiceState,
        model: OnnxModel,
        key_bytes: bytes,
        rid: str,
        log_extra: dict[str, Any],
        features: Callable[[], Awaitable[npt.NDArray[np.float32]]],
        extra: dict[str, str],
    ) -> FastResult:
        async def compute() -> bytes:
            body = prediction_body(None, model, await infer(state, model, await features()))
            del body["request_id"]
            return orjson.dumps({**body, **extra}, option=orjson.OPT_SERIALIZE_NUMPY)

        key = model_prefix(model) + digest(key_bytes)
        cached, outcome = await cache.get_or_compute(key, compute)
        log_extra["model_version"] = model.card.version
        log_extra["cache"] = outcome
        return with_request_id(cached, rid), x_cache(outcome)

    def handlers(state: ServiceState) -> dict[str, FastHandler]:
        async def rows(body: bytes, rid: str, log_extra: dict[str, Any]) -> FastResult:
            model = state.require_model()
            x = parse_rows(body, model, settings.max_batch)  # 4xx before the cache

            async def features() -> npt.NDArray[np.float32]:
                return x

            return await answer(state, model, canonical_rows(x), rid, log_extra, features, {})

        async def image(data: bytes, rid: str, log_extra: dict[str, Any]) -> FastResult:
            model = image_model(state)
            # Size, format and header checks before the cache; the decode only on a miss.
            preprocessing.open_checked(
                data, max_bytes=settings.max_image_bytes, max_side=settings.max_image_side
            )

            async def features() -> npt.NDArray[np.float32]:
                return await image_features(state, data)

            version = preprocessing.PREPROCESS_VERSION
            # the preprocessing version is part of an image's canonical input
            canonical = f"image/{version}:".encode() + data
            extra = {"preprocess_version": version}
            return await answer(state, model, canonical, rid, log_extra, features, extra)

        return {PREDICT: rows, PREDICT_IMAGE: image}

    def extend(app: FastAPI, state: ServiceState) -> None:
        async def sweep_old_versions() -> None:
            model = await state.wait_for_model()
            if model is None:  # nothing to sweep for a model that never loads
                return
            name = model.card.name
            removed = await cache.sweep(cache.key(glob_escape(name), "*"), model_prefix(model))
            log.info("cache swept", extra={"model": name, "removed_keys": removed})

        state.background.append(sweep_old_versions)

    return create_app(settings, extend=extend, handlers=handlers)


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, CacheSettings, build))
