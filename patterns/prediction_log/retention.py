"""prediction_log, the retention step (a CronJob on Kubernetes, an init step locally): delete
log rows and feedback older than MLSP_RETENTION_DAYS, MLSP_RETENTION_BATCH rows per
transaction, until none is left, so a large backlog never holds one long lock or one huge
transaction. The `ts` index (serving/predlog.py) keeps each pass a range scan.

    MLSP_DATABASE_URL=sqlite:///data/prediction_log.db python -m patterns.prediction_log.retention
"""

from __future__ import annotations

import logging
import sys
import time

from pydantic import Field

from patterns.prediction_log.record import LogDbSettings
from serving.db import Db
from serving.logs import configure_logging
from serving.predlog import SCHEMA

log = logging.getLogger("prediction_log")

DELETE = (
    "DELETE FROM {table} WHERE request_id IN "
    "(SELECT request_id FROM {table} WHERE ts < %s ORDER BY ts LIMIT %s)"
)
TABLES = ("prediction_log", "feedback")


class RetentionSettings(LogDbSettings):
    """The retention step: how old a row may get, and how many go per transaction."""

    retention_days: float = Field(30.0, ge=0)
    """Rows older than this many days are deleted (prediction_log and feedback)."""
    retention_batch: int = Field(10_000, ge=1, le=1_000_000)
    """Rows deleted per transaction."""


def run(s: RetentionSettings, now: float | None = None) -> dict[str, int]:
    """Delete what is older than the retention period; rows deleted per table."""
    cutoff = (time.time() if now is None else now) - s.retention_days * 86_400
    db = Db.from_settings(s)
    deleted = dict.fromkeys(TABLES, 0)
    try:
        db.create_schema(SCHEMA)
        for table in TABLES:
            while True:
                db.begin()
                n = db.execute(DELETE.format(table=table), (cutoff, s.retention_batch)).rowcount
                db.commit()
                deleted[table] += n
                if n < s.retention_batch:
                    break
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()
    return deleted


def main() -> int:
    s = RetentionSettings()
    configure_logging("predlog-retention", "prediction_log")
    deleted = run(s)
    log.info(
        "retention done",
        extra={
            "retention_days": s.retention_days,
            **{f"deleted_{k}": v for k, v in deleted.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
