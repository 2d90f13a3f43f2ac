"""edge_ai's model hub: signed manifests and model bytes for devices that update themselves.

    GET /edge/models                               the models it publishes
    GET /edge/models/{name}/manifest               {version, sha256, size, url, card, signature}
    GET /edge/models/{name}/versions/{v}/model.onnx  the bytes (Range requests: 206)

It publishes every model folder in MLSP_MODELS_DIR (`<name>/model.onnx` + `model.json`),
signs nothing it has not checked (the file's sha256 must equal its card's, else 503 for that
model) and signs with HMAC-SHA256 under MLSP_MANIFEST_KEY (a Kubernetes Secret). The hub
holds no model in memory and runs none: a model-less service on the shared app factory.
Trade-off: devices poll (no push), so an update reaches them within their sync interval.
Manifest: manifests/patterns/edge_ai/.

    MLSP_MANIFEST_KEY=... python -m patterns.edge_ai.hub
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response

from patterns.edge_ai.manifest import MODEL_NAME, ManifestKey, device_card, model_url
from serving.app import create_app
from serving.errors import NotFound, Unavailable
from serving.inference import json_response
from serving.model import ModelError, ModelMissing, read_card
from serving.server import serve_pattern
from serving.settings import ServingSettings
from serving.signing import sign
from serving.state import ServiceState


class HubSettings(ServingSettings, ManifestKey):
    """The model hub: where the published models are and the key that signs their manifests."""

    service: str = "model-hub"
    pattern: str = "edge_ai"
    models_dir: Path = Path("data/models")
    """Folder of published models: one `<name>/model.onnx` + `model.json` each."""


NameParam = Annotated[str, PathParam(pattern=MODEL_NAME, max_length=63)]
VersionParam = Annotated[str, PathParam(pattern=r"^[1-9][0-9]{0,8}$")]


@dataclass(frozen=True)
class Published:
    key: tuple[int, int, int, int]
    """mtime and size of model.json and model.onnx when it was checked."""
    manifest: dict[str, Any]
    onnx: Path


def read_digest(path: Path) -> tuple[str, int]:
    """The file's sha256 and its size, counted in the same pass (what is signed together)."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class Hub:
    """The published models, checked and signed once per change of their files."""

    def __init__(self, settings: HubSettings) -> None:
        self.root = settings.models_dir
        self.key = settings.manifest_key.get_secret_value().encode()
        self._cache: dict[str, Published] = {}

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "model.json").is_file())

    def get(self, name: str) -> Published:
        folder = self.root / name
        onnx, card_path = folder / "model.onnx", folder / "model.json"
        try:
            a, b = card_path.stat(), onnx.stat()
        except FileNotFoundError:
            raise NotFound(f"no model {name!r} on this hub", field="name") from None
        key = (a.st_mtime_ns, a.st_size, b.st_mtime_ns, b.st_size)
        cached = self._cache.get(name)
        if cached is not None and cached.key == key:
            return cached
        try:
            card = read_card(folder)
            actual, size = read_digest(onnx)
            after = onnx.stat()
        except ModelMissing:
            raise NotFound(f"no model {name!r} on this hub", field="name") from None
        except (ModelError, OSError) as exc:
            raise Unavailable(f"model {name!r} cannot be published: {exc}") from exc
        if size != b.st_size or (after.st_mtime_ns, after.st_size) != key[2:]:
            raise Unavailable(
                f"model {name!r} cannot be published: model.onnx changed while it was checked",
                reason="unverified_artifact",
            )
        if actual != card.sha256 or card.name != name:
            raise Unavailable(
                f"model {name!r} cannot be published: its file does not match its card",
                reason="unverified_artifact",
            )
        manifest = {
            "name": name,
            "version": card.version,
            "sha256": card.sha256,
            "size": size,
            "url": model_url(name, card.version),
            "card": device_card(card),
        }
        published = Published(key, sign(manifest, self.key), onnx)
        self._cache[name] = published
        return published


def install(app: FastAPI, state: ServiceState, hub: Hub) -> None:
    async def models_dir_readable() -> str | None:
        return None if hub.names() else f"no model to publish in {hub.root.name}/"

    state.ready_checks.append(models_dir_readable)

    @app.get("/edge/models", tags=["edge"], summary="The published models and their versions")
    async def models() -> Response:
        out = []
        for name in hub.names():
            try:
                m = hub.get(name).manifest
            except (NotFound, Unavailable) as exc:
                out.append({"name": name, "error": exc.message})
                continue
            out.append({k: m[k] for k in ("name", "version", "size", "sha256")})
        return json_response({"models": out})

    @app.get(
        "/edge/models/{name}/manifest",
        tags=["edge"],
        summary="The signed manifest of a model's published version",
        responses={404: {"description": "no such model"}, 503: {"description": "unverified"}},
    )
    async def manifest(name: NameParam) -> Response:
        return json_response(hub.get(name).manifest, headers={"Cache-Control": "no-cache"})

    @app.get(
        "/edge/models/{name}/versions/{version}/model.onnx",
        tags=["edge"],
        summary="The model's bytes (Range requests give 206, so a download resumes)",
        response_class=FileResponse,
        responses={
            200: {"content": {"application/octet-stream": {}}},
            206: {
                "description": "the requested range",
                "content": {"application/octet-stream": {}},
            },
            404: {"description": "no such model or version"},
            416: {"description": "range not satisfiable"},
        },
    )
    async def model_bytes(name: NameParam, version: VersionParam) -> Response:
        published = hub.get(name)
        if published.manifest["version"] != version:
            raise NotFound(
                f"{name} version {version} is not published (the hub has "
                f"{published.manifest['version']})",
                field="version",
            )
        return FileResponse(
            published.onnx,
            media_type="application/octet-stream",
            headers={"ETag": f'"{published.manifest["sha256"]}"'},
        )


def build(settings: HubSettings) -> FastAPI:
    hub = Hub(settings)
    return create_app(
        settings, needs_model=False, extend=lambda app, state: install(app, state, hub)
    )


if __name__ == "__main__":
    sys.exit(serve_pattern("edge_ai", HubSettings, build))
