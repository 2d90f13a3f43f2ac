"""The prediction log's table: what prediction_log writes and prediction_monitoring reads.

One row per answered request (several instances may share it), keyed by the request's full
UUID, so a replayed batch (a writer killed before its ack) inserts nothing twice
(`ON CONFLICT DO NOTHING`). SQLite locally, PostgreSQL on Kubernetes (serving/db.py); the
same statements run on both.

Columns:
- `request_id` the request's id (X-Request-ID or a minted UUID4); primary key.
- `ts` seconds since the epoch when the api answered (float).
- `model_name`, `model_version`, `training_run` (the card's MLflow run id, or NULL): the model
  that answered, so a row leads back to the run, its data hash and code sha.
- `input` JSON: the request's rows as sent, `[[f1, ..., fn], ...]`; a redacted feature is
  `null` in every row.
- `output` JSON: one object per row, `{"label", "class_id", "probabilities",
  "outlier_score", "outlier"}` (outlier_score: the outlier model's decision function,
  negative = outlier; outlier: that sign as a boolean; both null without an outlier model).
- `latency_ms` time spent answering, as the api measured it.
- `outlier_score` the request's most anomalous row (the minimum of its rows' scores), NULL
  without an outlier model: the one an operator sorts by.
- `sample_rate` the sampling rate in force when the row was logged (1.0 = every request): a
  reader that counts requests divides by it.

`feedback` holds outcomes posted after the fact (`POST /feedback`), one per request id, joined
to `prediction_log` on `request_id`.
"""

from __future__ import annotations

TABLE = "prediction_log"

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS prediction_log (
        request_id    TEXT PRIMARY KEY,
        ts            DOUBLE PRECISION NOT NULL,
        model_name    TEXT NOT NULL,
        model_version TEXT NOT NULL,
        training_run  TEXT,
        input         TEXT NOT NULL,
        output        TEXT NOT NULL,
        latency_ms    DOUBLE PRECISION NOT NULL,
        outlier_score DOUBLE PRECISION,
        sample_rate   DOUBLE PRECISION NOT NULL DEFAULT 1.0
    )""",
    "CREATE INDEX IF NOT EXISTS prediction_log_ts ON prediction_log (ts)",
    """CREATE TABLE IF NOT EXISTS feedback (
        request_id TEXT PRIMARY KEY,
        outcome    TEXT NOT NULL,
        ts         DOUBLE PRECISION NOT NULL
    )""",
)

COLUMNS = (
    "request_id",
    "ts",
    "model_name",
    "model_version",
    "training_run",
    "input",
    "output",
    "latency_ms",
    "outlier_score",
    "sample_rate",
)

INSERT = (
    "INSERT INTO prediction_log (request_id, ts, model_name, model_version, training_run,"
    " input, output, latency_ms, outlier_score, sample_rate)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING"
)
"""One row per tuple in COLUMNS order; a row already there is skipped (idempotent replay)."""
