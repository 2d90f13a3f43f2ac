"""The device side of edge_ai: two model slots, a signed-manifest sync, rollback.

A device keeps its models in one folder (a PVC on Kubernetes, any folder locally):

    pointer.json          {"active": "a", "blocked": [...]}  written whole (temp + rename)
    slots/a/, slots/b/    model.onnx + model.json: the active model and the one before it
    partial/<name>-<version>-<sha12>.part   a download in progress (resumed with Range)

`sync` asks the hub for the model's manifest and installs it only when every check passes,
in this order: the HMAC signature (unsigned or tampered: refused), the fields, the version
(older than the active one: refused unless `force`; the one rolled back from: refused unless
`force`), the size budget (before a byte is fetched), the download (resumed from the partial
file; never more bytes than the manifest says), its sha256, then the model opened and its
golden examples run in a staging folder. Only then does it replace the inactive slot, and the
pointer flips to it in one rename; the slot it leaves stays, for `rollback`. Anything refused
leaves the active model as it was; an unreachable hub too. One lock file serialises the
device-sim and the command line on the same folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import httpx
from pydantic import Field, ValidationError

from patterns.edge_ai.manifest import Manifest, ManifestKey
from serving import preprocessing
from serving.model import ModelError, OnnxModel, read_card, sha256_file
from serving.settings import ServingSettings
from serving.signing import SignatureError, verify
from serving.upstream import ServiceUrl

log = logging.getLogger("edge_ai.device")

SLOTS = ("a", "b")
CHUNK = 64 << 10
MAX_MANIFEST_BYTES = 256 << 10
"""A manifest is a few KB (the card without its reference sample); more is refused."""


class DeviceSettings(ServingSettings, ManifestKey):
    """A device (the edge-client command and the device-sim service): which model it keeps,
    where, from which hub, under which budget."""

    service: str = "device-sim"
    pattern: str = "edge_ai"
    hub_url: ServiceUrl = "http://127.0.0.1:8000"
    """The model hub (patterns/edge_ai/hub.py)."""
    state_dir: Path = Path("device")
    """The device's folder: slots, pointer, partial downloads (a PVC on Kubernetes)."""
    model_name: str = Field("digits-lr", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """The model this device keeps."""
    size_budgets: dict[str, int] = Field({"digits-lr": 200_000, "iris-lr": 50_000})
    """Largest model.onnx accepted per model name, in bytes (a JSON object)."""
    default_size_budget: int = Field(1_000_000, ge=1)
    """Largest model.onnx accepted for a model without a budget of its own, in bytes."""
    sync_interval_seconds: float = Field(30.0, gt=0)
    """device-sim: seconds between two syncs with the hub."""
    hub_connect_timeout: float = Field(0.5, gt=0)
    """Seconds to connect to the hub."""
    hub_read_timeout: float = Field(2.0, gt=0)
    """Seconds to wait for each read from the hub."""

    def budget(self, name: str) -> int:
        return self.size_budgets.get(name, self.default_size_budget)


Status = Literal["updated", "up_to_date", "refused", "unreachable", "incomplete", "failed"]
EXIT_CODES: dict[Status, int] = {
    "updated": 0,
    "up_to_date": 0,
    "refused": 1,
    "failed": 1,  # device-sim only: the sync raised (logged); the active model is unchanged
    "unreachable": 75,  # EX_TEMPFAIL: try again later
    "incomplete": 75,
}


@dataclass
class SyncResult:
    status: Status
    detail: str
    active: dict[str, Any] | None
    """The model the device serves after the sync."""
    offered: str | None = None
    """The version the hub offered."""
    facts: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out = {"status": self.status, "detail": self.detail, "active": self.active}
        if self.offered is not None:
            out["offered"] = self.offered
        return {**out, **self.facts}


class Refused(Exception):
    """The offered model must not be installed (the reason is the message)."""


class Unreachable(Exception):
    """The hub did not answer usefully; try again later."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def open_checked(folder: Path) -> OnnxModel:
    """Open a slot's model as a server would: sha256 against its card, the preprocessing
    contract, the golden examples. ModelError when any fails."""
    model = OnnxModel.load(folder)
    contract = model.card.preprocess
    if contract is not None and contract.version != preprocessing.PREPROCESS_VERSION:
        raise ModelError(
            f"model expects preprocessing v{contract.version}, "
            f"this device implements v{preprocessing.PREPROCESS_VERSION}"
        )
    model.self_test()
    return model


def parse_manifest(content: bytes, key: bytes, name: str | None = None) -> Manifest:
    """A manifest as received: signed with `key`, well-formed, for `name`; else Refused."""
    if len(content) > MAX_MANIFEST_BYTES:
        raise Refused(f"the manifest has {len(content)} bytes, over {MAX_MANIFEST_BYTES}")
    try:
        signed = json.loads(content)
    except (ValueError, RecursionError):
        raise Refused("the manifest is not JSON (or nested too deeply)") from None
    if not isinstance(signed, dict):
        raise Refused("the manifest is not a JSON object")
    try:
        document = verify(signed, key)
    except SignatureError as exc:
        raise Refused(f"manifest refused: {exc}") from None
    except (ValueError, RecursionError) as exc:
        # NaN, a lone surrogate or deep nesting: JSON that has no canonical encoding to sign
        raise Refused(f"manifest refused: it cannot be encoded canonically ({exc})") from None
    try:
        manifest = Manifest.model_validate(document)
    except RecursionError:
        raise Refused("manifest refused: nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Refused(f"manifest refused: {where}: {first['msg']}") from None
    if name is not None and (manifest.name != name or manifest.card.name != name):
        raise Refused(f"the manifest is for {manifest.name!r}, not {name!r}")
    if manifest.card.sha256 != manifest.sha256 or manifest.card.version != manifest.version:
        raise Refused("the manifest's card disagrees with its sha256 or version")
    return manifest


def _resumes(resp: httpx.Response, have: int) -> bool:
    """True when the answer continues the partial file (206 from its end); False for the whole
    file (200: no Range support, or the file changed: If-Range). Else Unreachable."""
    if have and resp.status_code == 206:
        if resp.headers.get("content-range", "").startswith(f"bytes {have}-"):
            return True
        raise Unreachable(f"the hub answered another range: {resp.headers.get('content-range')}")
    if resp.status_code == 200:
        return False
    if resp.status_code == 404:
        raise Unreachable(f"{resp.url.path}: 404 (a newer version was published since?)")
    raise Unreachable(f"{resp.url.path}: status {resp.status_code}")


def _receive(resp: httpx.Response, fh: BinaryIO, room: int, max_bytes: int | None) -> int:
    """Append the body to `fh`: at most `max_bytes` now; Refused past `room` (more bytes than
    the manifest announced). Returns the bytes written."""
    written = 0
    for chunk in resp.iter_bytes(CHUNK):
        if written + len(chunk) > room:
            raise Refused("the hub sent more bytes than the manifest's size")
        if max_bytes is not None:
            chunk = chunk[: max_bytes - written]
        fh.write(chunk)
        fh.flush()
        written += len(chunk)
        if max_bytes is not None and written >= max_bytes:
            break
    return written


class Device:
    def __init__(self, settings: DeviceSettings) -> None:
        self.s = settings
        self.root = settings.state_dir
        self.key = settings.manifest_key.get_secret_value().encode()
        self.name = settings.model_name
        self.last_download: dict[str, int] = {}
        """Bytes the last completed download resumed from and fetched."""

    # --- the folder ---------------------------------------------------------------------

    def slot(self, name: str) -> Path:
        return self.root / "slots" / name

    def pointer(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / "pointer.json").read_bytes())
        except FileNotFoundError:
            return {"active": None, "blocked": []}
        return data

    def write_pointer(self, pointer: dict[str, Any]) -> None:
        write_atomic(self.root / "pointer.json", json.dumps(pointer, indent=1).encode())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def describe(self, slot: str | None) -> dict[str, Any] | None:
        if slot is None:
            return None
        try:
            card = read_card(self.slot(slot))
        except ModelError:
            return None
        return {"slot": slot, "name": card.name, "version": card.version, "sha256": card.sha256}

    def active(self) -> dict[str, Any] | None:
        return self.describe(self.pointer().get("active"))

    def other(self, slot: str | None) -> str:
        return "b" if slot == "a" else "a"

    def status(self) -> dict[str, Any]:
        pointer = self.pointer()
        active = pointer.get("active")
        partial = self.root / "partial"
        return {
            "model": self.name,
            "active": self.describe(active),
            "previous": self.describe(self.other(active)) if active else None,
            "blocked": pointer.get("blocked", []),
            "partial": [
                {"file": p.name, "bytes": p.stat().st_size} for p in sorted(partial.glob("*.part"))
            ]
            if partial.is_dir()
            else [],
        }

    # --- sync ----------------------------------------------------------------------------

    def client(self) -> httpx.Client:
        timeout = httpx.Timeout(self.s.hub_read_timeout, connect=self.s.hub_connect_timeout)
        return httpx.Client(base_url=self.s.hub_url, timeout=timeout)

    def fetch_manifest(self, client: httpx.Client) -> Manifest:
        try:
            resp = client.get(f"/edge/models/{self.name}/manifest")
        except httpx.HTTPError as exc:
            raise Unreachable(f"hub unreachable: {type(exc).__name__}") from exc
        if resp.status_code == 404:
            raise Refused(f"the hub publishes no model {self.name!r}")
        if resp.status_code != 200:
            raise Unreachable(f"hub answered {resp.status_code}")
        return parse_manifest(resp.content, self.key, self.name)

    def check_offer(self, manifest: Manifest, force: bool) -> str | None:
        """None to install; else why not (up to date). Raises Refused."""
        active = self.active()
        blocked = self.pointer().get("blocked", [])
        offer = {"version": manifest.version, "sha256": manifest.sha256}
        if active is not None:
            same_bytes = active["sha256"] == manifest.sha256
            if active["version"] == manifest.version and same_bytes:
                return f"version {manifest.version} is active"
            if not force:
                if offer in blocked:
                    raise Refused(
                        f"version {manifest.version} was rolled back on this device "
                        "(--force installs it)"
                    )
                if int(manifest.version) < int(active["version"]):
                    raise Refused(
                        f"downgrade from {active['version']} to {manifest.version} "
                        "(--force installs it)"
                    )
                if manifest.version == active["version"]:
                    raise Refused(
                        f"version {manifest.version} offered with other bytes than the "
                        "active one (--force installs it)"
                    )
        budget = self.s.budget(self.name)
        if manifest.size > budget:
            raise Refused(
                f"{self.name} v{manifest.version} is {manifest.size} bytes, over this "
                f"device's budget of {budget}"
            )
        return None

    def download(self, client: httpx.Client, manifest: Manifest, max_bytes: int | None) -> Path:
        """The model's bytes in a partial file, resumed with Range; Incomplete when
        `max_bytes` stopped it, Unreachable when the connection was cut (the partial file
        stays for the next sync)."""
        folder = self.root / "partial"
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"{self.name}-{manifest.version}-{manifest.sha256[:12]}.part"
        for stale in folder.glob("*.part"):
            if stale != part:
                stale.unlink()
        have = part.stat().st_size if part.exists() else 0
        if have > manifest.size:
            part.unlink()
            have = 0
        resumed_from, fetched = have, 0
        if have < manifest.size:
            headers = {}
            if have:
                headers = {"Range": f"bytes={have}-", "If-Range": f'"{manifest.sha256}"'}
            try:
                with client.stream("GET", manifest.url, headers=headers) as resp:
                    if not _resumes(resp, have):
                        resumed_from = have = 0
                    with part.open("ab" if have else "wb") as fh:
                        fetched = _receive(resp, fh, manifest.size - have, max_bytes)
                        os.fsync(fh.fileno())
                    have += fetched
            except httpx.HTTPError as exc:
                now = part.stat().st_size if part.exists() else 0
                raise Unreachable(
                    f"download cut after {now} of {manifest.size} bytes: {type(exc).__name__}"
                ) from exc
            except Refused:
                part.unlink(missing_ok=True)
                raise
        log.info(
            "download",
            extra={
                "model": self.name,
                "model_version": manifest.version,
                "resumed_from": resumed_from,
                "fetched": fetched,
                "have": have,
                "size": manifest.size,
            },
        )
        if have < manifest.size:
            raise Incomplete(have, manifest.size, resumed_from)
        self.last_download = {"resumed_from": resumed_from, "fetched": fetched}
        return part

    def install(self, manifest: Manifest, part: Path) -> str:
        """Verify the bytes, stage and self-test them, then take the inactive slot and flip the
        pointer to it. Returns the new active slot."""
        actual = sha256_file(part)
        if actual != manifest.sha256:
            part.unlink()
            raise Refused(
                f"sha256 mismatch: the manifest says {manifest.sha256[:12]}…, "
                f"the download is {actual[:12]}…"
            )
        slots = self.root / "slots"
        staging = slots / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copyfile(part, staging / "model.onnx")
        card = manifest.card.model_dump_json(exclude_none=False).encode()
        (staging / "model.json").write_bytes(card)
        try:
            open_checked(staging)
        except ModelError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            part.unlink()
            raise Refused(f"self-test failed: {exc}") from None
        for path in (staging / "model.onnx", staging / "model.json"):
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
        pointer = self.pointer()
        target = self.other(pointer.get("active"))
        old = slots / ".old"
        shutil.rmtree(old, ignore_errors=True)
        if self.slot(target).exists():
            os.replace(self.slot(target), old)
        os.replace(staging, self.slot(target))
        _fsync_dir(slots)
        self.write_pointer({**pointer, "active": target})
        shutil.rmtree(old, ignore_errors=True)
        part.unlink()
        return target

    def sync(self, *, force: bool = False, max_bytes: int | None = None) -> SyncResult:
        self.last_download = {}
        with self.locked(), self.client() as client:
            offered: str | None = None
            try:
                manifest = self.fetch_manifest(client)
                offered = manifest.version
                if (why := self.check_offer(manifest, force)) is not None:
                    return SyncResult("up_to_date", why, self.active(), offered)
                part = self.download(client, manifest, max_bytes)
                slot = self.install(manifest, part)
            except Refused as exc:
                return SyncResult("refused", str(exc), self.active(), offered)
            except Unreachable as exc:
                return SyncResult(
                    "unreachable", f"{exc}; keeping the active model", self.active(), offered
                )
            except Incomplete as exc:
                return SyncResult(
                    "incomplete",
                    f"{exc.have} of {exc.size} bytes; the next sync resumes",
                    self.active(),
                    offered,
                    {"resumed_from": exc.resumed_from},
                )
            return SyncResult(
                "updated",
                f"version {manifest.version} installed in slot {slot}",
                self.active(),
                offered,
                {"download": self.last_download},
            )

    def rollback(self) -> SyncResult:
        """Point back at the other slot, once it verifies; block the version left."""
        with self.locked():
            pointer = self.pointer()
            active = pointer.get("active")
            if active is None:
                return SyncResult("refused", "no model installed", None)
            previous = self.other(active)
            if self.describe(previous) is None:
                return SyncResult("refused", "no previous model to roll back to", self.active())
            try:
                open_checked(self.slot(previous))
            except ModelError as exc:
                return SyncResult("refused", f"the previous model fails: {exc}", self.active())
            left = self.describe(active)
            blocked = list(pointer.get("blocked", []))
            if left is not None:
                entry = {"version": left["version"], "sha256": left["sha256"]}
                if entry not in blocked:
                    blocked.append(entry)
            self.write_pointer({"active": previous, "blocked": blocked})
            return SyncResult(
                "updated",
                f"rolled back to slot {previous}; version "
                f"{left['version'] if left else '?'} will not be installed again without --force",
                self.active(),
            )


class Incomplete(Exception):
    def __init__(self, have: int, size: int, resumed_from: int) -> None:
        super().__init__(f"{have} of {size} bytes")
        self.have, self.size, self.resumed_from = have, size, resumed_from
