"""condition_based: the rule table under a fake clock, the rules' validation, then the
router in process (its clock in the test's hand) before the pattern's real model servers,
and the pattern as real processes: a backend down, the demo client, an edit of the rules."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from patterns.condition_based import client as demo_client
from patterns.condition_based.router import RouterSettings, build
from patterns.condition_based.rules import Facts, Routes, route
from patterns.runner import ROOT, RunningPattern, start_pattern
from serving.hotconfig import ConfigInvalid, parse_yaml
from serving.preprocessing import render_digit

SHIPPED = ROOT / "manifests/patterns/condition_based/routes.yaml"
ROUTES = parse_yaml(Routes, SHIPPED.read_bytes())
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
JST = ROUTES.zone()


def facts(hhmm: str, headers: dict[str, str] | None = None, **kw: str) -> Facts:
    local = datetime.fromisoformat(f"2026-12-07T{hhmm}:00").replace(tzinfo=JST)
    content_type = kw.pop("content_type", None)
    return Facts({k.lower(): v for k, v in (headers or {}).items()}, kw, content_type, local)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (facts("12:00"), "default"),  # nothing matches: the default
        (facts("22:00"), "night"),  # the window's start is in it
        (facts("23:59"), "night"),
        (facts("00:00"), "night"),  # across midnight
        (facts("05:59"), "night"),
        (facts("06:00"), "default"),  # its end is not
        (facts("21:59"), "default"),
        (facts("12:00", {"X-Target": "mountain"}), "mountain"),
        (facts("12:00", {"x-target": "mountain"}), "mountain"),  # header names: any case
        (facts("12:00", {"X-Target": "sea"}), "default"),  # values: exact
        (facts("12:00", model="iris-rf"), "pinned"),
        (facts("12:00", model="iris-svc"), "default"),
        (facts("12:00", content_type="image/png"), "images"),
        (facts("12:00", content_type="image/jpeg"), "images"),
        (facts("12:00", content_type="application/json"), "default"),
        (facts("23:00", content_type="image/png"), "images"),  # first match wins
        (facts("03:00", {"X-Target": "mountain"}, content_type="image/png"), "mountain"),
    ],
)
def test_rule_table(case: Facts, expected: str) -> None:
    rule, trace = route(ROUTES, case)
    assert rule.name == expected
    assert trace[-1]["rule"] == expected and trace[-1]["matched"]
    assert not any(t["matched"] for t in trace[:-1])


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("rules: [{name: a, when: {header: {X-A: b}}, backend: x}]", "a default rule with none"),
        (
            "rules: [{name: a, backend: x}, {name: b, backend: y}]",
            "rules[0] (a) has no conditions",
        ),
        ("rules: [{name: a, backend: x}, {name: a, backend: y}]", "must be unique"),
        ("timezone: Mars/Olympus\nrules: [{name: a, backend: x}]", "unknown time zone"),
        (
            "rules: [{name: n, when: {time: {start: '22:00', end: '22:00'}}, backend: x},"
            " {name: d, backend: x}]",
            "the window is empty",
        ),
        ("rules: [{name: a, when: {colour: red}, backend: x}]", "rules.0.when.colour"),
        ("rules: []", "rules: List should have at least 1 item"),
    ],
)
def test_invalid_rules_are_refused_naming_what_is_wrong(yaml: str, message: str) -> None:
    with pytest.raises(ConfigInvalid, match=re.escape(message)):
        parse_yaml(Routes, yaml.encode())


def test_an_unknown_backend_stops_the_router_at_start_up(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(SHIPPED.read_text().replace("backend: digits-lr", "backend: digits-xl"))
    backends = [
        {"name": n, "url": "http://127.0.0.1:9"} for n in ("iris-svc", "iris-rf", "digits-lr")
    ]
    env = {**os.environ, "MLSP_BACKENDS": json.dumps(backends), "MLSP_ROUTES_FILE": str(routes)}
    done = subprocess.run(
        [sys.executable, "-m", "patterns.condition_based.router"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "rules[2].backend: 'digits-xl' is not a backend" in done.stdout
    routes.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "patterns.condition_based.router"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "is missing" in done.stdout


@pytest.fixture(scope="module")
def routes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("routes")


@pytest.fixture(scope="module")
def pattern(data_dir: Path, routes_dir: Path) -> Iterator[RunningPattern]:
    routes = routes_dir / "routes.yaml"
    shutil.copy(SHIPPED, routes)
    env = {"router": {"MLSP_ROUTES_FILE": str(routes), "MLSP_ROUTES_RELOAD_SECONDS": "0.1"}}
    with start_pattern("condition_based", data_dir=data_dir, process_env=env) as run:
        yield run


class Clock:
    def __init__(self, hhmm: str) -> None:
        self.set(hhmm)

    def set(self, hhmm: str) -> None:
        self.now = datetime.fromisoformat(f"2026-12-07T{hhmm}:00").replace(tzinfo=JST)

    def __call__(self) -> datetime:
        return self.now.astimezone(UTC)


@pytest.mark.slow
def test_the_router_sends_each_request_where_its_rule_says_under_a_fake_clock(
    pattern: RunningPattern,
) -> None:
    backends = [
        {"name": n, "url": pattern.url(n), "timeout": 5}
        for n in ("iris-svc", "iris-rf", "digits-lr")
    ]
    settings = RouterSettings(
        backends=backends, routes_file=SHIPPED, service="cb-test", access_log=False
    )
    clock = Clock("12:00")
    app = build(settings, clock=clock)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://router") as client,
        ):

            async def where(
                headers: dict[str, str] | None = None, **kw: object
            ) -> tuple[str, str, str]:
                resp = await client.post("/predict", headers=headers, **kw)  # type: ignore[arg-type]
                assert resp.status_code == 200, resp.text
                model = resp.json()["model"]["name"]
                return resp.headers["x-route-rule"], resp.headers["x-routed-to"], model

            assert await where(json=ROW) == ("default", "iris-svc", "iris-svc")
            clock.set("23:30")
            assert await where(json=ROW) == ("night", "iris-rf", "iris-rf")
            explained = (await client.get("/routes/explain")).json()
            assert (explained["rule"], explained["backend"]) == ("night", "iris-rf")
            assert explained["local_time"] == "2026-12-07 23:30 JST"
            clock.set("12:00")
            assert (await where({"X-Target": "mountain"}, json=ROW))[:2] == ("mountain", "iris-rf")
            assert (await where(json=ROW, params={"model": "iris-rf"}))[2] == "iris-rf"
            png = render_digit([0.0] * 8 + [16.0] * 8 + [0.0] * 48)
            resp = await client.post(
                "/predict/image", content=png, headers={"Content-Type": "image/png"}
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["model"]["name"] == "digits-lr"
            assert resp.headers["x-route-rule"] == "images"
            # an image a rule sends to a model without an image route: 415 naming the rule
            resp = await client.post(
                "/predict/image",
                content=png,
                headers={"Content-Type": "image/png", "X-Target": "mountain"},
            )
            assert resp.status_code == 415, resp.text
            assert resp.json()["error"]["rule"] == "mountain"
            # rows on the image route go to the model's /predict
            assert (await client.post("/predict/image", json=ROW)).status_code == 200
            # explain takes the request's own headers, and another local time
            explained = (
                await client.get(
                    "/routes/explain", params={"at": "05:00"}, headers={"X-Target": "sea"}
                )
            ).json()
            assert explained["rule"] == "night"
            assert explained["evaluated"][0]["why"] == "header X-Target is 'sea', not 'mountain'"
            for at in ("25:99", "0001-01-01T00:00+05:00"):  # nonsense; out of range
                bad = await client.get("/routes/explain", params={"at": at})
                assert bad.status_code == 400 and bad.json()["error"]["field"] == "at"
            # bad input is the backend's 422, relayed, with the route it took
            resp = await client.post("/predict", json={"instances": [[1.0]]})
            assert resp.status_code == 422, resp.text

    asyncio.run(main())


@pytest.mark.slow
def test_the_demo_client_reaches_every_rule(pattern: RunningPattern) -> None:
    assert demo_client.main(["--url", pattern.url("router")]) == 0


@pytest.mark.slow
def test_an_edit_of_the_rules_applies_without_a_restart(
    pattern: RunningPattern, routes_dir: Path
) -> None:
    router = pattern.url("router")
    routes = routes_dir / "routes.yaml"
    before = httpx.get(f"{router}/routes", timeout=5).json()["digest"]
    edited = SHIPPED.read_text().replace("X-Target: mountain", "X-Target: sea")
    tmp = routes.with_suffix(".new")
    tmp.write_text(edited)
    tmp.replace(routes)
    deadline = time.monotonic() + 10
    while httpx.get(f"{router}/routes", timeout=5).json()["digest"] == before:
        assert time.monotonic() < deadline, "the edit was never applied"
        time.sleep(0.05)
    explained = httpx.get(f"{router}/routes/explain", headers={"X-Target": "sea"}, timeout=5)
    assert explained.json()["rule"] == "mountain"
    routes.write_text(edited.replace("backend: iris-svc", "backend: nowhere"))
    time.sleep(0.5)
    ready = httpx.get(f"{router}/readyz", timeout=5)
    assert ready.status_code == 200
    assert "'nowhere' is not a backend" in ready.json()["warnings"][0]
    shutil.copy(SHIPPED, routes)
    while httpx.get(f"{router}/routes", timeout=5).json()["digest"] != before:
        assert time.monotonic() < deadline + 10, "the shipped rules never came back"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_down_backend_is_a_503_naming_it_never_another_model(pattern: RunningPattern) -> None:
    router = pattern.url("router")
    pattern.kill("iris-rf")  # the last test of the module: the pattern is not restarted
    resp = httpx.post(f"{router}/predict", json=ROW, headers={"X-Target": "mountain"}, timeout=20)
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert error["dependency"] == "iris-rf" and error["rule"] == "mountain"
    assert resp.headers["retry-after"]
    image = httpx.post(
        f"{router}/predict/image",
        content=render_digit([8.0] * 64),
        headers={"Content-Type": "image/png"},
        timeout=20,
    )
    assert image.status_code == 200 and image.headers["x-routed-to"] == "digits-lr"
