"""Service-level objectives of a load test: a YAML file of k6-style thresholds, and the check.

    # slo.yaml
    thresholds:
      "*":                    # every request together
        - p99 < 50ms
        - errors < 1%
        - rps > 100
      POST /predict:          # one endpoint: METHOD and the name locust reports
        - p(95) < 20ms
    abort_after: 10s          # optional: a breach sustained this long stops `run`

A threshold is `METRIC OP VALUE[UNIT]`: METRIC is p50, p90, p95, p99 or p99.9 (k6's `p(99)`
works too), mean or max (milliseconds; unit ms or s), errors (a fraction, or with %) or rps
(requests per second); OP is <, <=, > or >=. A file that breaks these rules is refused with
the field that is wrong (`SloError`); an endpoint no request reached is a breach, so a typo
in its name cannot pass unnoticed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ALL = "*"
"""The endpoint key of every request together."""
PERCENTILES = ("50", "90", "95", "99", "99.9")
"""The percentiles a summary holds (figures `p50_ms` ...): the ones a threshold may name."""
MAX_THRESHOLDS = 100
MAX_BYTES = 64 * 1024

EXPRESSION = re.compile(
    r"^\s*(?P<metric>p\(?[0-9.]+\)?|mean|avg|max|errors|error_rate|rps)\s*"
    r"(?P<op><=|<|>=|>)\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|%)?\s*$"
)
ENDPOINT = re.compile(r"^[A-Z]+ \S+$|^[A-Z]+ \S.*\S$")
OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class SloError(ValueError):
    """An SLO file that cannot be used; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Threshold:
    metric: str
    """The summary figure compared: p99_ms, mean_ms, max_ms, error_rate or rps."""
    op: str
    value: float
    """In the figure's unit (milliseconds, a fraction, requests per second)."""
    text: str
    """As written in the file."""

    def holds(self, actual: float) -> bool:
        return bool(OPS[self.op](actual, self.value))

    @property
    def is_floor(self) -> bool:
        """A lower bound on throughput (rps > X): what a capacity search is looking for,
        not a sign of overload."""
        return self.metric == "rps" and self.op in (">", ">=")


@dataclass(frozen=True)
class Slo:
    thresholds: Mapping[str, tuple[Threshold, ...]]
    """Endpoint ("*" or "METHOD name") -> its thresholds."""
    abort_after: float | None = None
    """Seconds a breach must last before `run` stops early; None: never stop early."""


@dataclass(frozen=True)
class Breach:
    endpoint: str
    threshold: str
    actual: float | None
    """The measured figure; None when no request reached the endpoint."""

    def __str__(self) -> str:
        got = "no requests" if self.actual is None else f"got {fmt(self.actual)}"
        return f"{self.endpoint}: {self.threshold} ({got})"


def fmt(value: float) -> str:
    return f"{value:.4g}"


def _metric(name: str, field: str) -> str:
    if name.startswith("p"):
        pct = name.removeprefix("p").strip("()")
        if pct not in PERCENTILES:
            raise SloError(field, f"percentile {pct!r} not kept: one of {', '.join(PERCENTILES)}")
        return f"p{pct}_ms"
    if name in ("mean", "avg", "max"):
        return "max_ms" if name == "max" else "mean_ms"
    return "rps" if name == "rps" else "error_rate"


def _scaled(metric: str, value: float, unit: str | None, field: str) -> float:
    """`value` in the figure's unit: milliseconds, a fraction, requests per second."""
    if metric.endswith("_ms"):
        if unit not in (None, "ms", "s"):
            raise SloError(field, f"a latency takes ms or s, not {unit!r}")
        return value * 1000 if unit == "s" else value
    if metric == "error_rate":
        if unit not in (None, "%"):
            raise SloError(field, f"errors is a rate: a fraction or a percentage, not {unit!r}")
        rate = value / 100 if unit == "%" else value
        if rate > 1:
            raise SloError(field, f"error rate {rate:g} is more than 100%")
        return rate
    if unit is not None:
        raise SloError(field, f"rps takes no unit, not {unit!r}")
    return value


def parse_threshold(text: object, field: str) -> Threshold:
    if not isinstance(text, str):
        raise SloError(field, f"expected a string like 'p99 < 50ms', got {text!r}")
    m = EXPRESSION.match(text)
    if m is None:
        raise SloError(
            field,
            f"cannot read {text!r}: expected METRIC OP VALUE[UNIT] with METRIC one of "
            f"{', '.join('p' + p for p in PERCENTILES)}, mean, max, errors, rps",
        )
    metric = _metric(m["metric"], field)
    value = _scaled(metric, float(m["value"]), m["unit"], field)
    return Threshold(metric, m["op"], value, " ".join(text.split()))


def parse_duration(value: object, field: str) -> float:
    text = str(value).strip()
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m)?", text)
    if isinstance(value, bool) or m is None:
        raise SloError(field, f"expected a duration like 10s, got {value!r}")
    seconds = float(m[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m[2]]
    if not 1 <= seconds <= 3600:
        raise SloError(field, f"{text} is outside 1s..1h")
    return seconds


def parse(doc: object) -> Slo:
    """An SLO from a parsed YAML document; SloError names the field that is wrong."""
    if not isinstance(doc, dict):
        raise SloError("(file)", "expected a mapping with `thresholds`")
    unknown = sorted(str(k) for k in doc if k not in ("thresholds", "abort_after"))
    if unknown:
        raise SloError(unknown[0], "unknown field (known: thresholds, abort_after)")
    raw = doc.get("thresholds")
    if not isinstance(raw, dict) or not raw:
        raise SloError("thresholds", "expected a mapping of endpoint -> list of thresholds")
    thresholds: dict[str, tuple[Threshold, ...]] = {}
    count = 0
    for endpoint, items in raw.items():
        field = f"thresholds.{endpoint!r}" if isinstance(endpoint, str) else "thresholds"
        if not isinstance(endpoint, str) or not (endpoint == ALL or ENDPOINT.match(endpoint)):
            raise SloError(field, f"{endpoint!r} is not '*' or 'METHOD name' (POST /predict)")
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not items:
            raise SloError(field, "expected a non-empty list of thresholds")
        count += len(items)
        if count > MAX_THRESHOLDS:
            raise SloError(field, f"more than {MAX_THRESHOLDS} thresholds")
        thresholds[endpoint] = tuple(
            parse_threshold(item, f"{field}[{i}]") for i, item in enumerate(items)
        )
    abort = doc.get("abort_after")
    return Slo(thresholds, None if abort is None else parse_duration(abort, "abort_after"))


def load(path: Path) -> Slo:
    """Read and validate an SLO file; SloError (naming the field) if it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SloError(str(path), f"cannot read: {exc.strerror}") from exc
    if len(data) > MAX_BYTES:
        raise SloError(str(path), f"larger than {MAX_BYTES} bytes")
    try:
        doc = yaml.safe_load(data)
    except RecursionError as exc:
        raise SloError(str(path), "not YAML: nested too deeply") from exc
    except yaml.YAMLError as exc:
        raise SloError(str(path), f"not YAML: {exc}") from exc
    return parse(doc)


def check(
    slo: Slo, figures: Mapping[str, Mapping[str, Any]], *, floors: bool = True
) -> list[Breach]:
    """Every threshold that `figures` (endpoint -> summary figures) breaks. `floors=False`
    leaves out throughput floors (rps > X), as a capacity search does."""
    breaches = []
    for endpoint, thresholds in slo.thresholds.items():
        got = figures.get(endpoint)
        for t in thresholds:
            if t.is_floor and not floors:
                continue
            if not got or not got.get("requests"):
                breaches.append(Breach(endpoint, t.text, None))
                continue
            actual = got.get(t.metric)
            if actual is None or not math.isfinite(float(actual)) or not t.holds(float(actual)):
                breaches.append(Breach(endpoint, t.text, None if actual is None else actual))
    return breaches


def verdicts(
    slo: Slo, figures: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str, float | None, bool]]:
    """(endpoint, threshold, actual, held) for every threshold, in file order: the report."""
    broken = {(b.endpoint, b.threshold) for b in check(slo, figures)}
    out = []
    for endpoint, thresholds in slo.thresholds.items():
        got = figures.get(endpoint) or {}
        for t in thresholds:
            actual = got.get(t.metric) if got.get("requests") else None
            out.append((endpoint, t.text, actual, (endpoint, t.text) not in broken))
    return out
