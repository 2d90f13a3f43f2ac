"""The batch tables. SQLite runs one scorer at a time; PostgreSQL lets several scorers share the
work with `FOR UPDATE SKIP LOCKED` (serving/db.py holds the connection code).
"""

from __future__ import annotations

from serving.db import Db
from serving.db import DbSettings as _DbSettings

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


class DbSettings(_DbSettings):
    database_url: str = "sqlite:///data/batch_inference.db"


__all__ = ["SCHEMA", "Db", "DbSettings"]
