"""data_cache, the warm-up step: pre-fill the cache with the tensors of items not cached yet, so
new ids are hits from their first request (a Job on Kubernetes, run after a seed or a
preprocessing release; an init step locally). At most MLSP_WARMUP_LIMIT items, in pages.

Exit 0 when done; exit 1 when Redis or the store does not answer (the Job's retries apply;
the api works without a warm cache, only slower).

    MLSP_DATABASE_URL=... MLSP_REDIS_URL=... python -m patterns.data_cache.warmup
"""

from __future__ import annotations

import logging
import sys

import redis
from pydantic import Field

from patterns.data_cache.store import DbSettings, TensorCacheSettings, encode, tensor_key
from serving import preprocessing
from serving.db import Db
from serving.errors import ApiError
from serving.logs import configure_logging
from serving.settings import ImageLimits

log = logging.getLogger("data_cache")

PAGE = 200


class WarmupSettings(DbSettings, TensorCacheSettings, ImageLimits):
    """The warm-up step: the store's items preprocessed into the tensor cache."""

    warmup_limit: int = Field(10_000, ge=0, le=1_000_000)
    """Most items to warm."""


def main() -> int:
    s = WarmupSettings()
    configure_logging("data-cache-warmup", "data_cache")
    client = redis.Redis.from_url(s.redis_url, socket_connect_timeout=2, socket_timeout=5)
    db = Db.from_settings(s)
    counts = {"cached": 0, "already": 0, "invalid": 0}
    last = ""
    try:
        while sum(counts.values()) < s.warmup_limit:
            page = db.execute(
                "SELECT item_id FROM images WHERE item_id > %s ORDER BY item_id LIMIT %s",
                (last, min(PAGE, s.warmup_limit - sum(counts.values()))),
            ).fetchall()
            if not page:
                break
            ids = [row[0] for row in page]
            last = ids[-1]
            keys = [tensor_key(i) for i in ids]
            present = client.pipeline(transaction=False)
            for key in keys:
                present.exists(key)
            fill = client.pipeline(transaction=False)
            for item_id, key, exists in zip(ids, keys, present.execute(), strict=True):
                if exists:
                    counts["already"] += 1
                    continue
                image = db.execute("SELECT image FROM images WHERE item_id = %s", (item_id,))
                try:
                    x = preprocessing.preprocess_image(
                        bytes(image.fetchone()[0]),
                        max_bytes=s.max_image_bytes,
                        max_side=s.max_image_side,
                    )
                except ApiError as exc:  # a broken image: the api will answer 4xx for it
                    log.warning("invalid image", extra={"item_id": item_id, "error": exc.message})
                    counts["invalid"] += 1
                    continue
                fill.set(key, encode(x), ex=s.cache_ttl_seconds, nx=True)
                counts["cached"] += 1
            fill.execute()
    except (redis.RedisError, OSError) as exc:
        log.error("warm-up failed: redis", extra={"error": repr(exc), **counts})
        return 1
    except Exception as exc:  # the store's driver errors (sqlite3, psycopg)
        log.error("warm-up failed: store", extra={"error": repr(exc), **counts})
        return 1
    finally:
        db.close()
    log.info("warmed up", extra=counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
