"""A database connection for the patterns that keep data in tables (batch_inference, data_cache,
shadow_ab, online_ab), and a batch writer that keeps table writes off the request path.

SQLite (the embedded local default, stdlib) or PostgreSQL (psycopg, the `postgres` extra, only in
the images that need it). Plain DB-API rather than an ORM: a pattern has a handful of
statements and its locking clauses are the point, so they stay visible. Queries are written
with `%s` placeholders; SQLite's `?` is substituted. Every statement is bounded: PostgreSQL's
statement_timeout, SQLite's busy wait.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from serving import metrics
from serving.errors import ApiError, Unavailable
from serving.settings import MlspSettings

if TYPE_CHECKING:
    from serving.state import ServiceState

T = TypeVar("T")
log = logging.getLogger("serving")


class DbSettings(MlspSettings):
    """The database a process uses (serving/db.py: SQLite locally, PostgreSQL on Kubernetes)."""

    database_url: str = "sqlite:///data/store.db"
    """sqlite:///PATH (local default) or postgresql://USER:PASSWORD@HOST/DB."""
    statement_timeout_ms: int = Field(30_000, ge=100)
    """Longest a single statement may run (PostgreSQL statement_timeout, SQLite busy wait)."""
    connect_timeout_seconds: int = Field(5, ge=1)
    """Longest a connection attempt may take."""


class Db:
    """One connection; `sql()` adapts placeholders to the driver."""

    def __init__(self, url: str, *, statement_timeout_ms: int = 30_000, connect_timeout: int = 5):
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.conn: Any
        if self.postgres:
            import psycopg

            self.conn = psycopg.connect(
                url,
                connect_timeout=connect_timeout,
                options=f"-c statement_timeout={statement_timeout_ms}",
            )
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE takes the write
            # lock up front, so a second SQLite scorer waits instead of racing).
            self.conn = sqlite3.connect(
                path, timeout=statement_timeout_ms / 1000, isolation_level=None
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
        else:
            raise ValueError(
                f"MLSP_DATABASE_URL must be sqlite:///PATH or postgresql://..., got {url[:40]!r}"
            )

    @classmethod
    def from_settings(cls, s: DbSettings) -> Db:
        return cls(
            s.database_url,
            statement_timeout_ms=s.statement_timeout_ms,
            connect_timeout=s.connect_timeout_seconds,
        )

    def sql(self, query: str) -> str:
        return query if self.postgres else query.replace("%s", "?")

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(self.sql(query), params)

    def executemany(self, query: str, rows: list[tuple[Any, ...]]) -> None:
        if self.postgres:
            with self.conn.cursor() as cur:
                cur.executemany(query, rows)
        else:
            self.conn.executemany(self.sql(query), rows)

    def begin(self) -> None:
        if self.postgres:
            return  # psycopg opens a transaction with the first statement
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.commit() if self.postgres else self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.postgres:
            self.conn.rollback()
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def create_schema(self, statements: tuple[str, ...]) -> None:
        self.begin()
        for statement in statements:
            self.execute(statement)
        self.commit()

    def seed(self, schema: tuple[str, ...], insert: str, rows: list[tuple[Any, ...]],
             count: str, batch: int = 5000) -> int:  # fmt: skip
        """Create the schema, insert `rows` in one transaction, `batch` at a time (`insert`
        skips rows already there: ON CONFLICT DO NOTHING, so a rerun adds nothing), and
        return what the `count` query says the table holds."""
        self.create_schema(schema)
        self.begin()
        for start in range(0, len(rows), batch):
            self.executemany(insert, rows[start : start + batch])
        self.commit()
        return int(self.execute(count).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


@functools.cache
def driver_errors() -> tuple[type[BaseException], ...]:
    """What a store that is down, slow or refusing raises: sqlite3's and psycopg's errors (the
    latter only where the `postgres` extra is installed) and socket errors."""
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    try:
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.Error)


class Store:
    """Blocking database work for an async service: each call runs in a worker thread on its
    own short-lived connection (no connection is shared between threads), and any driver error
    (sqlite3 and psycopg raise different ones; all mean "the store did not answer") becomes a
    503 naming the dependency. `mlsp_dependency_up` follows every call."""

    def __init__(self, settings: DbSettings, *, service: str, name: str = "database") -> None:
        self.settings = settings
        self.name = name
        self._up = metrics.DEPENDENCY_UP.labels(service, name)

    def _with_db(self, work: Callable[[Db], T]) -> T:
        db = Db.from_settings(self.settings)
        try:
            return work(db)
        finally:
            db.close()

    async def run(self, work: Callable[[Db], T]) -> T:
        try:
            result = await asyncio.to_thread(self._with_db, work)
        except ApiError:  # the work's own answer (a 404, say): not an outage
            self._up.set(1)
            raise
        except Exception as exc:
            if not isinstance(exc, driver_errors()):
                raise  # a bug is a 500 with a traceback in the log, not "the store is down"
            self._up.set(0)
            raise Unavailable(
                f"{self.name} unavailable: {type(exc).__name__}",
                dependency=self.name,
                retry_after=5,
            ) from None
        self._up.set(1)
        return result


class BatchWriter:
    """Rows from the request path to a table, off it: a bounded in-memory queue (full: the
    row is dropped and `on_drop("full", n)` told, the request never waits) and a task that
    inserts what it holds in one transaction every `linger` seconds or `batch` rows. The
    table is created on first use (the database may come up after the service). A failed
    write drops its rows (`on_drop("error", n)`): for records that must never block or fail
    a request (shadow_ab's pairs, online_ab's exposures), not for data that must not be lost
    (prediction_log uses a durable queue for that)."""

    def __init__(
        self,
        store: Store,
        schema: tuple[str, ...],
        insert: str,
        *,
        on_drop: Callable[[str, int], None],
        capacity: int = 10_000,
    ) -> None:
        self.store = store
        self.schema = schema
        self.insert = insert
        self.on_drop = on_drop
        self.queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(capacity)
        self.schema_ready = False
        self._schema_lock = threading.Lock()
        self.written = 0
        """Rows this writer has stored (a reader's cache is stale once it moves)."""

    def ensure(self, db: Db) -> None:
        """The tables, created once per process (one thread at a time; on PostgreSQL two
        replicas racing on CREATE TABLE IF NOT EXISTS can collide in the catalog: the loser
        rolls back and tries once more, and then the tables exist)."""
        with self._schema_lock:
            if self.schema_ready:
                return
            try:
                db.create_schema(self.schema)
            except driver_errors():
                db.rollback()
                db.create_schema(self.schema)
            self.schema_ready = True

    def put(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            try:
                self.queue.put_nowait(row)
            except asyncio.QueueFull:
                self.on_drop("full", 1)

    def attach(self, state: ServiceState) -> None:
        """Write with the app, until it drains and nothing is left in the queue."""
        state.background.append(lambda: self.run(lambda: state.draining))

    async def run(
        self, stopping: Callable[[], bool], batch: int = 500, linger: float = 0.5
    ) -> None:
        """Until `stopping()` and nothing is left to write."""
        while not (stopping() and self.queue.empty()):
            rows: list[tuple[Any, ...]] = []
            deadline = time.monotonic() + linger
            while len(rows) < batch and (left := deadline - time.monotonic()) > 0:
                try:
                    rows.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            if rows:
                await self.flush(rows)

    async def flush(self, rows: list[tuple[Any, ...]]) -> None:
        def write(db: Db) -> None:
            self.ensure(db)
            db.begin()
            db.executemany(self.insert, rows)
            db.commit()

        try:
            await self.store.run(write)
            self.written += len(rows)
        except Exception as exc:  # soft: count, say, go on
            self.on_drop("error", len(rows))
            log.warning("batch write failed", extra={"rows": len(rows), "error": repr(exc)})
