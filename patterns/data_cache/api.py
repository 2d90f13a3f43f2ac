"""data_cache, the api: predict an item by id, with its preprocessed tensor cached in Redis.

POST /predict/item {"item_id": "digit-0001"}:
1. the id must match ^[A-Za-z0-9_-]{1,64}$ (else 422 naming `item_id`); it is only ever a bound
   query parameter and part of a cache key, never a path;
2. Redis key `mlsp:data_cache:{preprocess_version}:{item_id}` holds the tensor (float32, with a
   TTL; the Redis ConfigMap sets maxmemory and allkeys-lru). HIT: no store read, no decoding;
3. MISS: read the PNG from the `images` table, preprocess it (serving/preprocessing.py), store
   the tensor; concurrent misses for one id read the store once (single-flight);
4. the model always runs (this caches data, not answers: prediction_cache caches answers).

Unknown id -> 404. Redis down or slower than 50 ms -> BYPASS, still 200 (soft). Store down ->
503 naming `store` for misses, while cached items keep being served, so neither flips /readyz.
`X-Cache: HIT|MISS|BYPASS` and `mlsp_store_reads_total` show what happened.

    MLSP_DATABASE_URL=sqlite:///data/data_cache.db python -m patterns.data_cache.api
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from patterns.data_cache.store import (
    PATTERN,
    DbSettings,
    TensorCacheSettings,
    decode,
    encode,
    read_image,
    tensor_key,
)
from serving import preprocessing
from serving.app import create_app
from serving.cache import SoftCache
from serving.db import Store
from serving.errors import ApiError, InvalidInput, NotFound, Unavailable
from serving.inference import (
    ERRORS,
    invalid_from_pydantic,
    json_response,
    prediction_body,
    read_body,
    require_images,
)
from serving.predictor import Call
from serving.settings import ServingSettings
from serving.state import ServiceState

STORE_READS = Counter(
    "mlsp_store_reads", "Rows read from the item store (cache misses).", ["store"]
)


class ItemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class DataCacheSettings(ServingSettings, DbSettings, TensorCacheSettings):
    statement_timeout_ms: int = 2_000
    connect_timeout_seconds: int = 2


def build(settings: DataCacheSettings) -> FastAPI:
    cache = SoftCache.from_settings(settings, name=PATTERN, service=settings.service)
    store = Store(settings, service=settings.service, name="store")
    reads = STORE_READS.labels("images")

    def extend(app: FastAPI, state: ServiceState) -> None:
        async def load(item_id: str) -> bytes:
            reads.inc()
            image = await store.run(lambda db: read_image(db, item_id))
            if image is None:
                raise NotFound(f"no item {item_id!r} in the store", field="item_id")
            try:
                x = await asyncio.to_thread(
                    preprocessing.preprocess_image,
                    image,
                    max_bytes=settings.max_image_bytes,
                    max_side=settings.max_image_side,
                )
            except ApiError as exc:  # the stored image, not the request, is at fault
                raise InvalidInput(
                    [("item_id", f"the stored image of {item_id!r} is unusable: {exc.message}")]
                ) from None
            return encode(x)

        @app.post(
            "/predict/item",
            tags=["predict"],
            summary="Predict a stored item by id (its preprocessed tensor cached in Redis)",
            responses=ERRORS,
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ItemRequest.model_json_schema()}},
                }
            },
        )
        async def predict_item(request: Request) -> Response:
            predictor = state.ready()
            card = require_images(predictor.card)
            try:
                item_id = ItemRequest.model_validate_json(await read_body(request, 4096)).item_id
            except ValidationError as exc:
                raise invalid_from_pydantic(exc) from None
            key = tensor_key(item_id)
            data, outcome = await cache.get_or_compute(key, lambda: load(item_id))
            x = decode(data, card.n_features)
            if x is None:  # not a tensor of this model's width: rebuild and replace it
                data = await cache.flights.do(("rebuild", key), lambda: load(item_id))
                await cache.set(key, data)
                outcome = "MISS"
                x = decode(data, card.n_features)
                if x is None:  # this preprocessing does not make this model's input
                    raise Unavailable(
                        f"preprocessing {preprocessing.PREPROCESS_VERSION} makes tensors of "
                        f"{len(data) // 4} values, the model takes {card.n_features}",
                        reason="skew",
                        retry_after=30,
                    )
            context = request.scope["state"]
            call = Call(context["request_id"], context["log_extra"])
            out = await predictor.predict(x, call)
            body = prediction_body(call.request_id, card, out)
            body["item_id"] = item_id
            body["preprocess_version"] = preprocessing.PREPROCESS_VERSION
            call.log.update(cache=outcome, item_id=item_id, model_version=card.version)
            return json_response(body, headers={"X-Cache": outcome})

    return create_app(settings, extend=extend)


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, DataCacheSettings, build))
