"""batch_inference, the scoring step (a CronJob on Kubernetes): score every item that has no
prediction for the served model version, a chunk at a time, until none is left.

Per chunk, in one transaction: take up to MLSP_CHUNK_SIZE unscored items (PostgreSQL:
`FOR UPDATE OF items SKIP LOCKED`, so concurrent scorers take disjoint chunks; SQLite: the
write lock, one scorer), score the valid ones in one vectorised ONNX call, write every result
with `ON CONFLICT DO NOTHING`, commit. A crash loses at most the chunk in hand, which the next
run scores; an item never gets two predictions for one version (the primary key). Invalid
items get an `error` row, so they are never retried. A new model version has no rows yet, so
it rescores everything.

    MLSP_DATABASE_URL=sqlite:///data/batch_inference.db python -m patterns.batch_inference.score
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import Any

import numpy as np
from pydantic import Field

from patterns.batch_inference.db import Db, DbSettings
from serving.logs import configure_logging
from serving.model import OnnxModel
from serving.settings import ModelDirSettings

log = logging.getLogger("batch_inference")

TAKE = """SELECT i.id, i.features FROM items i
WHERE i.id > %s AND NOT EXISTS (
    SELECT 1 FROM predictions p WHERE p.item_id = i.id AND p.model_version = %s
)
ORDER BY i.id LIMIT %s"""
LOCK = " FOR UPDATE OF i SKIP LOCKED"
WRITE = """INSERT INTO predictions (item_id, model_version, label, probabilities, error)
VALUES (%s, %s, %s, %s, %s) ON CONFLICT (item_id, model_version) DO NOTHING"""
RECHECK = "SELECT item_id FROM predictions WHERE model_version = %s AND item_id = ANY(%s)"


class ScoreSettings(DbSettings, ModelDirSettings):
    """The scoring Job: every unscored item, in chunks, with the model in MLSP_MODEL_DIR."""

    chunk_size: int = Field(1000, ge=1, le=100_000)
    """Items per transaction and per ONNX call."""
    chunk_pause_ms: int = Field(0, ge=0, le=60_000)
    """Pause between chunks, to spare a busy database (a throttle; 0 = none)."""


def model_version(model: OnnxModel) -> str:
    return f"{model.card.name}/{model.card.version}"


def parse(features: str, width: int) -> list[float] | str:
    """The item's row, or the reason it cannot be scored."""
    try:
        row = json.loads(features)
    except ValueError:
        return "features are not valid JSON"
    if not isinstance(row, list) or len(row) != width:
        got = len(row) if isinstance(row, list) else type(row).__name__
        return f"expected {width} features, got {got}"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row):
        return "features must be numbers"
    if not all(math.isfinite(v) and abs(v) < 3e38 for v in row):
        return "features must be finite float32 values"
    return [float(v) for v in row]


def score_chunk(
    model: OnnxModel, version: str, items: list[tuple[int, str]]
) -> list[tuple[Any, ...]]:
    width = model.card.n_features
    parsed = [(item_id, parse(features, width)) for item_id, features in items]
    valid = [(i, row) for i, row in parsed if isinstance(row, list)]
    out: list[tuple[Any, ...]] = [
        (i, version, None, None, reason) for i, reason in parsed if isinstance(reason, str)
    ]
    if valid:
        pred = model.predict(np.asarray([row for _, row in valid], dtype=np.float32))
        labels = model.card.labels
        for (item_id, _), cid, scores in zip(valid, pred.class_ids, pred.scores, strict=True):
            probs = dict(zip(labels, (round(float(v), 6) for v in scores), strict=True))
            out.append((item_id, version, labels[int(cid)], json.dumps(probs), None))
    return out


def run(s: ScoreSettings) -> dict[str, int]:
    model = OnnxModel.load(s.model_dir)
    model.self_test()  # a model that fails its golden examples scores nothing
    version = model_version(model)
    db = Db.from_settings(s)
    take = TAKE + (LOCK if db.postgres else "")
    stats = {"chunks": 0, "scored": 0, "errors": 0}
    # Keyset cursor: each query starts after the last id this run took, instead of walking
    # past every scored item again (quadratic on a big table). Items another scorer had
    # locked and then dropped (it crashed) are behind the cursor: one last sweep from the
    # start picks them up.
    cursor, swept = 0, False
    try:
        while True:
            db.begin()
            items = db.execute(take, (cursor, version, s.chunk_size)).fetchall()
            if not items:
                db.rollback()
                if swept or cursor == 0:
                    break
                cursor, swept = 0, True
                continue
            cursor = max(item_id for item_id, _ in items)
            if db.postgres:
                # The lock was taken after the query's snapshot: a scorer that committed in
                # between has already scored some of these (READ COMMITTED re-checks only
                # rows it changed, and it changed none of `items`). A new statement sees it.
                done = db.execute(RECHECK, (version, [i for i, _ in items])).fetchall()
                scored = {row[0] for row in done}
                items = [item for item in items if item[0] not in scored]
            rows = score_chunk(model, version, items)
            if rows:
                db.executemany(WRITE, rows)
            db.commit()
            errors = sum(1 for r in rows if r[4] is not None)
            stats["chunks"] += 1
            stats["scored"] += len(rows) - errors
            stats["errors"] += errors
            log.info(
                "chunk committed",
                extra={
                    "model_version": version,
                    "rows": len(rows),
                    "chunk_errors": errors,
                    **stats,  # scored and errors so far
                },
            )
            if s.chunk_pause_ms:
                time.sleep(s.chunk_pause_ms / 1000)
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()
    return stats


def main() -> int:
    s = ScoreSettings()
    configure_logging("batch-score", "batch_inference")
    started = time.perf_counter()
    stats = run(s)
    elapsed = time.perf_counter() - started
    log.info(
        "batch finished",
        extra={
            **stats,
            "seconds": round(elapsed, 3),
            "rows_per_s": round(stats["scored"] / max(elapsed, 1e-9)),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
