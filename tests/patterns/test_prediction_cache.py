"""prediction_cache as a real process against a private redis-server.

Model calls are counted on the api's own /metrics (the inference histogram), so "no model call"
and "one model call" are observed, not assumed.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from patterns.runner import RunningPattern, start_pattern
from serving.preprocessing import render_digit
from tests.conftest import RedisServer, metric, model_calls, spawn_server
from tests.patterns.test_asynchronous import golden

pytestmark = pytest.mark.slow

ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture
def pattern(
    data_dir: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningPattern]:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    with start_pattern("prediction_cache", data_dir=data_dir) as run:
        yield run


def keys(redis_server: RedisServer) -> list[str]:
    client = redis.Redis.from_url(redis_server.url)
    return sorted(k.decode() for k in client.keys("mlsp:prediction_cache:*"))


def predict(url: str, rows: list[list[float]] | str) -> httpx.Response:
    body = rows if isinstance(rows, str) else json.dumps({"instances": rows})
    return httpx.post(f"{url}/predict", content=body, timeout=10)


def test_a_repeat_is_a_hit_without_a_model_call(
    pattern: RunningPattern, redis_server: RedisServer
) -> None:
    api = pattern.url()
    first = predict(api, [ROW])
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    calls = model_calls(api)
    second = predict(api, [ROW])
    assert second.headers["x-cache"] == "HIT"
    assert model_calls(api) == calls
    assert second.json()["predictions"] == first.json()["predictions"]
    assert (
        second.json()["request_id"] == second.headers["x-request-id"] != first.json()["request_id"]
    )
    # the key is scoped by model and version, and expires
    (key,) = keys(redis_server)
    assert key.startswith("mlsp:prediction_cache:iris-svc:1:")
    assert 3500 < redis.Redis.from_url(redis_server.url).ttl(key) <= 3600
    assert metric(api, "mlsp_cache_requests_total", outcome="HIT") == 1


def test_canonical_input_5_1_and_5_10_share_a_key(
    pattern: RunningPattern, redis_server: RedisServer
) -> None:
    api = pattern.url()
    assert predict(api, '{"instances": [[5.1, 3.5, 1.4, 0.2]]}').headers["x-cache"] == "MISS"
    same = predict(api, '{"instances":[[5.10,3.50,1.40,0.20]]}')
    assert same.headers["x-cache"] == "HIT"
    assert len(keys(redis_server)) == 1
    assert predict(api, [[5.2, 3.5, 1.4, 0.2]]).headers["x-cache"] == "MISS"


def test_bad_input_is_refused_before_the_cache(
    pattern: RunningPattern, redis_server: RedisServer
) -> None:
    resp = predict(pattern.url(), [[5.1, 3.5]])
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "instances[0]"
    assert "x-cache" not in resp.headers and keys(redis_server) == []


def test_fifty_identical_concurrent_misses_make_one_model_call(
    data_dir: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    slow = {"api": {"MLSP_SIMULATED_LATENCY_MS": "300"}}  # the misses overlap
    with start_pattern("prediction_cache", data_dir=data_dir, process_env=slow) as run:
        api = run.url()
        before = model_calls(api)

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=10) as client:
                body = {"instances": [[6.1, 2.8, 4.7, 1.2]]}
                return await asyncio.gather(
                    *(client.post(f"{api}/predict", json=body) for _ in range(50))
                )

        responses = asyncio.run(burst())
        assert [r.status_code for r in responses] == [200] * 50
        assert model_calls(api) - before == 1
        assert len({json.dumps(r.json()["predictions"]) for r in responses}) == 1
        assert {r.headers["x-cache"] for r in responses} <= {"MISS", "BYPASS"}
        # stored once (unless Redis was too slow for the burst); the next one is a hit
        assert len(keys(redis_server)) <= 1
        again = httpx.post(f"{api}/predict", json={"instances": [[6.1, 2.8, 4.7, 1.2]]})
        assert again.headers["x-cache"] == "HIT" and model_calls(api) - before == 1


def fresh_row(i: int) -> list[float]:
    return [4.0 + i / 100, 3.0, 1.4, 0.2]


def test_redis_down_bypasses_and_still_answers(
    pattern: RunningPattern, redis_server: RedisServer
) -> None:
    api = pattern.url()
    assert predict(api, [ROW]).headers["x-cache"] == "MISS"
    redis_server.stop()
    resp = predict(api, [fresh_row(0)])
    assert resp.status_code == 200 and resp.headers["x-cache"] == "BYPASS"
    assert resp.json()["predictions"][0]["label"] == "setosa"
    assert httpx.get(f"{api}/readyz").status_code == 200  # a soft dependency
    # answers this process already has are still hits (its local tier)
    assert predict(api, [ROW]).headers["x-cache"] == "HIT"
    for i in range(1, 4):  # a few more failures switch the cache off for a cooldown
        assert predict(api, [fresh_row(i)]).headers["x-cache"] == "BYPASS"
    assert metric(api, "mlsp_dependency_up", dependency="redis") == 0
    redis_server.start()
    deadline = time.monotonic() + 10
    i = 10
    while predict(api, [fresh_row(i)]).headers["x-cache"] == "BYPASS":
        assert time.monotonic() < deadline, "the cache never came back"
        time.sleep(0.2)
        i += 1
    assert predict(api, [fresh_row(i)]).headers["x-cache"] == "HIT"


def test_a_stalled_redis_is_bypassed_not_waited_for(
    pattern: RunningPattern, redis_server: RedisServer
) -> None:
    api = pattern.url()
    predict(api, [ROW])
    redis_server.pause()
    try:
        started = time.perf_counter()
        resp = predict(api, [fresh_row(0)])
        elapsed = time.perf_counter() - started
    finally:
        redis_server.resume()
    assert resp.status_code == 200 and resp.headers["x-cache"] == "BYPASS"
    assert elapsed < 1.0, elapsed  # bounded by the 50 ms cache timeout, not a hang


def test_a_new_model_version_misses_and_old_keys_are_swept(
    model_copy: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "MLSP_MODEL_DIR": str(model_copy),
        "MLSP_REDIS_URL": redis_server.url,
        "MLSP_PATTERN": "prediction_cache",
    }
    module = "patterns.prediction_cache.api"
    with spawn_server(module, env, tmp_path / "v1.log") as api:
        assert predict(api, [ROW]).headers["x-cache"] == "MISS"
        assert predict(api, [ROW]).headers["x-cache"] == "HIT"
    with spawn_server(module, env, tmp_path / "v1-replica.log") as replica:
        # another replica of the same version: a hit from Redis, no model call of its own
        assert predict(replica, [ROW]).headers["x-cache"] == "HIT"
        assert model_calls(replica) == 0
        assert metric(replica, "mlsp_cache_local_hits_total") == 0
    assert [k.split(":")[3] for k in keys(redis_server)] == ["1"]
    card = json.loads((model_copy / "model.json").read_text())
    card["version"] = "2"  # the same weights released as version 2
    (model_copy / "model.json").write_text(json.dumps(card))
    with spawn_server(module, env, tmp_path / "v2.log") as api:
        resp = predict(api, [ROW])
        assert resp.headers["x-cache"] == "MISS" and resp.json()["model"]["version"] == "2"
        deadline = time.monotonic() + 10
        while any(k.split(":")[3] == "1" for k in keys(redis_server)):
            assert time.monotonic() < deadline, keys(redis_server)
            time.sleep(0.1)
    assert [k.split(":")[3] for k in keys(redis_server)] == ["2"]


def test_images_are_keyed_by_their_tensor(
    data_dir: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    digits = {"api": {"MLSP_MODEL_DIR": str(data_dir / "models" / "digits-lr")}}
    with start_pattern("prediction_cache", data_dir=data_dir, process_env=digits) as run:
        url = f"{run.url()}/predict/image"
        png = render_digit(golden(data_dir, "digits-lr")[0]["input"])
        first = httpx.post(url, content=png, headers={"Content-Type": "image/png"})
        again = httpx.post(url, content=png, headers={"Content-Type": "image/png"})
        assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
        assert again.json()["preprocess_version"] == "1"
        assert again.json()["predictions"] == first.json()["predictions"]
        # other bytes, the same pixels (another zlib level): the same tensor, the same key
        other = io.BytesIO()
        Image.open(io.BytesIO(png)).save(other, format="PNG", compress_level=0)
        assert other.getvalue() != png
        same = httpx.post(url, content=other.getvalue(), headers={"Content-Type": "image/png"})
        assert same.headers["x-cache"] == "HIT"
        bad = httpx.post(url, content=b"not an image")
        assert bad.status_code == 415 and "x-cache" not in bad.headers
        assert len(keys(redis_server)) == 1
