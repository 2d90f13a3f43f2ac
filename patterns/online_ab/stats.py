"""online_ab's statistics: what the report says about two variants' outcomes.

- A rate (every outcome 0 or 1: a conversion, a correct answer): the two-proportion z-test,
  and the difference B - A with its 95% interval (unpooled standard error).
- A mean (any number): Welch's t-test (unequal variances) and its 95% interval (Welch's df).
- SRM (sample ratio mismatch): a chi-square test of the users per variant against the weights;
  flagged at p < 0.001, when the split itself is broken and no comparison can be trusted.
- Peeking: the p-value above is valid once, at a sample size fixed in advance; a team that
  looks every hour and stops at the first p < 0.05 is wrong far more often than 5%. The
  decision uses the always-valid p-value of a mixture sequential probability ratio test
  (mSPRT, Johari, Pekelis and Walsh, "Always valid inference", 2017), with a normal mixture of
  scale `tau` over the difference: at any number of looks, the chance that it ever drops below
  0.05 when A and B are the same is at most 5%. It is computed at every `step` outcomes of the
  history and the smallest value so far is kept (as it would have been by looking then).

scipy provides the distributions (the monitor image carries it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as st

Metric = Literal["rate", "mean"]
ALPHA = 0.05
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Arm:
    n: int
    mean: float
    var: float
    """Sample variance (ddof=1)."""

    @classmethod
    def of(cls, values: np.ndarray[Any, Any]) -> Arm:
        n = len(values)
        return cls(
            n, float(values.mean()) if n else 0.0, float(values.var(ddof=1)) if n > 1 else 0.0
        )


def compare(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], metric: Metric) -> dict[str, Any]:
    """B against A: the difference, its 95% interval and the fixed-horizon p-value."""
    A, B = Arm.of(a), Arm.of(b)
    difference = B.mean - A.mean if A.n and B.n else None
    out: dict[str, Any] = {"difference": difference, "ci95": None, "p_value": None}
    if A.n < 2 or B.n < 2:
        return out
    if metric == "rate":
        pooled = (A.mean * A.n + B.mean * B.n) / (A.n + B.n)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / A.n + 1 / B.n))
        se = math.sqrt(A.mean * (1 - A.mean) / A.n + B.mean * (1 - B.mean) / B.n)
        z = (B.mean - A.mean) / se0 if se0 > 0 else 0.0
        out["p_value"] = float(2 * st.norm.sf(abs(z)))
        half = float(st.norm.ppf(0.975)) * se
        out["test"] = "two-proportion z"
    else:
        result = st.ttest_ind(b, a, equal_var=False)
        out["p_value"] = float(result.pvalue) if np.isfinite(result.pvalue) else 1.0
        va, vb = A.var / A.n, B.var / B.n
        df = (va + vb) ** 2 / ((va**2 / (A.n - 1) + vb**2 / (B.n - 1)) or 1e-300)
        half = float(st.t.ppf(0.975, df)) * math.sqrt(va + vb)
        out["test"] = "Welch t"
    out["ci95"] = [out["difference"] - half, out["difference"] + half]
    return out


def msprt_p(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], tau: float) -> float:
    """1 / Lambda of the mSPRT for the difference of means (normal mixture N(0, tau^2)) on
    these outcomes; 1 when there is too little to estimate a variance."""
    A, B = Arm.of(a), Arm.of(b)
    if A.n < 2 or B.n < 2:
        return 1.0
    v = A.var / A.n + B.var / B.n
    if v <= 0:
        return 1.0
    theta = B.mean - A.mean
    log_lambda = 0.5 * math.log(v / (v + tau**2)) + tau**2 * theta**2 / (2 * v * (v + tau**2))
    return float(min(1.0, math.exp(-log_lambda)))


def always_valid_p(
    values: np.ndarray[Any, Any], is_b: np.ndarray[Any, Any], tau: float, step: int = 50
) -> tuple[float, list[tuple[int, float]]]:
    """The smallest mSPRT p-value over the looks at every `step` outcomes (in arrival order),
    and the curve of looks (outcomes so far, p)."""
    curve, best = [], 1.0
    n = len(values)
    looks = list(range(step, n, step)) + ([n] if n else [])
    for k in looks:
        v, b = values[:k], is_b[:k]
        best = min(best, msprt_p(v[~b], v[b], tau))
        curve.append((k, best))
    return best, curve


def srm(users: tuple[int, int], weights: tuple[float, float]) -> dict[str, Any]:
    """Chi-square of the users per variant against the configured split."""
    total = sum(users)
    if total == 0 or min(weights) <= 0:
        return {"p_value": None, "flagged": False}
    expected = [total * w / sum(weights) for w in weights]
    p = float(st.chisquare(list(users), expected).pvalue)
    return {"p_value": p, "flagged": p < SRM_ALPHA}


def decide(
    avp: float, difference: float | None, srm_flagged: bool, enough: bool
) -> tuple[str, str]:
    """What to do now, from the always-valid p-value (safe to ask at every look)."""
    if srm_flagged:
        return "investigate", "sample ratio mismatch: the split is broken, no result is trusted"
    if not enough or difference is None:
        return "continue", "too few outcomes in a variant for an estimate"
    if avp < ALPHA:
        better = "B" if difference > 0 else "A"
        return f"ship_{better.lower()}", f"always-valid p {avp:.4f} < {ALPHA}: {better} is better"
    return "continue", f"always-valid p {avp:.4f} >= {ALPHA}: no difference shown yet"
