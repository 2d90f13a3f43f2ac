"""batch_inference, the seed step: load MLSP_SEED_ROWS items (a Job on Kubernetes; never at
import). Idempotent: ids are fixed and conflicting rows are skipped, so a rerun adds nothing.

Items are iris-like rows drawn with a fixed seed; every 997th item is deliberately invalid
(three features) to show that bad records get an `error` instead of stopping the batch.

    MLSP_DATABASE_URL=sqlite:///data/batch_inference.db python -m patterns.batch_inference.seed
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
from pydantic import Field

from patterns.batch_inference.db import SCHEMA, Db, DbSettings
from serving.logs import configure_logging
from serving.settings import RandomSeed

log = logging.getLogger("batch_inference")

LOW = np.array([4.3, 2.0, 1.0, 0.1])
HIGH = np.array([7.9, 4.4, 6.9, 2.5])
INVALID_EVERY = 997


class SeedSettings(DbSettings, RandomSeed):
    """The seed step: random iris-like items (every 997th one invalid) into the items table."""

    seed_rows: int = Field(10_000, ge=1, le=10_000_000)
    """How many items to write."""


def items(n: int, seed: int) -> list[tuple[int, str]]:
    rng = np.random.default_rng(seed)
    rows = np.round(rng.uniform(LOW, HIGH, size=(n, 4)), 1).tolist()
    out = []
    for i, row in enumerate(rows, start=1):
        features = row[:3] if i % INVALID_EVERY == 0 else row
        out.append((i, json.dumps(features)))
    return out


def main() -> int:
    s = SeedSettings()
    configure_logging("batch-seed", "batch_inference")
    db = Db.from_settings(s)
    try:
        total = db.seed(
            SCHEMA,
            "INSERT INTO items (id, features) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
            items(s.seed_rows, s.seed),
            "SELECT COUNT(*) FROM items",
        )
    finally:
        db.close()
    log.info("seeded", extra={"rows": s.seed_rows, "items_total": total})
    return 0


if __name__ == "__main__":
    sys.exit(main())
