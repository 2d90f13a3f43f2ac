"""prediction_log, the log-writer: reads the api's stream in consumer group `writers` and
stores every entry once, in batches, into the sinks MLSP_SINKS names.

- A batch is MLSP_BATCH_ROWS entries (500) or what arrived within MLSP_BATCH_WAIT_SECONDS (1 s)
  of its first one, whichever comes first; it is stored in every sink, and only then
  acknowledged (XACK + XDEL). A writer killed before its ack leaves its entries pending: the
  next writer (or the same one restarted) takes them over with XAUTOCLAIM once they are idle
  for MLSP_CLAIM_MIN_IDLE_SECONDS, and stores them again: the table's primary key (request id)
  and `ON CONFLICT DO NOTHING` make the replay insert nothing twice.
- Sinks: `table` (serving/predlog.py's table: SQLite locally, PostgreSQL on Kubernetes; one
  transaction per batch) and `stdout` (one JSON line per row, for a log collector). The api
  does not know which: it only appends.
- An entry that does not validate (not JSON, a missing or mistyped column) is dead-lettered
  (`mlsp:prediction_log:dead`, with the reason) and counted, in the same transaction as the
  batch's ack; a row the database refuses (a data error, not an outage) is found by storing
  the batch row by row and dead-lettered too. Neither blocks the stream.
- Database or Redis down: nothing is acknowledged; the writer backs off and tries again;
  /readyz says why. /metrics: rows written per sink, batch size and duration, lag, backlog.

    MLSP_REDIS_URL=redis://127.0.0.1:6379/0 python -m patterns.prediction_log.writer
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson
from fastapi import FastAPI
from pydantic import Field, ValidationError, field_validator
from redis.exceptions import RedisError

from patterns.prediction_log import record
from patterns.prediction_log.record import GROUP, PATTERN, LogDbSettings, Row
from serving import redis_client
from serving.app import create_app
from serving.db import Db
from serving.http import back_off
from serving.predlog import COLUMNS, INSERT, SCHEMA
from serving.queue import default_consumer
from serving.settings import ConsumerSettings, RedisSettings, ServingSettings
from serving.state import ServiceState
from serving.stream import Entry, LogStream

log = logging.getLogger("prediction_log")
SINKS = ("table", "stdout")


class WriterSettings(ServingSettings, LogDbSettings, RedisSettings, ConsumerSettings):
    """The log-writer: batches from the stream into the sinks."""

    batch_rows: int = Field(500, ge=1, le=10_000)
    """Most entries stored (and acknowledged) in one batch."""
    batch_wait_seconds: float = Field(1.0, gt=0, le=60)
    """Longest a batch waits to fill up after its first entry."""
    claim_min_idle_seconds: float = Field(30.0, gt=0)
    """An entry delivered and unacknowledged this long belongs to a writer that stopped: it
    is taken over (XAUTOCLAIM)."""
    claim_interval_seconds: float = Field(5.0, gt=0)
    """How often the writer looks for such entries."""
    sinks: str = "table"
    """Comma-separated sinks every batch goes to: table, stdout."""

    @field_validator("sinks")
    @classmethod
    def known_sinks(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = sorted(set(names) - set(SINKS))
        if not names or unknown:
            raise ValueError(f"sinks must be some of {', '.join(SINKS)}; got {value!r}")
        return ",".join(dict.fromkeys(names))


def data_errors() -> tuple[type[BaseException], ...]:
    """Driver errors about the rows themselves (a value refused), as opposed to an outage."""
    errors: tuple[type[BaseException], ...] = (
        sqlite3.DataError,
        sqlite3.IntegrityError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
    )
    try:
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)


class Sink(Protocol):
    name: str

    def write(self, rows: Sequence[Row]) -> None:
        """Store the rows durably (blocking; runs in the writer's sink thread), or raise."""
        ...

    def close(self) -> None: ...


CHUNK = 500
"""Rows per INSERT statement (10 parameters each: under SQLite's and PostgreSQL's limits)."""
_ONE_ROW = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"


@functools.cache
def insert_many(n: int) -> str:
    """serving/predlog.py's INSERT with `n` rows in its VALUES list: one statement, one round
    trip, for a whole chunk (executemany costs a round trip's work per row)."""
    head, _, tail = INSERT.partition(" VALUES " + _ONE_ROW)
    if not tail:
        raise RuntimeError("serving/predlog.py's INSERT has no single-row VALUES list")
    return f"{head} VALUES {', '.join([_ONE_ROW] * n)}{tail}"


_COLS = ", ".join(COLUMNS)
INCOMING = (
    "CREATE TEMP TABLE IF NOT EXISTS prediction_log_incoming"
    " (LIKE prediction_log INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
# the names are serving/predlog.py's COLUMNS, no input
MERGE = (
    f"INSERT INTO prediction_log ({_COLS}) SELECT {_COLS} FROM prediction_log_incoming"  # noqa: S608
    " ON CONFLICT (request_id) DO NOTHING"
)


def copy_in(db: Db, rows: Sequence[Row]) -> None:
    """PostgreSQL: COPY the batch into a session-private table emptied at commit, then one
    INSERT ... SELECT with serving/predlog.py's conflict rule (ON CONFLICT (request_id) DO
    NOTHING). COPY costs a few microseconds a row where a parameterised INSERT costs tens: the
    difference between the writer keeping up with thousands of predictions a second or not."""
    with db.conn.cursor() as cur:
        cur.execute(INCOMING)
        with cur.copy(f"COPY prediction_log_incoming ({_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row.as_tuple())
        cur.execute(MERGE)


class TableSink:
    """serving/predlog.py's table: one transaction per batch, on one kept connection (SQLite:
    its INSERT with 500 rows per statement; PostgreSQL: COPY, then the same conflict rule)."""

    name = "table"

    def __init__(self, settings: WriterSettings) -> None:
        self.settings = settings
        self.db: Db | None = None

    def write(self, rows: Sequence[Row]) -> None:
        if self.db is None:
            self.db = Db.from_settings(self.settings)
            self.db.create_schema(SCHEMA)
        db = self.db
        try:
            db.begin()
            if db.postgres:
                copy_in(db, rows)
            else:
                for lo in range(0, len(rows), CHUNK):
                    part = rows[lo : lo + CHUNK]
                    params = [v for r in part for v in r.as_tuple()]
                    db.execute(insert_many(len(part)), tuple(params))
            db.commit()
        except BaseException as exc:
            if isinstance(exc, data_errors()):
                db.rollback()
            else:  # the connection may be broken: a new one next time
                self.close()
            raise

    def close(self) -> None:
        if self.db is not None:
            try:
                self.db.close()
            except Exception:  # closing a broken connection may fail too; it is gone anyway
                log.debug("close failed", exc_info=True)
            self.db = None


class StdoutSink:
    """One JSON line per row (`"event": "prediction"`), for whatever collects stdout."""

    name = "stdout"

    def write(self, rows: Sequence[Row]) -> None:
        for row in rows:
            log.info("prediction", extra={"sink": "stdout", **row.model_dump()})

    def close(self) -> None:
        pass


def make_sinks(settings: WriterSettings) -> list[Sink]:
    makers: dict[str, Callable[[], Sink]] = {
        "table": lambda: TableSink(settings),
        "stdout": StdoutSink,
    }
    return [makers[name]() for name in settings.sinks.split(",")]


Dead = tuple[bytes, Any, str]
"""A dead letter: the entry's id, the fields to keep (the entry's, or the one row's), why."""


def _why(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "row"
    return f"malformed: {where}: {first['msg']}"[:300]


def parse(entries: Sequence[Entry]) -> tuple[list[tuple[bytes, Row]], list[Dead]]:
    """(the rows of the entries, each with its entry's id; dead letters): an entry that is
    not a row or an array of rows is dead as a whole, a row of an array that does not
    validate is dead alone (kept as its own `row` field)."""
    good: list[tuple[bytes, Row]] = []
    dead: list[Dead] = []
    for entry_id, fields in entries:
        one, many = fields.get(record.FIELD.encode()), fields.get(record.ROWS.encode())
        if (one is None) == (many is None):
            why = f"malformed: needs one of the fields {record.FIELD!r}, {record.ROWS!r}"
            dead.append((entry_id, fields, why))
            continue
        if one is not None:
            try:
                good.append((entry_id, record.ROW_ADAPTER.validate_json(one)))
            except ValidationError as exc:
                dead.append((entry_id, fields, _why(exc)))
            continue
        assert many is not None
        try:  # the whole array at once (one pass in pydantic-core)
            good.extend((entry_id, row) for row in record.ROW_LIST.validate_json(many))
            continue
        except ValidationError:
            pass  # one of them at least: find which, row by row
        try:
            items = record.ROWS_ADAPTER.validate_json(many)
        except ValidationError as exc:
            dead.append((entry_id, fields, _why(exc)))
            continue
        for item in items:
            try:
                good.append((entry_id, record.ROW_ADAPTER.validate_python(item)))
            except ValidationError as exc:
                kept = {record.FIELD.encode(): orjson.dumps(item, default=str)}
                dead.append((entry_id, kept, _why(exc)))
    return good, dead


def rows_in(fields: dict[bytes, bytes]) -> int:
    """How many rows an entry says it holds (for sizing a batch only; 1 when it does not)."""
    n = fields.get(record.COUNT.encode(), b"1")
    return max(1, min(int(n), 1_000_000)) if n.isdigit() else 1


class LogWriter:
    def __init__(
        self, stream: LogStream, sinks: list[Sink], settings: WriterSettings, consumer: str = ""
    ) -> None:
        self.stream = stream
        self.sinks = sinks
        self.s = settings
        self.consumer = consumer or settings.consumer or default_consumer()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="sink")
        """One thread for the sinks: the table's connection is used by it only."""
        self.last_error: str | None = "not started"
        self.failures = 0
        self.next_claim = 0.0
        self.ready_redis = False

    def not_ready(self) -> str | None:
        return f"log writer: {self.last_error}" if self.last_error else None

    def _store(self, rows: Sequence[Row]) -> None:
        for sink in self.sinks:
            sink.write(rows)
            record.ROWS_WRITTEN.labels(sink.name).inc(len(rows))

    async def _run_sinks(self, rows: Sequence[Row]) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self._store, rows)

    async def store(self, good: list[tuple[bytes, Row]]) -> list[Dead]:
        """Store the batch; rows the database refuses as data come back as dead letters."""
        rows = [r for _, r in good]
        try:
            await self._run_sinks(rows)
            return []
        except data_errors() as exc:
            log.warning("batch refused; storing row by row", extra={"error": repr(exc)[:200]})
        refused = []
        for entry_id, row in good:
            try:
                await self._run_sinks([row])
            except data_errors() as exc:
                fields = {record.FIELD.encode(): row.model_dump_json().encode()}
                refused.append((entry_id, fields, f"refused: {type(exc).__name__}: {exc}"[:300]))
        return refused

    async def handle(self, entries: Sequence[Entry]) -> int:
        """Store a batch, then acknowledge it; returns the rows stored."""
        started = time.perf_counter()
        good, dead = parse(entries)
        refused = await self.store(good) if good else []
        await self.stream.settle(GROUP, [i for i, _ in entries], [*dead, *refused])
        for _, _, why in [*dead, *refused]:
            record.DEAD.labels(why.split(":", 1)[0]).inc()
        if dead or refused:
            log.warning("entries dead-lettered", extra={"entries": len(dead) + len(refused)})
        stored = len(good) - len(refused)
        record.BATCH_ROWS.observe(len(entries))
        record.BATCH_SECONDS.observe(time.perf_counter() - started)
        if good:
            record.LAG.set(max(0.0, time.time() - min(r.ts for _, r in good)))
        return stored

    async def collect(self) -> list[Entry]:
        """A batch: entries holding batch_rows rows (or a few more: an entry is never split),
        waiting at most batch_wait_seconds after the first one arrived (blocking up to 1 s for
        the first)."""
        s = self.s
        batch = await self.stream.read(GROUP, self.consumer, s.batch_rows, block_ms=1000)
        if not batch:
            return batch
        rows = sum(rows_in(f) for _, f in batch)
        until = time.monotonic() + s.batch_wait_seconds
        while rows < s.batch_rows:
            left_ms = int((until - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            more = await self.stream.read(
                GROUP, self.consumer, s.batch_rows - rows, block_ms=left_ms
            )
            batch.extend(more)
            rows += sum(rows_in(f) for _, f in more)
        return batch

    async def step(self) -> int:
        """One pass: reclaim when due, else read a batch; store and acknowledge it."""
        if not self.ready_redis:
            await self.stream.setup(GROUP)
            self.ready_redis = True
        entries: list[Entry] = []
        if time.monotonic() >= self.next_claim:
            self.next_claim = time.monotonic() + self.s.claim_interval_seconds
            depth, _pending = await self.stream.backlog(GROUP)
            record.BACKLOG.set(depth)
            idle_ms = int(self.s.claim_min_idle_seconds * 1000)
            entries = await self.stream.claim(GROUP, self.consumer, idle_ms, self.s.batch_rows)
            gone = await self.stream.prune(
                GROUP, self.consumer, self.s.consumer_idle_seconds * 1000
            )
            if gone:
                log.info("idle consumers removed", extra={"consumers": gone[:20]})
            if entries:
                record.RECLAIMED.inc(len(entries))
                log.info("reclaimed", extra={"entries": len(entries), "consumer": self.consumer})
        if not entries:
            entries = await self.collect()
        stored = await self.handle(entries) if entries else 0
        self.last_error, self.failures = None, 0
        return stored

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Write until `stopping()`; the batch in hand is finished (or left unacknowledged,
        for the next writer to reclaim)."""
        while not stopping():
            try:
                await self.step()
            except Exception as exc:
                self.failures += 1
                self.ready_redis = False
                if isinstance(exc, (*redis_client.OUTAGE, RedisError, OSError)):
                    self.last_error = f"redis unreachable: {type(exc).__name__}"
                else:
                    self.last_error = f"cannot store: {type(exc).__name__}: {str(exc)[:200]}"
                log.warning("write failed", extra={"error": repr(exc)[:300]})
                await back_off(self.failures, stopping)

    def close(self) -> None:
        for sink in self.sinks:
            self.pool.submit(sink.close).result()
        self.pool.shutdown()


def build(settings: WriterSettings) -> FastAPI:
    client = redis_client.connect(settings.redis_url)
    writer = LogWriter(LogStream(client, PATTERN), make_sinks(settings), settings)

    def extend(app: FastAPI, state: ServiceState) -> None:
        app.state.writer = writer
        state.ready_checks.append(redis_client.ready_check(client, settings.service))

        async def writing() -> str | None:
            return writer.not_ready()

        state.ready_checks.append(writing)

        async def write() -> None:
            try:
                await writer.run(lambda: state.draining)
            except Exception as exc:  # never a live process that silently stopped writing
                state.die(f"log writer stopped: {exc!r}")
            finally:
                writer.close()
                await client.aclose()

        state.background.append(write)

    return create_app(settings, needs_model=False, extend=extend)


if __name__ == "__main__":
    from serving.server import serve_pattern

    os.environ.setdefault("MLSP_SERVICE", "predlog-writer")
    sys.exit(serve_pattern(PATTERN, WriterSettings, build))
