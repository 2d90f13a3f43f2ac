"""Drift of a window of served traffic against the model card's training reference.

Pure numpy + scipy (the `monitoring` extra): prediction_monitoring's monitor calls `compare`
on the rows it reads from the prediction log; a test or a notebook can call it on any arrays.

What is measured, per feature unless said otherwise:
- PSI (population stability index) on the training decile bins stored in the card
  (`reference.decile_edges`, 9 inner edges -> 10 bins; `reference.decile_counts`, the training
  rows per bin). The bins are the reference's and never move with the window: a window is
  binned with the same `searchsorted(edges, x, side="right")` as training/data.py, so a shift
  shows as mass leaving some bins for others instead of being re-cut away. PSI =
  sum((q - p) * ln(q / p)) over bins, p the reference share, q the window share.
- The KS two-sample p-value (scipy.stats.ks_2samp) of the window against the card's reference
  sample (`reference.sample`, training rows).
- The book's baseline: |window mean - reference mean| / |reference mean| > 5 %. The reference
  means are the card's own training means (the mean of `reference.sample`, which for iris is the
  whole training split), not the book's constants (5.84/3.06/3.76/1.20, the mean of all 150 iris
  rows): the monitor compares traffic with the data this model was trained on. Reported, not
  part of the verdict: at a few hundred instances a 5 % band is inside the sampling noise of a
  narrow feature (petal_width: sd 0.76 around 1.2, so the standard error alone is ~4.5 % at 200).
- Over the window: PSI of the predicted classes against `reference.class_prior`, the outlier
  rate (rows an outlier model flagged, among rows that carry the flag) and the request rate
  (each log row counted 1 / sample_rate times, per second of window).

Empty bins: a share of 0 makes ln(q / p) infinite, so both shares are floored at EPSILON = 1e-4
(one in ten thousand) before the sum. Small enough that a bin with a few window instances in it
still counts (a window putting 10 % of its mass where training had none scores
~0.1 * ln(1000) = 0.69, critical), large enough that one stray instance in a 200-instance window
does not (0.005 * ln(50) = 0.02). A bin empty on both sides adds 0.

Verdicts, per feature and overall (the worst wins): `critical` PSI > 0.25 (features or classes)
or outlier rate > 0.2; `warning` PSI > 0.1 or KS p < 0.01; else `ok`. Below `min_instances`
(default 200) rows in the window the verdict is `insufficient_data` and no statistic is
reported (None): a PSI of 40 instances over 10 bins is noise, and a number shown as if it were
valid invites an alert. A feature redacted in the log (null) is `insufficient_data` alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from serving.model import ModelCard

Array = npt.NDArray[np.float64]
Verdict = Literal["ok", "warning", "critical", "insufficient_data"]

EPSILON = 1e-4
"""Floor of a bin's share before PSI's logarithm (see the module docstring)."""
MIN_INSTANCES = 200
"""Fewest window instances (rows) for which any statistic is reported."""
PSI_WARNING = 0.1
PSI_CRITICAL = 0.25
KS_PVALUE = 0.01
OUTLIER_RATE = 0.2
MEAN_DEVIATION = 0.05
"""The book's baseline: relative deviation of the mean flagged above this."""

_RANK: dict[str, int] = {"ok": 0, "insufficient_data": 0, "warning": 1, "critical": 2}


class ReferenceMissing(ValueError):
    """The card carries no usable reference (missing or inconsistent fields)."""


@dataclass(frozen=True)
class Reference:
    """The training side of the comparison, read from a model card's `reference`."""

    feature_names: list[str]
    edges: list[Array]
    """Per feature, the 9 inner decile edges (training/data.py reference_stats)."""
    counts: list[Array]
    """Per feature, training rows per bin (10 bins)."""
    sample: Array
    """Training rows, (n, features)."""
    means: Array
    """Per feature, the mean of `sample` (the card's training means)."""
    class_prior: Array
    n_rows: int

    @classmethod
    def from_card(cls, card: ModelCard) -> Reference:
        ref = card.reference
        try:
            edges = [np.asarray(e, dtype=np.float64) for e in ref["decile_edges"]]
            counts = [np.asarray(c, dtype=np.float64) for c in ref["decile_counts"]]
            sample = np.asarray(ref["sample"], dtype=np.float64)
            prior = np.asarray(ref["class_prior"], dtype=np.float64)
            n_rows = int(ref["n_rows"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ReferenceMissing(f"model card {card.name}: no usable reference ({exc})") from None
        names = list(card.feature_names)
        width = len(names)
        if not (len(edges) == len(counts) == width and sample.ndim == 2):
            raise ReferenceMissing(f"model card {card.name}: reference does not match its features")
        if sample.shape[1] != width or len(sample) == 0:
            raise ReferenceMissing(f"model card {card.name}: reference sample is not (n, {width})")
        for e, c in zip(edges, counts, strict=True):
            if len(c) != len(e) + 1 or c.sum() <= 0:
                raise ReferenceMissing(f"model card {card.name}: decile counts do not fit edges")
        if len(prior) != len(card.labels):
            raise ReferenceMissing(f"model card {card.name}: class_prior does not match labels")
        return cls(names, edges, counts, sample, sample.mean(axis=0), prior, n_rows)


@dataclass(frozen=True)
class Window:
    """The served side: the instances of the log rows in the window."""

    x: Array
    """Instances, (n, features); NaN where the log holds null (a redacted feature)."""
    class_ids: npt.NDArray[np.int64]
    """Predicted class per instance (-1 where the log has none)."""
    outliers: npt.NDArray[np.bool_] | None
    """Outlier flag per flagged instance; None when no row carries one (no outlier model)."""
    requests: float
    """Requests the log rows stand for: each row counted 1 / sample_rate times."""
    seconds: float
    """Length of the window."""


@dataclass
class FeatureDrift:
    name: str
    instances: int
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    psi: float | None = None
    ks_pvalue: float | None = None
    reference_mean: float | None = None
    window_mean: float | None = None
    mean_deviation: float | None = None
    """|window mean - reference mean| / |reference mean| (the book's baseline)."""
    mean_shifted: bool | None = None
    """mean_deviation > 5 % (reported, not part of the verdict)."""
    edges: list[float] = field(default_factory=list)
    reference_share: list[float] = field(default_factory=list)
    """Per bin, the reference's share of rows."""
    window_share: list[float] = field(default_factory=list)
    """Per bin, the window's share of instances (empty below the minimum)."""


@dataclass
class DriftResult:
    verdict: Verdict
    instances: int
    """Instances (rows) in the window."""
    requests: float
    """Requests the window's log rows stand for (sampling undone)."""
    window_seconds: float
    request_rate: float
    """Requests per second over the window."""
    min_instances: int
    reference_rows: int
    reasons: list[str] = field(default_factory=list)
    features: list[FeatureDrift] = field(default_factory=list)
    """Empty when the window is below the minimum."""
    class_psi: float | None = None
    class_share: list[float] = field(default_factory=list)
    class_prior: list[float] = field(default_factory=list)
    outlier_rate: float | None = None
    """None below the minimum, or when no instance carries an outlier flag."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bin_counts(edges: Array, values: Array) -> Array:
    """Values per bin of `edges` (len(edges) + 1 bins), binned as training/data.py bins the
    training rows; NaN values are left out.

    Compared in float32, the precision the model is served at (FP32 input) and the training
    rows had: the card stores the edges rounded to 6 decimals, and a float32 value sitting on
    an edge (3.1 as float32 is 3.0999999...) falls left of the rounded float64 edge but right
    of the float32 one, as it did in training. In float64 the card's own training sample would
    not reproduce its decile_counts."""
    values = values[~np.isnan(values)]
    idx = np.searchsorted(edges.astype(np.float32), values.astype(np.float32), side="right")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)


def shares(counts: Array) -> Array:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(reference: Array, window: Array, eps: float = EPSILON) -> float:
    """PSI of the window's distribution against the reference's, both given as counts (or
    shares) over the same bins; shares floored at `eps`."""
    p = np.maximum(shares(reference), eps)
    q = np.maximum(shares(window), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_pvalue(reference: Array, window: Array) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (NaN values left out), in float32 like
    `bin_counts`: the card's sample holds float32 values (5.1 is 5.099999904...), traffic sends
    5.1, and in float64 every such pair would differ, a shift of the whole ECDF that KS sees."""
    a = reference[~np.isnan(reference)].astype(np.float32)
    b = window[~np.isnan(window)].astype(np.float32)
    return float(stats.ks_2samp(b, a).pvalue)


def _feature(ref: Reference, i: int, values: Array, min_instances: int) -> FeatureDrift:
    present = values[~np.isnan(values)]
    name, edges = ref.feature_names[i], ref.edges[i]
    out = FeatureDrift(
        name,
        len(present),
        "insufficient_data",
        edges=edges.tolist(),
        reference_share=shares(ref.counts[i]).tolist(),
    )
    if len(present) < min_instances:
        out.reasons.append(f"{len(present)} instances < {min_instances}")
        return out
    counts = bin_counts(edges, present)
    out.window_share = shares(counts).tolist()
    out.psi = psi(ref.counts[i], counts)
    out.ks_pvalue = ks_pvalue(ref.sample[:, i], present)
    out.reference_mean = float(ref.means[i])
    out.window_mean = float(present.mean())
    if out.reference_mean != 0:
        out.mean_deviation = abs(out.window_mean - out.reference_mean) / abs(out.reference_mean)
        out.mean_shifted = out.mean_deviation > MEAN_DEVIATION
    out.verdict = "ok"
    if out.psi > PSI_CRITICAL:
        out.verdict = "critical"
        out.reasons.append(f"psi {out.psi:.3f} > {PSI_CRITICAL}")
    elif out.psi > PSI_WARNING:
        out.verdict = "warning"
        out.reasons.append(f"psi {out.psi:.3f} > {PSI_WARNING}")
    if out.ks_pvalue < KS_PVALUE:
        out.verdict = worst(out.verdict, "warning")
        out.reasons.append(f"ks p {out.ks_pvalue:.2g} < {KS_PVALUE}")
    return out


def worst(a: Verdict, b: Verdict) -> Verdict:
    return a if _RANK[a] >= _RANK[b] else b


def compare(ref: Reference, window: Window, *, min_instances: int = MIN_INSTANCES) -> DriftResult:
    """The drift of `window` against `ref`; `insufficient_data` (no statistic) below
    `min_instances` window instances."""
    n = len(window.x)
    result = DriftResult(
        "insufficient_data",
        n,
        window.requests,
        window.seconds,
        window.requests / window.seconds if window.seconds > 0 else 0.0,
        min_instances,
        ref.n_rows,
        class_prior=ref.class_prior.tolist(),
    )
    if n < min_instances:
        result.reasons.append(f"{n} instances in the window < {min_instances}")
        return result
    if window.x.shape[1] != len(ref.feature_names):
        raise ValueError(f"window has {window.x.shape[1]} features, the card {len(ref.edges)}")
    verdict: Verdict = "ok"
    for i in range(len(ref.feature_names)):
        feature = _feature(ref, i, window.x[:, i], min_instances)
        result.features.append(feature)
        verdict = worst(verdict, feature.verdict)
        result.reasons.extend(f"{feature.name}: {r}" for r in feature.reasons)
    ids = window.class_ids[(window.class_ids >= 0) & (window.class_ids < len(ref.class_prior))]
    if len(ids) >= min_instances:
        counts = np.bincount(ids, minlength=len(ref.class_prior)).astype(np.float64)
        result.class_share = shares(counts).tolist()
        result.class_psi = psi(ref.class_prior, counts)
        if result.class_psi > PSI_CRITICAL:
            verdict = worst(verdict, "critical")
            result.reasons.append(f"classes: psi {result.class_psi:.3f} > {PSI_CRITICAL}")
        elif result.class_psi > PSI_WARNING:
            verdict = worst(verdict, "warning")
            result.reasons.append(f"classes: psi {result.class_psi:.3f} > {PSI_WARNING}")
    if window.outliers is not None and len(window.outliers) >= min_instances:
        result.outlier_rate = float(window.outliers.mean())
        if result.outlier_rate > OUTLIER_RATE:
            verdict = worst(verdict, "critical")
            result.reasons.append(f"outlier rate {result.outlier_rate:.3f} > {OUTLIER_RATE}")
    result.verdict = verdict
    return result
