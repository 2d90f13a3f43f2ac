"""data_cache, the seed step: fill the `images` table with MLSP_SEED_ITEMS digit PNGs (a Job on
Kubernetes; an init step locally). Idempotent: fixed ids, conflicting rows skipped.

The digits come from the model card's reference sample (8x8, 0-16), drawn as 32x32 grayscale
PNGs: the raw form the api has to fetch and preprocess. Ids are `digit-0001`, `digit-0002`...

    MLSP_DATABASE_URL=sqlite:///data/data_cache.db python -m patterns.data_cache.seed
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pydantic import Field

from patterns.data_cache.store import DbSettings, schema
from serving.db import Db
from serving.logs import configure_logging
from serving.model import read_card
from serving.preprocessing import render_digit
from serving.settings import ModelDirSettings

log = logging.getLogger("data_cache")


class SeedSettings(DbSettings, ModelDirSettings):
    """The seed step: items drawn from the model card's reference sample, into the store."""

    model_dir: Path = Path("data/models/digits-lr")
    seed_items: int = Field(200, ge=1, le=100_000)
    """How many items to write."""


def item_id(i: int) -> str:
    return f"digit-{i:04d}"


def main() -> int:
    s = SeedSettings()
    configure_logging("data-cache-seed", "data_cache")
    sample: list[list[float]] = read_card(s.model_dir).reference["sample"]
    rows = [(item_id(i + 1), render_digit(sample[i % len(sample)])) for i in range(s.seed_items)]
    db = Db.from_settings(s)
    try:
        total = db.seed(
            schema(db),
            "INSERT INTO images (item_id, image) VALUES (%s, %s) ON CONFLICT (item_id) DO NOTHING",
            rows,
            "SELECT COUNT(*) FROM images",
        )
    finally:
        db.close()
    log.info("seeded", extra={"items": s.seed_items, "images_total": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
