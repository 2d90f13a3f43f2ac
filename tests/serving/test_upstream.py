"""serving/upstream.py: the budget, which backend answers are relayed, URL checks at start-up,
and real calls through the lean client to a real model server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from patterns.runner import free_port
from serving.errors import DeadlineExceeded, Unavailable
from serving.upstream import Backend, Budget, Malformed, Outcome, Relayed, Upstream, call
from tests.conftest import spawn_server


def test_backend_urls_are_checked_when_the_settings_load() -> None:
    assert Backend(name="a", url="http://iris-svc:8000").url == "http://iris-svc:8000"
    for bad in ("iris-svc:8000", "https://iris-svc", "http://h:80a0", "http://"):
        with pytest.raises(ValidationError):
            Backend(name="a", url=bad)


def test_only_input_errors_are_relayed_as_the_clients_own() -> None:
    error = {"error": {"code": "invalid_input", "message": "x: bad", "field": "x"}}
    refused = Outcome("stage", False, 1.0, 422, error, error="status 422")
    relayed = refused.as_error()
    assert isinstance(relayed, Relayed) and relayed.status_code == 422
    assert relayed.body("rid")["error"]["field"] == "x"
    for status in (404, 405, 500, 503):
        other = Outcome("stage", False, 1.0, status, {"error": {}}, error=f"status {status}")
        mapped = other.as_error()
        assert isinstance(mapped, Unavailable), status
        assert mapped.extra["dependency"] == "stage"
    # the OIP shape (a /v2 backend's error string, fields beside it) is relayed too
    oip = {"error": "x: bad", "code": "invalid_input", "field": "x"}
    from_v2 = Outcome("stage", False, 1.0, 422, oip, error="status 422").as_error()
    assert isinstance(from_v2, Relayed) and from_v2.body("rid")["error"]["field"] == "x"
    # a 422 whose body is not our error object: the backend is not what the proxy expects
    odd = Outcome("stage", False, 1.0, 422, {"detail": "text"}, error="status 422")
    assert not odd.client_error and isinstance(odd.as_error(), Unavailable)
    late = Outcome("stage", False, 5.0, error="timeout", out_of_budget=True)
    assert isinstance(late.as_error(), DeadlineExceeded)


def test_an_answer_of_the_wrong_shape_is_a_503_naming_the_backend() -> None:
    short = Outcome("b", True, 1.0, 200, {"predictions": [{"label": "x"}]})
    with pytest.raises(Malformed) as info:
        short.predictions(2)
    assert info.value.status_code == 503 and info.value.extra["dependency"] == "b"
    assert short.predictions(1) == [{"label": "x"}]
    assert Outcome("b", True, 1.0, 200, {"model": "x"}).trace()["version"] is None
    assert Outcome("b", True, 1.0, 200, {"model": {"version": "3"}}).trace()["version"] == "3"


def test_the_budget_comes_from_the_absolute_deadline() -> None:
    budget = Budget(time.time() + 0.5)
    assert 0.4 < budget.left() <= 0.5
    header = int(budget.headers()["X-Request-Deadline-Ms"])
    assert abs(header / 1000 - budget.deadline) < 0.001


def test_calls_through_the_lean_client_to_a_real_server(iris_dir: Path, tmp_path: Path) -> None:
    env = {"MLSP_MODEL_DIR": str(iris_dir)}
    with spawn_server("patterns.web_single.app", env, tmp_path / "server.log") as url:

        async def main() -> list[Outcome]:
            upstream = Upstream()
            body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
            good = Backend(name="iris", url=url)
            gone = Backend(name="gone", url=f"http://127.0.0.1:{free_port()}")
            outcomes = await asyncio.gather(
                call(upstream, good, "/predict", budget=Budget(time.time() + 2),
                     request_id="rid-1", content=body),
                call(upstream, gone, "/predict", budget=Budget(time.time() + 2),
                     request_id="rid-2", content=body),
                call(upstream, good, "/predict", budget=Budget(time.time() - 1),
                     request_id="rid-3", content=body),
            )  # fmt: skip
            upstream.close()
            return list(outcomes)

        ok, gone, late = asyncio.run(main())
    assert ok.ok and ok.predictions(1)[0]["label"] == "setosa"
    assert ok.body is not None and ok.body["request_id"] == "rid-1"  # propagated
    assert not gone.ok and gone.error is not None and gone.error.startswith("unreachable")
    assert late.out_of_budget and late.error == "deadline"
