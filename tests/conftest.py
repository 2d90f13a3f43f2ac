"""Shared fixtures: models trained by the real pipeline into a temporary data folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from patterns import runner
from training.catalog import get_spec
from training.pipeline import run_model
from training.register import PRODUCTION, promote
from training.settings import TrainingSettings

SERVED_MODELS = (
    "iris-svc",
    "iris-lr",
    "iris-rf",
    "iris-ocsvm",
    "digits-lr",
    "digits-svc",
    "iris-ovr-setosa",
    "iris-ovr-versicolor",
    "iris-ovr-virginica",
)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with SERVED_MODELS trained, exported and registered (embedded MLflow)."""
    root = tmp_path_factory.mktemp("data")
    settings = TrainingSettings(data_dir=root)
    for name in SERVED_MODELS:
        run_model(get_spec(name), settings)
        promote(name, settings)
    return root


@pytest.fixture(scope="session")
def iris_dir(data_dir: Path) -> Path:
    return data_dir / "models" / "iris-svc"


@pytest.fixture
def model_copy(iris_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the iris-svc artifact a test may tamper with."""
    target = tmp_path / "iris-svc"
    shutil.copytree(iris_dir, target)
    yield target


@dataclass
class Registry:
    """A real MLflow server (sqlite store, proxied artifacts) with iris-svc versions 1 and 2."""

    url: str
    store: Path
    train_dir: Path
    versions: dict[int, str]
    """seed -> registry version"""

    def settings(self, seed: int = 0) -> TrainingSettings:
        return TrainingSettings(data_dir=self.train_dir, seed=seed, mlflow_tracking_uri=self.url)

    def register(self, seed: int) -> str:
        version = run_model(get_spec("iris-svc"), self.settings(seed))
        assert version is not None
        self.versions[seed] = version
        return version

    def set_alias(self, alias: str, version: str) -> None:
        promote("iris-svc", self.settings(), version, alias)

    def artifact(self, version: str, name: str = "model.onnx") -> Path:
        """The file the server stores for `version` (to tamper with)."""
        from mlflow.tracking import MlflowClient

        source = MlflowClient(self.url).get_model_version("iris-svc", version).source
        assert source.startswith("mlflow-artifacts:/"), source
        return self.store / "artifacts" / source.removeprefix("mlflow-artifacts:/") / name


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """iris-svc v1 (seed 0) and v2 (seed 1) registered over HTTP; @production -> v2."""
    root = tmp_path_factory.mktemp("registry")
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    stack = runner.Stack(root)
    try:
        url = runner.ensure_mlflow(stack, root / "server")
        reg = Registry(url, (root / "server" / "mlflow"), root / "train", {})
        reg.register(0)
        reg.register(1)
        reg.set_alias(PRODUCTION, reg.versions[1])
        yield reg
    finally:
        stack.stop()
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


class RedisServer:
    """A private redis-server (AOF on, like the manifests) a test may stop and start again."""

    def __init__(self, workdir: Path) -> None:
        import shutil as _shutil

        self.workdir = workdir
        self.port = runner.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.binary = _shutil.which("redis-server") or "redis-server"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not runner.port_open("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open, nothing answers (a stalled Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def spawn_server(
    module: str, env: dict[str, str], log: Path, *, patch: str | None = None
) -> Iterator[str]:
    """Run `python -m module` on a free port until /readyz is 200; yields its base URL.
    `patch`: Python statements run first in the same process (e.g. to play another release
    of a module constant such as the preprocessing version)."""
    import httpx

    port = runner.free_port()
    full = {**os.environ, "MLSP_PORT": str(port), "MLSP_DRAIN_DELAY_SECONDS": "0", **env}
    with log.open("wb") as out:
        argv = [sys.executable, "-m", module]
        if patch is not None:
            run = f"import runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
            argv = [sys.executable, "-c", f"{patch}\n{run}"]
        proc = subprocess.Popen(argv, env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample on a service's /metrics (0 when it has not been created yet)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def model_calls(url: str) -> float:
    """How many times a server called its model (inference histogram count)."""
    return metric(url, "mlsp_inference_duration_seconds_count")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped afterwards."""
    import uuid

    import psycopg

    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"mlsp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
