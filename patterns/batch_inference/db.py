"""The batch tables and the two databases they live in.

SQLite (the embedded local default, stdlib) runs one scorer at a time; PostgreSQL (psycopg)
lets several scorers share the work with `FOR UPDATE SKIP LOCKED`. Plain DB-API rather than an
ORM: five statements, and the locking clause is the point of the pattern, so it stays visible.
Queries are written with `%s` placeholders; SQLite's `?` is substituted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS items (
        id BIGINT PRIMARY KEY,
        features TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS predictions (
        item_id BIGINT NOT NULL REFERENCES items (id),
        model_version TEXT NOT NULL,
        label TEXT,
        probabilities TEXT,
        error TEXT,
        PRIMARY KEY (item_id, model_version)
    )""",
)


class DbSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLSP_", extra="ignore")

    database_url: str = "sqlite:///data/batch_inference.db"
    statement_timeout_ms: int = Field(30_000, ge=100)
    """Longest a single statement may run (PostgreSQL statement_timeout, SQLite busy wait)."""
    connect_timeout_seconds: int = Field(5, ge=1)


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

    def create_schema(self) -> None:
        self.begin()
        for statement in SCHEMA:
            self.execute(statement)
        self.commit()

    def close(self) -> None:
        self.conn.close()
