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
    p, _ = _msprt(
        np.array([len(a)]), np.array([a.sum()]), np.array([(a * a).sum()]),
        np.array([len(b)]), np.array([b.sum()]), np.array([(b * b).sum()]), tau,
    )  # fmt: skip
    return float(p[0])


def _msprt(
    na: Any, sa: Any, qa: Any, nb: Any, sb: Any, qb: Any, tau: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Vectorised over looks, from counts, sums and sums of squares per arm: (1 / Lambda
    capped at 1, the difference of means). A look with fewer than 2 outcomes in an arm or no
    variance is p = 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ma, mb = sa / na, sb / nb
        va = (qa - sa * ma) / (na - 1)
        vb = (qb - sb * mb) / (nb - 1)
        v = va / na + vb / nb
        theta = mb - ma
        log_lambda = 0.5 * np.log(v / (v + tau**2)) + tau**2 * theta**2 / (2 * v * (v + tau**2))
        p = np.minimum(1.0, np.exp(-log_lambda))
    ok = (na >= 2) & (nb >= 2) & np.isfinite(p) & (v > 0)
    return np.where(ok, p, 1.0), np.where(ok, theta, 0.0)


def always_valid_p(
    values: np.ndarray[Any, Any], is_b: np.ndarray[Any, Any], tau: float, step: int = 50
) -> tuple[float, list[tuple[int, float]], float | None]:
    """The smallest mSPRT p-value over the looks at every `step` outcomes (in arrival order),
    the curve of looks (outcomes so far, p), and the difference B - A at the first look where
    p fell below ALPHA (None if it never did): the winner is the one that led when the test
    stopped, not the one that leads now. Linear in the outcomes (running sums per arm)."""
    n = len(values)
    if n == 0:
        return 1.0, [], None
    looks = np.array([*range(step, n, step), n]) - 1
    vb, va = np.where(is_b, values, 0.0), np.where(is_b, 0.0, values)
    nb, na = np.cumsum(is_b)[looks], np.cumsum(~is_b)[looks]
    p, theta = _msprt(
        na, np.cumsum(va)[looks], np.cumsum(va * va)[looks],
        nb, np.cumsum(vb)[looks], np.cumsum(vb * vb)[looks], tau,
    )  # fmt: skip
    running = np.minimum.accumulate(p)
    curve = [(int(k) + 1, float(x)) for k, x in zip(looks, running, strict=True)]
    crossed = np.flatnonzero(p < ALPHA)
    crossing = float(theta[crossed[0]]) if len(crossed) else None
    return float(running[-1]), curve, crossing


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
    """What to do now, from the always-valid p-value (safe to ask at every look);
    `difference` is B - A where the test stopped (always_valid_p's third value)."""
    if srm_flagged:
        return "investigate", "sample ratio mismatch: the split is broken, no result is trusted"
    if not enough or difference is None:
        return "continue", "too few outcomes in a variant for an estimate"
    if avp < ALPHA:
        better = "B" if difference > 0 else "A"
        return f"ship_{better.lower()}", f"always-valid p {avp:.4f} < {ALPHA}: {better} is better"
    return "continue", f"always-valid p {avp:.4f} >= {ALPHA}: no difference shown yet"
