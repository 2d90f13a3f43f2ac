"""serving/db.py's Store: a store that does not answer is a 503 naming it; the work's own
answers (a 404) and bugs are not mistaken for an outage. Real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from patterns.runner import free_port
from serving.db import Db, DbSettings, Store
from serving.errors import NotFound, Unavailable


def up(service: str) -> float | None:
    return REGISTRY.get_sample_value(
        "mlsp_dependency_up", {"service": service, "dependency": "store"}
    )


def answer(db: Db) -> int:
    return int(db.execute("SELECT 41 + 1").fetchone()[0])


def missing(db: Db) -> int:
    raise NotFound("no item 'x' in the store", field="item_id")


def bug(db: Db) -> int:
    return {}["nothing"]  # type: ignore[no-any-return]


def check(url: str, service: str) -> None:
    store = Store(DbSettings(database_url=url, connect_timeout_seconds=1), service=service,
                  name="store")  # fmt: skip
    assert asyncio.run(store.run(answer)) == 42
    assert up(service) == 1
    with pytest.raises(NotFound):  # relayed unchanged: the store answered
        asyncio.run(store.run(missing))
    assert up(service) == 1
    with pytest.raises(KeyError):  # a bug stays a bug (a 500 with its traceback)
        asyncio.run(store.run(bug))
    assert up(service) == 1


def test_a_working_sqlite_store(tmp_path: Path) -> None:
    check(f"sqlite:///{tmp_path / 'store.db'}", "store-sqlite")


@pytest.mark.slow  # needs the PostgreSQL server (DATABASE_URL)
def test_a_working_postgres_store(pg_url: str) -> None:
    check(pg_url, "store-postgres")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://mlsp@127.0.0.1:{free_port()}/mlsp",  # nothing listens
        "sqlite:///{tmp}",  # a directory: sqlite cannot open it
    ],
)
def test_a_store_that_does_not_answer_is_a_503_naming_it(url: str, tmp_path: Path) -> None:
    store = Store(
        DbSettings(database_url=url.format(tmp=tmp_path), connect_timeout_seconds=1),
        service="store-down",
        name="store",
    )
    with pytest.raises(Unavailable) as info:
        asyncio.run(store.run(answer))
    assert info.value.status_code == 503 and info.value.extra["dependency"] == "store"
    assert up("store-down") == 0
