"""data_cache, the store: an `images` table of raw PNGs keyed by item id (serving/db.py: SQLite
locally, PostgreSQL on Kubernetes), and the cache key of an item's preprocessed tensor."""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
from pydantic import Field

from serving import preprocessing
from serving.cache import SoftCacheSettings, cache_key
from serving.db import Db
from serving.db import DbSettings as _DbSettings

PATTERN = "data_cache"

ITEM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What an item id may look like; it is only ever a bound query parameter or part of a cache
key, never a path."""


class DbSettings(_DbSettings):
    database_url: str = "sqlite:///data/data_cache.db"


class TensorCacheSettings(SoftCacheSettings):
    """The tensor cache, as the api and the warm-up step both see it."""

    cache_ttl_seconds: int = Field(86_400, ge=1, le=30 * 86400)
    cache_local_bytes: int = Field(8 << 20, ge=0, le=1 << 34)
    cache_local_ttl_seconds: int | None = Field(60, ge=1, le=86_400)
    """How long a replica may keep a tensor without asking Redis: an item id can get new data,
    and deleting its Redis key reaches every replica within this time."""


def schema(db: Db) -> tuple[str, ...]:
    blob = "BYTEA" if db.postgres else "BLOB"
    return (
        f"""CREATE TABLE IF NOT EXISTS images (
            item_id TEXT PRIMARY KEY,
            image {blob} NOT NULL
        )""",
    )


def read_image(db: Db, item_id: str) -> bytes | None:
    row = db.execute("SELECT image FROM images WHERE item_id = %s", (item_id,)).fetchone()
    return bytes(row[0]) if row is not None else None


def tensor_key(item_id: str) -> str:
    """`mlsp:data_cache:{preprocess_version}:{item_id}`: a new preprocessing version never
    reads old tensors."""
    return cache_key(PATTERN, preprocessing.PREPROCESS_VERSION, item_id)


def encode(x: npt.NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def decode(data: bytes, width: int) -> npt.NDArray[np.float32] | None:
    """The cached tensor, or None when the bytes are not one (then it is a miss)."""
    if len(data) != width * 4:
        return None
    return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(1, width)
