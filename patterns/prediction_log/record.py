"""prediction_log, the log entry: what the api appends to the stream and the writer stores.

An entry's `rows` field is a JSON array of rows (the api appends what its buffer holds in one
entry: one XADD per round trip, not one per prediction); `row` holds one. A row is a JSON
object with the columns of serving/predlog.py (`input` and `output` as JSON values, not
text). `Row` validates it on the writer's side (a row that does not validate is
dead-lettered); `as_tuple` gives the INSERT's parameters.

Sampling is by request id (`sampled`): the same id is always in or always out, whichever
replica answers. Redaction (`redact`) writes null for the listed features in every logged row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr, TypeAdapter

from serving import metrics
from serving.db import DbSettings
from serving.predlog import COLUMNS

PATTERN = "prediction_log"
ROWS = "rows"
"""The api's entries: a JSON array of rows (what its buffer held: one XADD, not one per row)."""
COUNT = "n"
"""How many rows `rows` holds (the writer sizes its batches by it)."""
FIELD = "row"
"""An entry of one row, a JSON object (a replay by hand; the writer reads both kinds)."""
GROUP = "writers"
"""The writers' consumer group."""

APPENDED = Counter(
    "mlsp_predlog_appended", "Log entries appended to the Redis stream.", ["service"]
)
SPILLED = Counter(
    "mlsp_predlog_spilled",
    'Log entries written to stdout instead (`"spilled": true` lines), by reason: '
    "redis_unavailable, backlog_full, buffer_full, unencodable.",
    ["service", "reason"],
)
DROPPED = Counter(
    "mlsp_predlog_dropped",
    "Log entries lost: neither appended nor spilled (stdout itself failed).",
    ["service"],
)
SAMPLED_OUT = Counter(
    "mlsp_predlog_sampled_out", "Predictions not logged by the sampling rate.", ["service"]
)
ROWS_WRITTEN = Counter("mlsp_predlog_rows_written", "Rows a sink stored, by sink.", ["sink"])
BATCH_ROWS = Histogram(
    "mlsp_predlog_batch_rows",
    "Entries per written batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
BATCH_SECONDS = Histogram(
    "mlsp_predlog_batch_seconds",
    "Time to store one batch in every sink (before its ack).",
    buckets=metrics.LATENCY_BUCKETS,
)
LAG = Gauge(
    "mlsp_predlog_lag_seconds",
    "Age of the oldest row of the last stored batch when it was committed.",
    multiprocess_mode="max",
)
BACKLOG = Gauge(
    "mlsp_predlog_backlog",
    "Entries in the stream not stored yet (waiting or delivered and unacknowledged).",
    multiprocess_mode="max",
)
DEAD = Counter(
    "mlsp_predlog_dead_letters",
    "Entries moved to the dead-letter stream (malformed, or refused by the database).",
    ["reason"],
)
RECLAIMED = Counter(
    "mlsp_predlog_reclaimed", "Entries taken over from a consumer that stopped (XAUTOCLAIM)."
)


class LogDbSettings(DbSettings):
    database_url: str = "sqlite:///data/prediction_log.db"


def sampled(request_id: str, rate: float) -> bool:
    """Whether the request is logged: the first 8 bytes of sha256(request id), as a fraction
    of 2**64, below `rate` (deterministic: the same id, the same answer, on every replica)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    head = hashlib.sha256(request_id.encode()).digest()[:8]
    return int.from_bytes(head, "big") < rate * 2**64


def redact(rows: list[list[float]], indices: Sequence[int]) -> list[list[float | None]]:
    """The rows with null in each redacted feature (a copy; the model saw the real values)."""
    if not indices:
        return rows  # type: ignore[return-value]  # list is invariant; the rows are not changed
    out: list[list[float | None]] = []
    for row in rows:
        copy: list[float | None] = list(row)
        for i in indices:
            copy[i] = None
        out.append(copy)
    return out


Text = Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]


class Row(BaseModel):
    """One logged prediction as the stream carries it (serving/predlog.py's columns)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    request_id: Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[!-~]+$")]
    ts: Number
    model_name: Text
    model_version: Text
    training_run: Text | None = None
    input: Annotated[list[list[Number | None]], Field(min_length=1, max_length=10_000)]
    output: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=10_000)]
    latency_ms: Annotated[Number, Field(ge=0)]
    outlier_score: Number | None = None
    sample_rate: Annotated[Number, Field(gt=0, le=1)]

    def as_tuple(self) -> tuple[Any, ...]:
        """The INSERT's parameters, in COLUMNS order (input and output as JSON text)."""
        values = self.__dict__
        return tuple(
            orjson.dumps(values[c]).decode() if c in ("input", "output") else values[c]
            for c in COLUMNS
        )


ROW_ADAPTER: TypeAdapter[Row] = TypeAdapter(Row)
ROWS_ADAPTER: TypeAdapter[list[Any]] = TypeAdapter(list[Any])
ROW_LIST: TypeAdapter[list[Row]] = TypeAdapter(list[Row])
