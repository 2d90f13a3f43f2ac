"""batch_training, the seed step: the labelled rows a first training run learns from (a Job on
Kubernetes), and `--add N --bad K` to append N newly labelled rows, K of them broken on purpose
(what a week of feedback might bring).

    export MLSP_DATABASE_URL=sqlite:///data/batch_training.db
    python -m patterns.batch_training.seed
    python -m patterns.batch_training.seed --add 50 --bad 3

The first form is idempotent: it loads scikit-learn's iris rows only into an empty table.
New rows are iris rows with a little noise, drawn with MLSP_SEED; broken rows cycle through a
missing feature, a negative width and a label the model does not know.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from pydantic import Field

from patterns.batch_training.store import CLASSES, FEATURES, schema
from serving.db import Db, DbSettings
from serving.settings import RandomSeed

Row = tuple[Any, ...]
COLUMNS = ", ".join((*FEATURES, "label", "created_at"))
INSERT = f"INSERT INTO labelled ({COLUMNS}) VALUES ({', '.join(['%s'] * 6)})"  # noqa: S608
BAD_KINDS = ("missing feature", "negative width", "unknown label")


class SeedSettings(DbSettings, RandomSeed):
    """The seed step of batch_training."""

    database_url: str = "sqlite:///data/batch_training.db"
    """sqlite:///PATH (local default) or postgresql://USER:PASSWORD@HOST/DB."""
    noise: float = Field(0.05, ge=0, le=1)
    """Standard deviation (cm) of the noise on new rows."""


def iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The 150 iris rows (features, class ids), from the dataset file scikit-learn ships."""
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data, data.target


def new_rows(n: int, bad: int, seed: int, noise: float) -> list[Row]:
    """`n` labelled rows, the first `bad` of them broken (one kind after another)."""
    x, y = iris()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(x), size=n)
    features = np.round(x[pick] + rng.normal(0, noise, size=(n, 4)), 2).clip(0.1)
    now = time.time()
    rows: list[Row] = []
    for i in range(n):
        values: list[Any] = [float(v) for v in features[i]]
        label = CLASSES[int(y[pick[i]])]
        if i < bad:
            kind = BAD_KINDS[i % len(BAD_KINDS)]
            if kind == "missing feature":
                values[1] = None
            elif kind == "negative width":
                values[3] = -values[3]
            else:
                label = "unknown"
        rows.append((*values, label, now))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patterns.batch_training.seed")
    parser.add_argument("--add", type=int, default=0, help="append this many new labelled rows")
    parser.add_argument("--bad", type=int, default=0, help="... this many of them broken")
    args = parser.parse_args(argv)
    if args.add < 0 or not 0 <= args.bad <= args.add or args.add > 1_000_000:
        parser.error("need 0 <= --bad <= --add <= 1000000")
    s = SeedSettings()
    db = Db.from_settings(s)
    try:
        db.create_schema(schema(db))
        count = int(db.execute("SELECT COUNT(*) FROM labelled").fetchone()[0])
        db.rollback()
        if args.add:
            rows = new_rows(args.add, args.bad, s.seed + count, s.noise)
        elif count == 0:
            x, y = iris()
            now = time.time()
            rows = [(*map(float, xi), CLASSES[int(yi)], now) for xi, yi in zip(x, y, strict=True)]
        else:
            rows = []
        db.begin()
        db.executemany(INSERT, rows)
        db.commit()
        total = int(db.execute("SELECT COUNT(*) FROM labelled").fetchone()[0])
        db.rollback()
    finally:
        db.close()
    print(json.dumps({"event": "seeded", "added": len(rows), "rows_total": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
