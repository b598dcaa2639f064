"""Statistics without torch: intervals and a paired test, for figures the leaderboard reads."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (nan, nan) for n = 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest near 100%,
    where small test sets put most classifiers."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return round((centre - half) / denominator, 6), round((centre + half) / denominator, 6)


# two-sided 95% quantiles of Student's t, by degrees of freedom 1 to 30 (beyond: _t975)
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t: the table, then the Cornish-Fisher expansion around
    the normal's 1.96 (within 1e-4 from 30 degrees of freedom on)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(values, bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any]:
    """Mean, standard deviation and the 95% t-interval of the mean, for figures of repeated runs
    (fractions such as accuracy: the interval is clipped to `bounds`; three seeds of 0.93 to
    0.98 would otherwise reach past 1)."""
    values = np.asarray(list(values), dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    sd = float(values.std(ddof=1)) if n > 1 else float("nan")
    half = _t975(n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    low, high = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return {
        "mean": round(mean, 6),
        "sd": round(sd, 6),
        "interval": [round(low, 6), round(high, 6)],
        "n": n,
        "values": [round(float(v), 6) for v in values],
    }


def mcnemar_p(only_first_right: int, only_second_right: int) -> float:
    """Two-sided exact McNemar p-value: are two classifiers' errors on the same photos different?

    Only the photos where they disagree count; under "no difference" each such photo is a
    fair coin."""
    n = only_first_right + only_second_right
    if n == 0:
        return 1.0
    k = min(only_first_right, only_second_right)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
