"""The spec of a service made from the template: its schema and the configuration it becomes.

A spec describes a model for the shared serving app (serving/): where the model comes from
(an MLflow URI, resolved by the `model-loader` init step), what its card must say (input,
features, labels, preprocessing), and how the service runs (replicas, batch size, resources).
It configures that app through `MLSP_*` variables (one ConfigMap); no code is generated.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from serving.expect import NO_PREPROCESSING

TEMPLATE_VERSION = "1"
"""Stamped into every rendered file; bump it whenever a template's output changes."""

MAX_SPEC_BYTES = 64 << 10
MAX_FEATURES = 4096

Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi)?$", max_length=16)]
Word = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:+-]+$", max_length=64)]
"""A feature or label name: no comma or space (the ConfigMap lists them comma-separated)."""
ServiceName = Annotated[str, Field(pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$", max_length=40)]
"""A DNS-1035 label: the Service, Deployment and ConfigMap names."""
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
Value = Annotated[float, Field(allow_inf_nan=False)]


def line_breaker(text: str) -> str | None:
    """The first character of `text` that could end a line (YAML takes U+0085, U+2028 and
    U+2029 for line breaks) or is another control or format character; None if there is none."""
    for char in text:
        if unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
            return char
    return None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(Strict):
    name: ModelName
    """Name the model's card carries (checked when the service loads it)."""
    uri: Annotated[str, Field(pattern=r"^models:/[A-Za-z0-9._-]+(@[A-Za-z0-9_-]+|/[0-9]+)$")]
    """MLflow model URI: `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""

    @model_validator(mode="after")
    def _uri_names_the_model(self) -> ModelSource:
        registered = re.split(r"[@/]", self.uri.removeprefix("models:/"))[0]
        if registered != self.name:
            raise ValueError(f"uri names {registered!r}, the model is {self.name!r}")
        return self


class InputSchema(Strict):
    name: Word = "X"
    """Name of the model's input tensor."""
    features: Annotated[list[Word], Field(min_length=1)]
    """Feature names, in the order the model takes them."""

    @field_validator("features")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_FEATURES:
            raise ValueError(f"at most {MAX_FEATURES} features")
        if len(set(value)) != len(value):
            raise ValueError("feature names must be unique")
        return value


class Preprocessing(Strict):
    name: Word
    version: Word


class Resources(Strict):
    cpu_request: Quantity = "100m"
    memory_request: Quantity = "128Mi"
    cpu_limit: Quantity = "1"
    memory_limit: Quantity = "512Mi"


class ServiceSpec(Strict):
    """A service made from the template (patterns/inference_template/README.md)."""

    name: ServiceName
    """Service name: the Deployment, Service and ConfigMap are named after it."""
    description: Annotated[str, Field(min_length=1, max_length=200)]
    """One line (it is written into comments and the README)."""
    model: ModelSource
    input: InputSchema
    labels: Annotated[list[Word], Field(min_length=1)]
    """Class labels, in class-id order."""
    preprocessing: Preprocessing | None = None
    """The preprocessing the model was trained for; none: it takes raw features."""
    examples: Annotated[list[list[Value]], Field(min_length=1, max_length=20)]
    """Input rows for the smoke test, the load test and the README."""
    replicas: Annotated[int, Field(ge=1, le=50)] = 2
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 256
    load_deadline_seconds: Annotated[int, Field(ge=10, le=600)] = 120
    resources: Resources = Resources()

    @field_validator("description")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if (char := line_breaker(value)) is not None:
            raise ValueError(f"one line of text: no control or line-break character ({char!r})")
        return value

    @model_validator(mode="after")
    def _examples_fit(self) -> ServiceSpec:
        if len(self.examples) > self.max_batch:
            raise ValueError(
                f"examples: {len(self.examples)} rows, more than max_batch ({self.max_batch}); "
                "the smoke test sends them in one request"
            )
        width = len(self.input.features)
        for i, row in enumerate(self.examples):
            if len(row) != width:
                raise ValueError(
                    f"examples[{i}] has {len(row)} values, the input has {width} features"
                )
        return self


class SpecError(Exception):
    """The spec is unreadable or invalid; the message names the field."""


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_spec(path: Path) -> ServiceSpec:
    """The validated spec in `path`; SpecError naming the field otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from exc
    if (char := line_breaker(path.name)) is not None:
        # the file name is written into the rendered files' comments
        raise SpecError(
            f"{str(path)!r}: the file name has a control or line-break character ({char!r})"
        )
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES} bytes")
    try:
        data: Any = yaml.safe_load(raw)
    except RecursionError as exc:
        raise SpecError(f"{path}: not YAML: nested too deeply") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a mapping of fields")
    try:
        return ServiceSpec.model_validate(data)
    except ValidationError as exc:
        lines = []
        # a validator of a whole object (no location) names its fields in its message
        for err in exc.errors():
            where, msg = _where(err["loc"]), err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {msg}" if where else msg)
        raise SpecError(f"{path}: " + "; ".join(lines)) from exc


def spec_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_env(spec: ServiceSpec) -> dict[str, str]:
    """The ConfigMap: every `MLSP_*` value the spec sets, for the loader and the server."""
    preprocess = spec.preprocessing
    return {
        "MLSP_MODEL_URI": spec.model.uri,
        "MLSP_LOAD_DEADLINE_SECONDS": str(spec.load_deadline_seconds),
        "MLSP_MAX_BATCH": str(spec.max_batch),
        "MLSP_EXPECT_MODEL": spec.model.name,
        "MLSP_EXPECT_INPUT": spec.input.name,
        "MLSP_EXPECT_FEATURES": ",".join(spec.input.features),
        "MLSP_EXPECT_LABELS": ",".join(spec.labels),
        "MLSP_EXPECT_PREPROCESS": (
            NO_PREPROCESSING if preprocess is None else f"{preprocess.name}@{preprocess.version}"
        ),
    }


LOADER_CONFIG = ("MLSP_MODEL_URI", "MLSP_LOAD_DEADLINE_SECONDS")
"""The ConfigMap keys the `model-loader` init step reads; the server reads the others."""
