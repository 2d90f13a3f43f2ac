"""A configuration file that is reloaded while the process runs: validated first, swapped
whole, and the last good one kept when a new one is refused.

Kubernetes updates a mounted ConfigMap by writing the new files into a fresh hidden folder and
swapping the `..data` symlink to it in one rename; the file's own path never changes. So the
file is re-read by path every `interval` seconds (a few hundred bytes) and compared by its
sha256. Reading by path (not inotify on the file) is deliberate: an inotify watch on the file
follows the old inode and never sees the swap, and a watch on the folder must re-arm itself
after every swap; a poll sees the same bytes a reader would, on any volume, in podman too.

- A file that parses and validates replaces the current configuration at once (one
  assignment: a request sees either the old or the new one, never a mix).
- A file that does not (bad YAML, a field out of range, an unknown key, unreadable) is
  refused: the last good configuration stays, the refusal is logged with the field it names,
  counted (`mlsp_config_reloads_total{result="invalid"}`, `mlsp_config_valid` 0) and shown in
  /readyz `warnings`, which never flips readiness: the process still serves the last good
  configuration, which is better than none.
- At start-up there is no last good one: an invalid file stops the process (a new pod never
  serves what nobody checked), and a missing file means every parameter takes its default
  (or, when the model has no usable defaults, `required`, stops it too).

Every configuration is known by a short hash of its canonical form (`digest`), which the
services put in their answers and log lines, so any answer can be traced to what steered it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import orjson
import yaml
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from serving.state import ServiceState

log = logging.getLogger("serving")

RELOADS = Counter(
    "mlsp_config_reloads",
    "Configuration files read after a change, by result (applied, invalid).",
    ["config", "result"],
)
VALID = Gauge(
    "mlsp_config_valid",
    "1 when the newest configuration file was applied, 0 while it is refused (the last good "
    "one is served).",
    ["config"],
    multiprocess_mode="min",
)
INFO = Gauge(
    "mlsp_config_info",
    "The configuration being served (value 1), by its digest.",
    ["config", "digest"],
    multiprocess_mode="max",
)

M = TypeVar("M", bound=BaseModel)


class ConfigInvalid(ValueError):
    """A configuration file that cannot be used; the message names the field and the reason."""


def describe(exc: ValidationError) -> str:
    """Pydantic's errors as `field.path: reason` (the first three)."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_yaml(model: type[M], raw: bytes) -> M:
    """YAML (JSON is YAML too) validated by `model`; ConfigInvalid naming what is wrong."""
    if not raw.strip():
        # a truncated write (an editor saving in place) looks the same: write `{}` for defaults
        raise ConfigInvalid("the file is empty (write {} for every default)")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigInvalid(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigInvalid(f"(top level): a mapping is expected, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid(describe(exc)) from None


def digest_of(config: BaseModel) -> str:
    """12 hex digits of sha256 over the configuration's canonical JSON (defaults filled in):
    the same parameters have the same digest whatever the file's layout or comments."""
    canonical = orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:12]


class WatchedFile(Generic[M]):
    """`path` parsed into `model`, kept current while `watch()` runs."""

    def __init__(
        self,
        path: Path,
        model: type[M],
        *,
        name: str,
        interval: float = 1.0,
        check: Callable[[M], None] | None = None,
        required: bool = False,
    ) -> None:
        self.path = path
        self.model = model
        self.name = name
        self.interval = interval
        self.check = check
        """Validation beyond the model's own (e.g. names that must exist): raises ValueError."""
        self.required = required
        """The file must exist at start-up (the model has no usable defaults)."""
        self._served: tuple[M, str] | None = None
        """(configuration, its digest), replaced in one assignment: a reader on the event loop
        never sees one file's parameters with another's digest."""
        self.source = "defaults"
        """What the current configuration came from: `defaults` (no file) or the file."""
        self.error: str | None = None
        """Why the newest file is refused (None: it is the one served)."""
        self._seen: bytes | None = None

    @property
    def current(self) -> M:
        """The configuration being served (set by `load`)."""
        assert self._served is not None, "load() first"
        return self._served[0]

    @property
    def digest(self) -> str:
        return self._served[1] if self._served is not None else ""

    def served(self) -> tuple[M, str]:
        """The configuration and its digest, read together."""
        assert self._served is not None, "load() first"
        return self._served

    def _validate(self, raw: bytes) -> M:
        config = parse_yaml(self.model, raw)
        if self.check is not None:
            try:
                self.check(config)
            except ValueError as exc:
                raise ConfigInvalid(str(exc)) from None
        return config

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def load(self) -> M:
        """The first read, at start-up: ConfigInvalid stops the process; no file: defaults."""
        try:
            raw = self._read()
        except OSError as exc:  # a folder, no permission: the file is what is wrong
            raise ConfigInvalid(f"{self.path} is unreadable: {exc.strerror or exc}") from None
        if raw is None and self.required:
            raise ConfigInvalid(f"{self.path} is missing")
        if raw is None:
            defaults = self._validate(b"{}")
            self._served = (defaults, digest_of(defaults))
        else:
            self._apply(raw, self._validate(raw))
        INFO.labels(self.name, self.digest).set(1)
        VALID.labels(self.name).set(1)
        log.info(
            "configuration loaded",
            extra={"config": self.name, "digest": self.digest, "source": self.source},
        )
        return self.current

    def _apply(self, raw: bytes, config: M) -> None:
        old = self.digest
        self._served = (config, digest_of(config))
        self.source, self.error, self._seen = str(self.path), None, raw
        if old and old != self.digest:
            INFO.labels(self.name, old).set(0)
        INFO.labels(self.name, self.digest).set(1)

    def refresh(self) -> bool:
        """Read the file once; True when a changed, valid file was applied."""
        unreadable: str | None
        try:
            raw = self._read()
        except OSError as exc:
            raw, unreadable = None, f"unreadable: {exc.strerror or exc}"
        else:
            unreadable = "the file is gone" if raw is None and self._seen is not None else None
        if raw is not None and raw == self._seen:
            return False
        if raw is None:
            if unreadable is not None:
                self._refuse(unreadable, raw)
            return False
        try:
            config = self._validate(raw)
        except ConfigInvalid as exc:
            self._refuse(str(exc), raw)
            return False
        previous = self.digest
        self._apply(raw, config)
        VALID.labels(self.name).set(1)
        RELOADS.labels(self.name, "applied").inc()
        log.info(
            "configuration applied",
            extra={"config": self.name, "digest": self.digest, "previous": previous},
        )
        return True

    def _refuse(self, why: str, raw: bytes | None) -> None:
        if self.error == why and raw == self._seen:
            return
        self.error, self._seen = why, raw
        VALID.labels(self.name).set(0)
        RELOADS.labels(self.name, "invalid").inc()
        log.warning(
            "configuration refused, the last good one stays",
            extra={"config": self.name, "reason": why, "digest": self.digest},
        )

    def warning(self) -> str | None:
        """What /readyz shows while a newer file is refused (it never flips readiness)."""
        if self.error is None:
            return None
        return f"{self.name}: {self.path.name} refused ({self.error}); serving {self.digest}"

    def attach(self, state: ServiceState) -> None:
        """Serve with the app: its refusals in /readyz warnings, re-read until draining."""
        state.warn_checks.append(self.warning)
        state.background.append(lambda: self.watch(lambda: state.draining))

    async def watch(self, stopping: Callable[[], bool]) -> None:
        """Re-read the file every `interval` seconds until `stopping()`."""
        while not stopping():
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # a watcher that dies would freeze the configuration silently
                log.exception("configuration watch failed", extra={"config": self.name})
