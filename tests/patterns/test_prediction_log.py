"""prediction_log against real Redis, PostgreSQL and SQLite, the api and the log-writer as real
processes: every answered request stored exactly once (kill -9 of the writer mid-batch
included), Redis down or frozen never failing a prediction (spilled lines instead), sampling
and redaction, feedback, retention, malformed entries dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from patterns import runner
from patterns.prediction_log import record, retention
from patterns.prediction_log.writer import LogWriter, WriterSettings, make_sinks
from serving.db import Db
from serving.predlog import INSERT, SCHEMA
from serving.redis_client import connect
from serving.stream import LogStream
from tests.conftest import RedisServer, metric

pytestmark = pytest.mark.slow

STREAM = "mlsp:prediction_log:entries"
DEAD = "mlsp:prediction_log:dead"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4], [5.8, 2.7, 5.1, 1.9]]


@contextlib.contextmanager
def process(
    module: str, env: dict[str, str], log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m module` on a free port until /readyz is 200: (the process, its URL)."""
    port = runner.free_port()
    full = {**os.environ, "MLSP_PORT": str(port), "MLSP_DRAIN_DELAY_SECONDS": "0", **env}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=full, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def api_env(data_dir: Path, redis_url: str, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "MLSP_SERVICE": "predlog-api",
        "MLSP_MODEL_DIR": str(data_dir / "models" / "iris-svc"),
        "MLSP_OUTLIER_MODEL_DIR": str(data_dir / "models" / "iris-ocsvm"),
        "MLSP_REDIS_URL": redis_url,
        "MLSP_DATABASE_URL": db_url,
        "MLSP_ACCESS_LOG": "false",
        **extra,
    }


def writer_env(redis_url: str, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "MLSP_SERVICE": "predlog-writer",
        "MLSP_REDIS_URL": redis_url,
        "MLSP_DATABASE_URL": db_url,
        "MLSP_CLAIM_MIN_IDLE_SECONDS": "1",
        "MLSP_CLAIM_INTERVAL_SECONDS": "0.5",
        **extra,
    }


def count(
    db_url: str, query: str = "SELECT COUNT(*), COUNT(DISTINCT request_id) FROM prediction_log"
) -> Any:
    db = Db(db_url)
    try:
        return db.execute(query).fetchone()
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return (0, 0)
    finally:
        db.close()


def wait_until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def predict(
    client: httpx.Client, url: str, rid: str, rows: list[list[float]] = ROWS[:1]
) -> dict[str, Any]:
    r = client.post(f"{url}/predict", json={"instances": rows}, headers={"X-Request-ID": rid})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def spilled(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("spilled") is True:
                out.append(entry)
    return out


# --- the api and the writer, as processes --------------------------------------------------


def test_every_request_stored_once_through_a_kill_9_mid_batch(
    data_dir: Path, redis_server: RedisServer, pg_url: str, tmp_path: Path
) -> None:
    """1,000 requests -> 1,000 rows; the writer killed holding a batch it has not stored, a
    new one reclaims it: still exactly 1,000 unique rows; a replayed batch adds none."""
    r = redis.Redis.from_url(redis_server.url)
    log = tmp_path / "procs.log"
    slow = writer_env(redis_server.url, pg_url, MLSP_BATCH_WAIT_SECONDS="60", MLSP_CONSUMER="w1")
    with process(
        "patterns.prediction_log.api", api_env(data_dir, redis_server.url, pg_url), log
    ) as (_, api):
        # the first writer reads entries and waits (60 s) to fill its batch of 500: kill -9
        # it while it holds them, delivered, unacknowledged, not stored
        with process("patterns.prediction_log.writer", slow, log) as (writer, _):
            ids = [str(uuid.uuid4()) for _ in range(1000)]
            with httpx.Client(timeout=10) as client:
                bodies = [predict(client, api, rid) for rid in ids[:300]]
                # every row appended (packed in entries), every entry delivered, none acked
                wait_until(
                    lambda: (
                        metric(api, "mlsp_predlog_appended_total", service="predlog-api") == 300
                    ),
                    "300 rows appended",
                )
                wait_until(
                    lambda: r.xlen(STREAM) == r.xpending(STREAM, "writers")["pending"] > 0,
                    "the writer holds every entry",
                )
                held = r.xlen(STREAM)
                writer.send_signal(signal.SIGKILL)
                writer.wait(10)
                bodies += [predict(client, api, rid) for rid in ids[300:]]
        assert count(pg_url) == (0, 0)
        assert all(
            "outlier_score" in p and "outlier" in p for b in bodies for p in b["predictions"]
        )
        fast = writer_env(redis_server.url, pg_url, MLSP_BATCH_WAIT_SECONDS="0.2")
        with process("patterns.prediction_log.writer", fast, log) as (_, writer_url):
            wait_until(lambda: count(pg_url)[0] >= 1000, "1000 rows stored")
            wait_until(lambda: r.xpending(STREAM, "writers")["pending"] == 0, "all acked")
            assert count(pg_url) == (1000, 1000)
            assert metric(writer_url, "mlsp_predlog_reclaimed_total") == held
            # a batch replayed (a writer killed after its commit, before its ack): nothing twice
            db = Db(pg_url)
            old = db.execute(
                "SELECT request_id, ts, model_name, model_version, training_run,"
                " input, output, latency_ms, outlier_score, sample_rate"
                " FROM prediction_log LIMIT 100"
            ).fetchall()
            db.close()
            for row in old:
                entry = dict(zip(record.COLUMNS, row, strict=True))
                entry["input"], entry["output"] = (
                    json.loads(entry["input"]),
                    json.loads(entry["output"]),
                )
                r.xadd(STREAM, {"row": json.dumps(entry)})
            wait_until(lambda: r.xlen(STREAM) == 0, "replay stored and deleted")
            assert count(pg_url) == (1000, 1000)
            assert r.xlen(DEAD) == 0
    stored = count(
        pg_url,
        "SELECT output, outlier_score, training_run FROM prediction_log"
        f" WHERE request_id = '{ids[0]}'",
    )
    out = json.loads(stored[0])
    assert out[0]["label"] == bodies[0]["predictions"][0]["label"]
    assert stored[1] == bodies[0]["predictions"][0]["outlier_score"]
    card = json.loads((data_dir / "models/iris-svc/model.json").read_text())
    assert stored[2] == card.get("mlflow_run_id")


def test_redis_down_or_frozen_never_fails_a_prediction(data_dir: Path, tmp_path: Path) -> None:
    """Redis frozen (SIGSTOP), then gone: every prediction is 200, /readyz stays 200, and each
    entry is one `"spilled": true` line carrying its row, counted."""
    server = RedisServer(tmp_path)
    server.start()
    log = tmp_path / "api.log"
    db = f"sqlite:///{tmp_path}/log.db"
    try:
        env = api_env(data_dir, server.url, db)
        with process("patterns.prediction_log.api", env, log) as (_, api), httpx.Client() as client:
            predict(client, api, "before-outage")
            wait_until(
                lambda: metric(api, "mlsp_predlog_appended_total", service="predlog-api") == 1,
                "appended",
            )
            server.pause()
            frozen = [f"frozen-{i}" for i in range(20)]
            for rid in frozen:
                predict(client, api, rid)
            assert client.get(f"{api}/readyz").status_code == 200
            server.resume()
            server.stop()
            gone = [f"gone-{i}" for i in range(30)]
            for rid in gone:
                body = predict(client, api, rid, ROWS)
                assert len(body["predictions"]) == 3
            assert client.get(f"{api}/readyz").status_code == 200

            def total() -> float:
                return sum(
                    metric(api, "mlsp_predlog_spilled_total", service="predlog-api", reason=why)
                    for why in ("redis_unavailable", "buffer_full", "backlog_full")
                )

            wait_until(lambda: total() >= 30, "spilled counted")
            lines = spilled(log)
            ids = {line["row"]["request_id"] for line in lines}
            assert set(gone) <= ids
            assert len(lines) == total()
            assert metric(api, "mlsp_predlog_dropped_total", service="predlog-api") == 0
            # a spilled line carries the whole row, as the writer would have stored it
            one = next(line for line in lines if line["row"]["request_id"] == gone[0])
            assert one["row"]["input"] == ROWS
            record.ROW_ADAPTER.validate_python(one["row"])
    finally:
        server.stop()


def test_sampling_by_request_id_and_redaction(
    data_dir: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    """MLSP_SAMPLE_RATE=0.3: exactly the ids the hash picks are stored (on SQLite), with
    sample_rate 0.3 and the redacted feature null in every row; the answer is not redacted."""
    db = f"sqlite:///{tmp_path}/log.db"
    log = tmp_path / "procs.log"
    env = api_env(
        data_dir, redis_server.url, db, MLSP_SAMPLE_RATE="0.3", MLSP_REDACT_FEATURES="sepal_width"
    )
    ids = [f"req-{i}" for i in range(200)]
    expected = {rid for rid in ids if record.sampled(rid, 0.3)}
    assert 20 < len(expected) < 120  # the hash spreads the ids
    with (
        process("patterns.prediction_log.api", env, log) as (_, api),
        process(
            "patterns.prediction_log.writer",
            writer_env(redis_server.url, db, MLSP_BATCH_WAIT_SECONDS="0.2"),
            log,
        ),
    ):
        with httpx.Client(timeout=10) as client:
            for rid in ids:
                predict(client, api, rid, ROWS[:2])
        wait_until(lambda: count(db)[0] >= len(expected), "sampled rows stored")
        time.sleep(0)  # the stream is drained below: no more rows can come
        wait_until(lambda: redis.Redis.from_url(redis_server.url).xlen(STREAM) == 0, "drained")
        assert metric(api, "mlsp_predlog_sampled_out_total", service="predlog-api") == 200 - len(
            expected
        )
    conn = sqlite3.connect(f"{tmp_path}/log.db")
    rows = conn.execute("SELECT request_id, input, sample_rate FROM prediction_log").fetchall()
    assert {r[0] for r in rows} == expected
    for _, raw, rate in rows:
        assert rate == 0.3
        assert json.loads(raw) == [[5.1, None, 1.4, 0.2], [6.3, None, 5.6, 2.4]]


def test_unknown_redacted_feature_is_refused_at_start(data_dir: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **api_env(
            data_dir,
            "redis://127.0.0.1:9/0",
            f"sqlite:///{tmp_path}/x.db",
            MLSP_REDACT_FEATURES="sepal_colour",
        ),
        "MLSP_PORT": str(runner.free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "patterns.prediction_log.api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "sepal_colour" in done.stdout


def test_feedback_is_idempotent_and_joined(
    data_dir: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/log.db"
    log = tmp_path / "procs.log"
    with process("patterns.prediction_log.api", api_env(data_dir, redis_server.url, db), log) as (
        _,
        api,
    ):
        with httpx.Client(timeout=10) as client:
            post = lambda body: client.post(f"{api}/feedback", json=body)  # noqa: E731
            # an id the log does not have (yet): accepted, joined later by request_id
            early = post({"request_id": "later-1", "outcome": "setosa"})
            assert early.status_code == 202, early.text
            assert early.json() == {
                "request_id": "later-1",
                "outcome": "setosa",
                "joined": False,
                "replayed": False,
            }
            with process(
                "patterns.prediction_log.writer",
                writer_env(redis_server.url, db, MLSP_BATCH_WAIT_SECONDS="0.1"),
                log,
            ):
                predict(client, api, "known-1")
                wait_until(lambda: count(db)[0] == 1, "row stored")
            first = post({"request_id": "known-1", "outcome": "virginica"})
            assert first.status_code == 202
            assert first.json()["joined"] is True and first.json()["replayed"] is False
            again = post({"request_id": "known-1", "outcome": "virginica"})
            assert again.status_code == 202 and again.json()["replayed"] is True
            other = post({"request_id": "known-1", "outcome": "setosa"})
            assert other.status_code == 422
            assert other.json()["error"]["field"] == "outcome"
            for body, field in (
                ({"request_id": "x"}, "outcome"),
                ({"request_id": "", "outcome": "a"}, "request_id"),
                ({"request_id": "a b", "outcome": "a"}, "request_id"),
                ({"request_id": "x", "outcome": "a" * 257}, "outcome"),
                ({"request_id": "x", "outcome": 3}, "outcome"),
                ({"request_id": "x", "outcome": "a", "extra": 1}, "extra"),
            ):
                bad = post(body)
                assert bad.status_code == 422, body
                assert bad.json()["error"]["field"] == field, bad.text
            big = client.post(
                f"{api}/feedback",
                content=b"{" + b" " * 5000 + b"}",
                headers={"Content-Type": "application/json"},
            )
            assert big.status_code == 413
        joined = count(
            db, "SELECT COUNT(*) FROM feedback f JOIN prediction_log p USING (request_id)"
        )
        assert joined[0] == 1
        assert count(db, "SELECT COUNT(*) FROM feedback")[0] == 2


def test_feedback_database_down_is_503_and_predict_still_200(
    data_dir: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    db = "postgresql://postgres@127.0.0.1:9/none"
    log = tmp_path / "api.log"
    with process("patterns.prediction_log.api", api_env(data_dir, redis_server.url, db), log) as (
        _,
        api,
    ):
        r = httpx.post(f"{api}/feedback", json={"request_id": "a", "outcome": "b"}, timeout=10)
        assert r.status_code == 503
        assert r.json()["error"]["dependency"] == "database"
        assert httpx.get(f"{api}/readyz").status_code == 200
        predict(httpx.Client(), api, "still-200")


# --- the writer and retention, in process ---------------------------------------------------


def good_row(rid: str, ts: float | None = None) -> dict[str, Any]:
    return {
        "request_id": rid,
        "ts": time.time() if ts is None else ts,
        "model_name": "iris-svc",
        "model_version": "1",
        "training_run": None,
        "input": [[5.1, None, 1.4, 0.2]],
        "output": [
            {
                "label": "setosa",
                "class_id": 0,
                "probabilities": {"setosa": 0.9},
                "outlier_score": 0.4,
                "outlier": False,
            }
        ],
        "latency_ms": 0.5,
        "outlier_score": 0.4,
        "sample_rate": 1.0,
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_malformed_entries_are_dead_lettered_never_block(
    redis_server: RedisServer, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db_url = (
        f"sqlite:///{tmp_path}/w.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    )
    r = redis.Redis.from_url(redis_server.url)
    r.xadd(STREAM, {"row": json.dumps(good_row("ok-1"))})
    r.xadd(STREAM, {"row": b"not json"})
    r.xadd(STREAM, {"other": b"x"})
    r.xadd(STREAM, {"row": json.dumps({**good_row("bad-type"), "ts": "yesterday"})})
    r.xadd(STREAM, {"row": json.dumps({**good_row("nul\x00"), "request_id": "nul\x00id"})})
    r.xadd(STREAM, {"row": json.dumps(good_row("ok-2"))})
    # the api's packed entries: one bad row of an array is dead alone, the others stored
    pack = [good_row("ok-3"), {**good_row("bad-in-pack"), "input": "x"}, good_row("ok-4")]
    r.xadd(STREAM, {"rows": json.dumps(pack), "n": "3"})
    r.xadd(STREAM, {"rows": json.dumps({"not": "an array"}), "n": "1"})
    r.xadd(STREAM, {"rows": json.dumps([good_row("both")]), "row": json.dumps(good_row("both"))})
    settings = WriterSettings(
        redis_url=redis_server.url, database_url=db_url, batch_wait_seconds=0.1
    )

    async def go() -> int:
        client = connect(redis_server.url)
        writer = LogWriter(LogStream(client, "prediction_log"), make_sinks(settings), settings, "t")
        try:
            stored = 0
            for _ in range(3):
                stored += await writer.step()
            return stored
        finally:
            writer.close()
            await client.aclose()

    assert asyncio.run(go()) == 4
    assert count(db_url) == (4, 4)
    assert r.xlen(STREAM) == 0
    assert redis.Redis.from_url(redis_server.url).xpending(STREAM, "writers")["pending"] == 0
    dead = r.xrange(DEAD)
    assert len(dead) == 7
    errors = sorted(fields[b"error"].decode().split(":")[0] for _, fields in dead)
    assert errors == ["malformed"] * 7
    kept = {f.get(b"row") for _, f in dead}
    assert b"not json" in kept
    assert any(k and b"bad-in-pack" in k for k in kept)


def test_stdout_sink_without_a_table(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = redis.Redis.from_url(redis_server.url)
    r.xadd(STREAM, {"row": json.dumps(good_row("to-stdout"))})
    settings = WriterSettings(
        redis_url=redis_server.url,
        database_url=f"sqlite:///{tmp_path}/none.db",
        sinks="stdout",
        batch_wait_seconds=0.1,
    )
    import logging

    from serving.logs import configure_logging

    configure_logging("t", "prediction_log")

    async def go() -> int:
        client = connect(redis_server.url)
        writer = LogWriter(LogStream(client, "prediction_log"), make_sinks(settings), settings, "t")
        try:
            return await writer.step() + await writer.step()
        finally:
            writer.close()
            await client.aclose()

    assert asyncio.run(go()) == 1
    logging.getLogger().handlers[:] = []
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"prediction"' in x]
    assert [x["request_id"] for x in lines] == ["to-stdout"]
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(ValueError, match="sinks"):
        WriterSettings(sinks="table,kafka")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_retention_deletes_old_rows_in_bounded_batches(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    db_url = (
        f"sqlite:///{tmp_path}/r.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    )
    now = time.time()
    db = Db(db_url)
    db.create_schema(SCHEMA)
    db.begin()
    old = [
        record.ROW_ADAPTER.validate_python(good_row(f"old-{i}", now - 40 * 86_400))
        for i in range(25)
    ]
    new = [record.ROW_ADAPTER.validate_python(good_row(f"new-{i}", now - 86_400)) for i in range(5)]
    db.executemany(INSERT, [r.as_tuple() for r in old + new])
    db.execute(
        "INSERT INTO feedback (request_id, outcome, ts) VALUES (%s, %s, %s)",
        ("old-1", "x", now - 40 * 86_400),
    )
    db.execute(
        "INSERT INTO feedback (request_id, outcome, ts) VALUES (%s, %s, %s)", ("new-1", "x", now)
    )
    db.commit()
    db.close()
    s = retention.RetentionSettings(database_url=db_url, retention_days=30, retention_batch=7)
    assert retention.run(s, now) == {"prediction_log": 25, "feedback": 1}
    left = count(db_url, "SELECT COUNT(*), MIN(request_id) FROM prediction_log")
    assert left == (5, "new-0")
    assert retention.run(s, now) == {"prediction_log": 0, "feedback": 0}


def test_sampling_is_deterministic_and_proportional() -> None:
    ids = [str(uuid.UUID(int=i, version=4)) for i in range(20_000)]
    picked = [rid for rid in ids if record.sampled(rid, 0.1)]
    assert picked == [rid for rid in ids if record.sampled(rid, 0.1)]
    assert 1_700 < len(picked) < 2_300
    assert all(record.sampled(rid, 1.0) for rid in ids[:100])
    assert not any(record.sampled(rid, 0.0) for rid in ids[:100])
    # a lower rate logs a subset of a higher one: raising the rate never drops an id
    assert set(picked) <= {rid for rid in ids if record.sampled(rid, 0.2)}


def test_dead_writers_names_are_pruned_never_one_holding_entries(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    r = redis.Redis.from_url(redis_server.url)
    r.xgroup_create(STREAM, "writers", id="0", mkstream=True)
    r.xadd(STREAM, {"row": json.dumps(good_row("held"))})
    r.xreadgroup("writers", "holder", {STREAM: ">"}, count=1)  # dead, holding an entry
    r.xreadgroup("writers", "ghost", {STREAM: ">"}, count=1)  # dead, holding nothing
    time.sleep(0.3)  # both idle past consumer_idle_seconds
    settings = WriterSettings(
        redis_url=redis_server.url,
        database_url=f"sqlite:///{tmp_path}/w.db",
        consumer_idle_seconds=0.2,
        claim_min_idle_seconds=3600,  # the held entry is not taken over here
        batch_wait_seconds=0.1,
    )

    async def go() -> None:
        client = connect(redis_server.url)
        writer = LogWriter(LogStream(client, "prediction_log"), make_sinks(settings), settings, "t")
        try:
            await writer.step()
        finally:
            writer.close()
            await client.aclose()

    asyncio.run(go())
    names = {c["name"].decode() for c in r.xinfo_consumers(STREAM, "writers")}
    assert "ghost" not in names
    assert "holder" in names
    assert r.xpending(STREAM, "writers")["pending"] == 1
