"""Two-sample Kolmogorov-Smirnov test.

The largest vertical gap between the two empirical CDFs.  Distribution-free
and sensitive to any difference in location, scale or shape; most sensitive
near the median, least in the tails.  Numerical features only.

The statistic comes from the shared one-pass ECDF kernel; the p-value follows
``scipy.stats.ks_2samp(method="auto")`` exactly: the exact distribution when
both samples have at most 10,000 observations, Smirnov's asymptotic
``kstwo.sf(D, round(n*m/(n+m)))`` otherwise.

>>> import numpy as np
>>> from monitor.engine.stats.samples import NumericSample
>>> ref = NumericSample.from_values(np.arange(100.0))
>>> score = ks_test(ref, NumericSample.from_values(np.arange(100.0) + 50))
>>> round(score.statistic, 2), score.p_value < 1e-6
(0.5, True)
"""

from __future__ import annotations

import math

import numpy as np

from monitor.engine.stats.base import NO_DATA, Score, StatTest, TestKind
from monitor.engine.stats.ecdf import compare
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import NumericSample

# scipy's own switch point between the exact and asymptotic p-value
EXACT_MAX_N = 10_000


def ks_p_value(statistic: float, n_ref: int, n_cur: int) -> float:
    """Two-sided p-value of D for sample sizes (n_ref, n_cur), as scipy computes it."""
    if max(n_ref, n_cur) <= EXACT_MAX_N:
        # the p-value depends only on (D, n, m): scipy's exact two-sample
        # distribution (private) gives it without the data
        return _exact_p_value(statistic, n_ref, n_cur)
    return _asymptotic_p_value(statistic, n_ref, n_cur)


def _exact_p_value(statistic: float, n_ref: int, n_cur: int) -> float:
    from scipy.stats._stats_py import _attempt_exact_2kssamp

    g = math.gcd(n_ref, n_cur)
    ok, _, prob = _attempt_exact_2kssamp(n_ref, n_cur, g, statistic, "two-sided")
    if not ok:  # scipy falls back the same way
        return _asymptotic_p_value(statistic, n_ref, n_cur)
    return float(np.clip(prob, 0.0, 1.0))


def _asymptotic_p_value(statistic: float, n_ref: int, n_cur: int) -> float:
    """Smirnov's ``kstwo.sf(D, round(n*m/(n+m)))``."""
    big, small = max(n_ref, n_cur), min(n_ref, n_cur)
    en = float(np.round(big * small / (big + small)))
    return float(np.clip(_kstwo_sf(statistic, en), 0.0, 1.0))


def _kstwo_sf(d: float, n: float) -> float:
    """``scipy.stats.kstwo.sf(d, n)`` without the distribution machinery's
    per-call overhead: kstwo's support is [0, 1] and its ``_sf`` is
    ``_kolmogn(n, d, cdf=False)``."""
    if d <= 0.0:
        return 1.0
    if d >= 1.0:
        return 0.0
    try:
        from scipy.stats._ksstats import _kolmogn
    except ImportError:  # pragma: no cover - a scipy that moved it
        from scipy import stats

        return float(stats.kstwo.sf(d, n))
    return float(_kolmogn(int(n), d, cdf=False))


def preload() -> None:
    """Import scipy's KS distributions now (scipy.stats costs ~0.5 s to import);
    the CLI calls this in a background thread while it reads the data."""
    import scipy.stats._ksstats  # noqa: F401
    import scipy.stats._stats_py  # noqa: F401


def ks_test(reference: NumericSample, current: NumericSample) -> Score:
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    statistic = compare(reference, current).ks
    return Score(statistic, ks_p_value(statistic, reference.n, current.n))


KS = register(
    StatTest(
        name="ks",
        kind=TestKind.P_VALUE,
        default_threshold=0.05,
        symmetric=True,
        description="two-sample Kolmogorov-Smirnov",
        numerical=ks_test,
    )
)
