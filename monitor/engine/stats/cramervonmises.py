"""Two-sample Cramér-von Mises test.

The integrated squared difference between the two empirical CDFs, weighted
by the pooled distribution: Anderson's (1962) ``T`` from the samples' ranks
in the pooled data, with midranks for ties.  The p-value follows
``scipy.stats.cramervonmises_2samp(method="auto")`` exactly: the exact null
distribution when both samples have at most 20 observations, otherwise the
limiting distribution of the normalised statistic.

The rank sums are computed in closed form per distinct pooled value (a run of
``a`` tied reference values at midrank ``R`` contributes
``sum_t (R - A - t)^2``, ``t = 1..a``), so ties and quantile-sketch samples
cost one pass over the pooled support.

Properties: p-value test (drift when p < 0.05; Evidently's
``cramer_von_mises`` defaults to 0.1), symmetric, numerical features only.
Needs at least two observations on each side (fewer give no result, where
scipy warns and returns NaN).

>>> import numpy as np
>>> from monitor.engine.stats.samples import NumericSample
>>> def cvm(shift, n):
...     ref = NumericSample.from_values(np.arange(float(n)))
...     return cramervonmises_test(ref, NumericSample.from_values(np.arange(float(n)) + shift))
>>> round(cvm(5, 10).statistic, 4), round(cvm(5, 10).p_value, 4)   # exact p-value
(0.8375, 0.0048)
>>> round(cvm(30, 100).statistic, 4), cvm(30, 100).p_value < 1e-4   # asymptotic
(3.6002, True)
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, kv

from monitor.engine.stats.base import NO_DATA, Score, StatTest, TestKind
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import FloatArray, NumericSample, pool

# scipy's switch point between the exact and asymptotic p-value
EXACT_MAX_N = 20
_PI_POW_1_5: float = math.pi**1.5


def cramervonmises_test(reference: NumericSample, current: NumericSample) -> Score:
    nx, ny = reference.n, current.n
    if reference.size == 0 or current.size == 0 or nx < 2 or ny < 2:
        return NO_DATA
    pooled = pool(reference, current)
    ties = pooled.ref + pooled.cur
    midrank = np.cumsum(ties) - ties + (ties + 1.0) / 2.0
    u = nx * _squared_rank_gaps(pooled.ref, midrank) + ny * _squared_rank_gaps(pooled.cur, midrank)
    k, total = nx * ny, nx + ny
    t = u / (k * total) - (4 * k - 1) / (6 * total)
    if max(nx, ny) <= EXACT_MAX_N:
        p = _exact_p_value(u, nx, ny)
    else:
        p = _asymptotic_p_value(t, total, nx, ny, k)
    return Score(float(t), p)


def _squared_rank_gaps(weights: FloatArray, midrank: FloatArray) -> float:
    """``sum_i (r(x_(i)) - i)^2`` over one side's sorted values, ties at midranks.

    At a value with ``a`` observations of this side, ``A`` of them below it
    and pooled midrank ``R``, the terms are ``(R - A - t)^2`` for
    ``t = 1..a``: ``a * (R - A - (a + 1) / 2)^2 + a * (a^2 - 1) / 12``.
    """
    below = np.cumsum(weights) - weights
    centre = midrank - below - (weights + 1.0) / 2.0
    return float(np.sum(weights * centre * centre + weights * (weights * weights - 1.0) / 12.0))


def _exact_p_value(u: float, nx: int, ny: int) -> float:
    # scipy's exact null distribution (Xiao, Gordon and Yakovlev 2006) is
    # private; it depends only on (U, nx, ny).
    from scipy.stats._hypotests import _pval_cvm_2samp_exact

    return float(_pval_cvm_2samp_exact(np.asarray(u), nx, ny))


def _asymptotic_p_value(t: float, total: int, nx: int, ny: int, k: int) -> float:
    """Anderson (1962) eq. 11, 14 and 15, then the limiting one-sample cdf."""
    et = (1 + 1 / total) / 6
    vt = (total + 1) * (4 * k * total - 3 * (nx**2 + ny**2) - 2 * k) / (45 * total**2 * 4 * k)
    tn = 1 / 6 + (t - et) / math.sqrt(45 * vt)
    if tn < 0.003:  # the cdf is below 1.3e-18 there
        return 1.0
    return max(1.0 - _cdf_cvm_inf(tn), 0.0)


def _cdf_cvm_inf(x: float) -> float:
    """CDF of the Cramér-von Mises statistic for infinite samples.

    Csörgő and Faraway (1996), eq. 1.2, summed until a term is below 1e-7,
    as ``scipy.stats._hypotests._cdf_cvm_inf``.
    """
    total = 0.0
    k = 0
    while True:
        u = math.exp(float(gammaln(k + 0.5) - gammaln(k + 1))) / (_PI_POW_1_5 * math.sqrt(x))
        y = 4 * k + 1
        q = y**2 / (16 * x)
        term = u * math.sqrt(y) * math.exp(-q) * float(kv(0.25, q))
        total += term
        if abs(term) < 1e-7:
            return total
        k += 1


CRAMERVONMISES = register(
    StatTest(
        name="cramervonmises",
        kind=TestKind.P_VALUE,
        default_threshold=0.05,
        symmetric=True,
        description="two-sample Cramér-von Mises test",
        numerical=cramervonmises_test,
    )
)
