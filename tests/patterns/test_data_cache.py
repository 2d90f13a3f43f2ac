"""data_cache as real processes: seed and warm-up steps, then the api, over SQLite and a private
redis-server. Store reads are counted on the api's /metrics and, more bluntly, proved absent
by deleting the row: a hit must still answer."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from patterns.runner import RunningPattern, start_pattern
from tests.conftest import RedisServer, metric, spawn_server

pytestmark = pytest.mark.slow

WARMED = "digit-0001"  # the warm-up step fills the first 100 ids
COLD = "digit-0150"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data_cache.db"


@pytest.fixture
def pattern(
    data_dir: Path, redis_server: RedisServer, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningPattern]:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    env = {"MLSP_DATABASE_URL": f"sqlite:///{db_path}", "MLSP_STATEMENT_TIMEOUT_MS": "300"}
    with start_pattern("data_cache", data_dir=data_dir, env=env) as run:
        yield run


def predict(url: str, item_id: object) -> httpx.Response:
    return httpx.post(f"{url}/predict/item", json={"item_id": item_id}, timeout=10)


def reads(url: str) -> float:
    return metric(url, "mlsp_store_reads_total")


def test_miss_then_hit_reads_the_store_once(pattern: RunningPattern, db_path: Path) -> None:
    api = pattern.url("api")
    before = reads(api)
    miss = predict(api, COLD)
    assert miss.status_code == 200, miss.text
    assert miss.headers["x-cache"] == "MISS" and reads(api) == before + 1
    hit = predict(api, COLD)
    assert hit.headers["x-cache"] == "HIT" and reads(api) == before + 1
    assert hit.json()["predictions"] == miss.json()["predictions"]  # the model always runs
    assert hit.json()["item_id"] == COLD and hit.json()["preprocess_version"] == "1"
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM images WHERE item_id = ?", (COLD,))
    assert predict(api, COLD).status_code == 200  # served from the cache alone
    # the warm-up step already cached the first ids: a hit from the first request
    assert predict(api, WARMED).headers["x-cache"] == "HIT" and reads(api) == before + 1


def test_item_ids_are_validated_never_used_as_paths(pattern: RunningPattern) -> None:
    api = pattern.url("api")
    for bad in ("../x", "a/b", "", "x" * 65, "digit 1", 42):
        resp = predict(api, bad)
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.json()["error"]["field"] == "item_id"
    unknown = predict(api, "digit-9999")
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "item_id"
    extra = httpx.post(f"{api}/predict/item", json={"item_id": WARMED, "path": "/etc"})
    assert extra.status_code == 422


def test_concurrent_misses_for_one_id_read_the_store_once(pattern: RunningPattern) -> None:
    api = pattern.url("api")
    before = reads(api)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{api}/predict/item", json={"item_id": "digit-0160"})
                    for _ in range(30)
                )
            )

    assert [r.status_code for r in asyncio.run(burst())] == [200] * 30
    assert reads(api) == before + 1


def test_a_preprocessing_version_bump_misses(
    pattern: RunningPattern,
    data_dir: Path,
    redis_server: RedisServer,
    db_path: Path,
    tmp_path: Path,
) -> None:
    api = pattern.url("api")
    assert predict(api, WARMED).headers["x-cache"] == "HIT"
    # The next release: preprocessing v2 and a model trained for it (same weights here).
    model = tmp_path / "digits-lr-v2"
    model.mkdir()
    source = data_dir / "models" / "digits-lr"
    (model / "model.onnx").write_bytes((source / "model.onnx").read_bytes())
    card = json.loads((source / "model.json").read_text())
    card["preprocess"]["version"] = "2"
    (model / "model.json").write_text(json.dumps(card))
    env = {
        "MLSP_MODEL_DIR": str(model),
        "MLSP_REDIS_URL": redis_server.url,
        "MLSP_DATABASE_URL": f"sqlite:///{db_path}",
    }
    v2 = "import serving.preprocessing as p; p.PREPROCESS_VERSION = '2'"
    with spawn_server("patterns.data_cache.api", env, tmp_path / "v2.log", patch=v2) as new:
        first = predict(new, WARMED)
        assert first.status_code == 200, first.text
        assert first.headers["x-cache"] == "MISS" and first.json()["preprocess_version"] == "2"
        assert predict(new, WARMED).headers["x-cache"] == "HIT"
    keys = {k.decode() for k in redis.Redis.from_url(redis_server.url).scan_iter()}
    assert {f"mlsp:data_cache:1:{WARMED}", f"mlsp:data_cache:2:{WARMED}"} <= keys
    assert redis.Redis.from_url(redis_server.url).ttl(f"mlsp:data_cache:2:{WARMED}") > 0


def test_redis_down_bypasses_and_store_down_is_503(
    pattern: RunningPattern, redis_server: RedisServer, db_path: Path
) -> None:
    api = pattern.url("api")
    redis_server.stop()
    bypass = predict(api, WARMED)
    assert bypass.status_code == 200 and bypass.headers["x-cache"] == "BYPASS"
    assert httpx.get(f"{api}/readyz").status_code == 200
    redis_server.start()  # with its append-only file: the cached tensors are back
    deadline = time.monotonic() + 10
    while predict(api, WARMED).headers["x-cache"] == "BYPASS":  # until the cooldown ends
        assert time.monotonic() < deadline, "the cache never came back"
        time.sleep(0.2)
    # the store goes away under the running api (the file becomes a directory)
    db_path.unlink()
    db_path.mkdir()
    assert predict(api, WARMED).headers["x-cache"] == "HIT"  # cached items still served
    down = predict(api, "digit-0170")
    assert down.status_code == 503 and down.json()["error"]["dependency"] == "store"
    assert httpx.get(f"{api}/readyz").status_code == 200
    assert metric(api, "mlsp_dependency_up", dependency="store") == 0


def test_runs_on_postgresql_as_on_kubernetes(
    pg_url: str, data_dir: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MLSP_DATABASE_URL": pg_url,
        "MLSP_REDIS_URL": redis_server.url,
        "MLSP_MODEL_DIR": str(data_dir / "models" / "digits-lr"),
        "MLSP_SEED_ITEMS": "20",
        "MLSP_WARMUP_LIMIT": "10",
    }
    for step in ("seed", "warmup", "seed"):  # a second seed adds nothing
        done = subprocess.run(
            [sys.executable, "-m", f"patterns.data_cache.{step}"], env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
    api_env = {k: env[k] for k in ("MLSP_DATABASE_URL", "MLSP_REDIS_URL", "MLSP_MODEL_DIR")}
    with spawn_server("patterns.data_cache.api", api_env, tmp_path / "api.log") as api:
        assert predict(api, "digit-0005").headers["x-cache"] == "HIT"  # warmed
        assert predict(api, "digit-0015").headers["x-cache"] == "MISS"
        assert predict(api, "digit-0015").headers["x-cache"] == "HIT"
        assert predict(api, "digit-0021").status_code == 404


def test_bad_data_is_named_by_item_and_a_corrupt_tensor_is_replaced(
    pattern: RunningPattern, redis_server: RedisServer, db_path: Path
) -> None:
    api = pattern.url("api")
    with sqlite3.connect(db_path) as db:
        db.execute("INSERT INTO images (item_id, image) VALUES (?, ?)", ("broken", b"\x89PNG nope"))
    resp = predict(api, "broken")
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == "item_id" and "stored image" in resp.text
    # a cached value that is not a tensor of the model's width: rebuilt from the store
    client = redis.Redis.from_url(redis_server.url)
    client.set("mlsp:data_cache:1:digit-0180", b"not a tensor")
    fixed = predict(api, "digit-0180")
    assert fixed.status_code == 200 and fixed.headers["x-cache"] == "MISS"
    assert len(client.get("mlsp:data_cache:1:digit-0180") or b"") == 64 * 4
