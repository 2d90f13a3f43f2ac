"""Fetch a model version from the MLflow registry, verified, for serving.

Used by the model_load init container (`python -m serving.loader`) and by the model_in_image
build. It resolves `models:/NAME@ALIAS` (or `models:/NAME/VERSION`) to a concrete version,
downloads `model.onnx` + `model.json`, and only hands the folder over when:

- the card names the same model and version the registry resolved to,
- sha256(model.onnx) equals the card's sha256 *and* the `sha256` tag on the registry version,
- ONNX Runtime opens it and the card's golden examples reproduce.

Written against MLflow's REST API with httpx rather than `mlflow.MlflowClient` on purpose: the
serving image must stay small and free of scikit-learn (the `mlflow` package needs both), and a
loader must bound every call (0.5 s connect, 2 s read) and the whole attempt (a deadline),
which the client's own retry policy does not allow. Only three documented endpoints are used:
`registered-models/alias`, `model-versions/get` and the `mlflow-artifacts` download proxy
(`mlflow server --serve-artifacts`, MLflow's default). `file://` sources (an embedded local
store on the same machine) are read from disk.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from serving.http import CONNECT_TIMEOUT, backoff
from serving.model import ModelError, OnnxModel, read_card, sha256_file

log = logging.getLogger("serving.registry")

FILES = ("model.onnx", "model.json")
MAX_ARTIFACT_BYTES = 256 << 20
"""Refuse to download more than this per file (the largest model here is < 1 MiB)."""
DOWNLOAD_READ_TIMEOUT = 30.0

_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9._-]+)(?:@(?P<alias>[A-Za-z0-9._-]+)|/(?P<v>\d+))$")


class RegistryError(Exception):
    """The model cannot be fetched. `retryable` errors may succeed later (MLflow down, alias
    not set yet); the others never will (bad URI, tampered artifact)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        m = _URI.match(uri.strip())
        if not m:
            raise RegistryError(
                f"MODEL_URI {uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION",
                retryable=False,
            )
        return cls(m["name"], m["alias"], m["v"])

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else self.pinned(self.version)

    def pinned(self, version: str | None) -> str:
        return f"models:/{self.name}/{version}"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    source: str
    sha256: str | None
    run_id: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class MlflowRegistry:
    def __init__(self, tracking_uri: str, *, read_timeout: float = 2.0) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise RegistryError(
                f"MLFLOW_TRACKING_URI must be an http(s) MLflow server, got {tracking_uri!r}",
                retryable=False,
            )
        self.base = tracking_uri.rstrip("/")
        self._client = httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT)
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MlflowRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        try:
            return self._client.get(f"{self.base}{path}", params=params)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"MLflow at {self.base} unreachable: {type(exc).__name__}: {exc}", retryable=True
            ) from exc

    def resolve(self, ref: ModelRef) -> ModelVersion:
        if ref.alias:
            path = "/api/2.0/mlflow/registered-models/alias"
            params = {"name": ref.name, "alias": ref.alias}
        else:
            path = "/api/2.0/mlflow/model-versions/get"
            params = {"name": ref.name, "version": str(ref.version)}
        resp = self._get(path, params)
        if resp.status_code == 404 or (
            # MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE "... not found"
            resp.status_code == 400
            and ("RESOURCE_DOES_NOT_EXIST" in resp.text or "not found" in resp.text.lower())
        ):
            # Not registered yet (a fresh cluster whose training Job is still running): wait.
            raise RegistryError(f"{ref} is not in the registry yet", retryable=True)
        if resp.status_code >= 500 or resp.status_code == 429:
            raise RegistryError(f"MLflow answered {resp.status_code} for {ref}", retryable=True)
        if resp.status_code != 200:
            raise RegistryError(
                f"MLflow refused {ref}: {resp.status_code} {resp.text[:200]}", retryable=False
            )
        mv = resp.json().get("model_version") or {}
        tags = {t.get("key"): t.get("value") for t in mv.get("tags", [])}
        if not mv.get("version") or not mv.get("source"):
            raise RegistryError(f"MLflow returned no version/source for {ref}", retryable=True)
        return ModelVersion(
            name=str(mv.get("name", ref.name)),
            version=str(mv["version"]),
            source=str(mv["source"]),
            sha256=tags.get("sha256"),
            run_id=mv.get("run_id"),
        )

    def download(self, mv: ModelVersion, dest: Path) -> None:
        """Copy the version's files into `dest` (an empty folder)."""
        src = urlparse(mv.source)
        for name in FILES:
            if src.scheme == "mlflow-artifacts":
                self._download_proxied(f"{src.path.strip('/')}/{name}", dest / name)
            elif src.scheme == "file":
                path = Path(unquote(src.path)) / name
                if not path.is_file():
                    raise RegistryError(f"{mv.uri}: {path} does not exist", retryable=False)
                shutil.copyfile(path, dest / name)
            else:
                raise RegistryError(
                    f"{mv.uri}: artifact source {mv.source!r} is not served by MLflow's artifact "
                    "proxy (start the server with --serve-artifacts)",
                    retryable=False,
                )

    def _download_proxied(self, artifact: str, target: Path) -> None:
        url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{artifact}"
        timeout = httpx.Timeout(DOWNLOAD_READ_TIMEOUT, connect=CONNECT_TIMEOUT)
        try:
            with self._client.stream("GET", url, timeout=timeout) as resp:
                if resp.status_code != 200:
                    raise RegistryError(
                        f"download {artifact}: HTTP {resp.status_code}",
                        retryable=resp.status_code >= 500 or resp.status_code == 404,
                    )
                size = 0
                with target.open("wb") as fh:
                    for chunk in resp.iter_bytes(1 << 16):
                        size += len(chunk)
                        if size > MAX_ARTIFACT_BYTES:
                            raise RegistryError(
                                f"download {artifact}: larger than {MAX_ARTIFACT_BYTES} bytes",
                                retryable=False,
                            )
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise RegistryError(f"download {artifact}: {exc}", retryable=True) from exc


def verify(folder: Path, mv: ModelVersion, *, self_test: bool = True) -> None:
    """Raise RegistryError (not retryable) unless `folder` is exactly version `mv`."""
    try:
        card = read_card(folder)
    except ModelError as exc:
        raise RegistryError(f"{mv.uri}: {exc}", retryable=False) from exc
    actual = sha256_file(folder / "model.onnx")
    problems = []
    if card.name != mv.name:
        problems.append(f"card names model {card.name!r}")
    if card.version != mv.version:
        problems.append(f"card says version {card.version!r}")
    if mv.sha256 is None:
        problems.append("the registry version has no sha256 tag")
    elif actual != mv.sha256:
        problems.append(f"model.onnx sha256 {actual[:12]}… != registry {mv.sha256[:12]}…")
    if actual != card.sha256:
        problems.append(f"model.onnx sha256 {actual[:12]}… != card {card.sha256[:12]}…")
    if problems:
        raise RegistryError(f"{mv.uri} refused: " + "; ".join(problems), retryable=False)
    if self_test:
        try:
            OnnxModel.load(folder).self_test()
        except ModelError as exc:
            raise RegistryError(f"{mv.uri} refused: {exc}", retryable=False) from exc


def fetch(
    uri: str,
    tracking_uri: str,
    dest: Path,
    *,
    deadline_seconds: float = 120.0,
    expect_version: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ModelVersion:
    """Resolve, download and verify `uri` into `dest`, retrying until the deadline.

    `dest` is replaced atomically (files land in a sibling temp folder first), so a server
    watching it never sees half a model. Permanent errors are raised at once; retryable ones
    after the deadline.
    """
    ref = ModelRef.parse(uri)
    deadline = time.monotonic() + deadline_seconds
    attempt = 0
    with MlflowRegistry(tracking_uri) as registry:
        while True:
            try:
                mv = registry.resolve(ref)
                if expect_version is not None and mv.version != expect_version:
                    raise RegistryError(
                        f"{ref} resolved to version {mv.version}, expected {expect_version}",
                        retryable=False,
                    )
                _download_verified(registry, mv, dest)
                log.info(
                    "model fetched",
                    extra={"uri": str(ref), "resolved": mv.uri, "sha256": mv.sha256},
                )
                return mv
            except RegistryError as exc:
                left = deadline - time.monotonic()
                if not exc.retryable or left <= 0:
                    raise
                delay = min(left, 0.5 + backoff(attempt, base=0.5, cap=10.0))
                log.warning(
                    "model fetch failed, retrying",
                    extra={"uri": str(ref), "error": str(exc), "retry_in_s": round(delay, 2)},
                )
                sleep(delay)
                attempt += 1


def _download_verified(registry: MlflowRegistry, mv: ModelVersion, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        registry.download(mv, tmp)
        verify(tmp, mv)
        if dest.exists():
            # An emptyDir mount point itself cannot be renamed: replace its contents instead.
            for child in dest.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            for name in FILES:
                (tmp / name).rename(dest / name)
        else:
            tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
