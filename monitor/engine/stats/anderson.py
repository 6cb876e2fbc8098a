"""Anderson-Darling k-sample test, for two samples.

Scholz and Stephens' (1987) midrank statistic, applicable to continuous and
discrete data, standardised, with the p-value interpolated from their table
of critical values: the same numbers as ``scipy.stats.anderson_ksamp([ref,
cur])`` (``variant="midrank"``, the default).  Like scipy, the p-value is
capped to [0.001, 0.25], the range of the table; unlike scipy, capping is
silent (no warning).

Compared with KS it weighs the tails more.  The statistic is computed in one
pass over the pooled distinct values and each side's count at every value
(:func:`monitor.engine.stats.samples.pool`), so quantile-sketch samples work too.

Properties: p-value test (drift when p < 0.05; Evidently's ``anderson``
defaults to 0.1), symmetric, numerical features only.  Needs at least four
observations in all (fewer give no result); when all values are equal there
is nothing to test: NaN statistic, p-value 1.

>>> import numpy as np
>>> from monitor.engine.stats.samples import NumericSample
>>> ref = NumericSample.from_values(np.arange(100.0))
>>> score = anderson_test(ref, NumericSample.from_values(np.arange(100.0) + 10))
>>> round(score.statistic, 3), round(score.p_value, 4)
(3.363, 0.0141)
>>> anderson_test(ref, NumericSample.from_values(np.arange(100.0) + 30)).p_value  # floored
0.001
"""

from __future__ import annotations

import math

import numpy as np

from monitor.engine.stats.base import NO_DATA, Score, StatTest, TestKind
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import NumericSample, pool

# Table 2 of Scholz and Stephens (1987), as in scipy
_B0 = np.array([0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085])
_B1 = np.array([-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615])
_B2 = np.array([-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154])
_SIGNIFICANCE = np.array([0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001])
_K = 2  # number of samples


def anderson_test(reference: NumericSample, current: NumericSample) -> Score:
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    sizes = np.array([reference.n, current.n])
    total = int(sizes.sum())
    if total < 4:
        return NO_DATA
    pooled = pool(reference, current)
    if pooled.values.size < 2:
        return Score(float("nan"), 1.0)
    statistic = _standardised(_a2akn(pooled.ref, pooled.cur, sizes, total), sizes, total)
    return Score(statistic, _p_value(statistic))


def _a2akn(ref: np.ndarray, cur: np.ndarray, sizes: np.ndarray, total: int) -> float:
    """Equation 7 of Scholz and Stephens from per-value weights."""
    ties = ref + cur
    below = np.cumsum(ties) - ties
    midrank = below + ties / 2.0
    a2akn = 0.0
    for weights, n_i in zip((ref, cur), sizes, strict=True):
        m_ij = np.cumsum(weights) - weights / 2.0
        inner = (
            ties
            / float(total)
            * (total * m_ij - midrank * n_i) ** 2
            / (midrank * (total - midrank) - total * ties / 4.0)
        )
        a2akn += float(inner.sum()) / float(n_i)
    return a2akn * (total - 1.0) / total


def _standardised(a2akn: float, sizes: np.ndarray, total: int) -> float:
    """Scholz and Stephens' standardisation, term for term as scipy writes it."""
    k, n = _K, total
    h_sum = float((1.0 / sizes).sum())
    hs_cs = (1.0 / np.arange(n - 1, 1, -1)).cumsum()
    h = hs_cs[-1] + 1
    g = (hs_cs / np.arange(2, n)).sum()
    a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * h_sum
    b = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * h_sum - 8 * h + 4 * g - 6
    c = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * h_sum + 4 * h
    d = (2 * h + 6) * k**2 - 4 * h * k
    sigmasq = (a * n**3 + b * n**2 + c * n + d) / ((n - 1.0) * (n - 2.0) * (n - 3.0))
    m = k - 1
    return float((a2akn - m) / math.sqrt(sigmasq))


def _p_value(statistic: float) -> float:
    m = _K - 1
    critical = _B0 + _B1 / math.sqrt(m) + _B2 / m
    if statistic < critical.min():
        return float(_SIGNIFICANCE.max())
    if statistic > critical.max():
        return float(_SIGNIFICANCE.min())
    fit = np.polyfit(critical, np.log(_SIGNIFICANCE), 2)
    return math.exp(float(np.polyval(fit, statistic)))


ANDERSON = register(
    StatTest(
        name="anderson",
        kind=TestKind.P_VALUE,
        default_threshold=0.05,
        symmetric=True,
        description="Anderson-Darling k-sample test (midrank, two samples)",
        numerical=anderson_test,
    )
)
