"""Chi-square test of homogeneity.

Tests whether reference and current share one categorical distribution, on
the 2xK contingency table of their counts.  Pearson's statistic without
Yates' continuity correction, ``K - 1`` degrees of freedom: the same numbers
as ``scipy.stats.chi2_contingency(table, correction=False)``.  Categories
absent from both sides are dropped first (scipy refuses zero expected
counts); a single remaining category gives statistic 0 and p-value 1.

Properties: p-value test (drift when p < 0.05), symmetric, categorical and
discrete numerical features.  A numerical feature is treated as categorical,
one category per distinct pooled value (meant for low-cardinality features:
on continuous data every value is its own category and the test has no
power).  Evidently's ``chisquare`` is a goodness-of-fit test of current
against reference-scaled frequencies; this is the homogeneity test.

>>> import numpy as np
>>> score = chisquare_categorical(np.array([50.0, 30.0, 20.0]), np.array([20.0, 30.0, 50.0]))
>>> round(score.statistic, 4), score.p_value < 1e-4
(25.7143, True)
"""

from __future__ import annotations

import numpy as np
from scipy import special

from monitor.engine.stats.base import NO_DATA, CountArray, Score, StatTest, TestKind
from monitor.engine.stats.binning import has_data
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import NumericSample, pool


def chi2_homogeneity(reference_counts: CountArray, current_counts: CountArray) -> Score:
    """Pearson's chi-square on the 2xK table, as ``chi2_contingency(correction=False)``."""
    if not has_data(reference_counts, current_counts):
        return NO_DATA
    table = np.vstack(
        [np.asarray(reference_counts, dtype=np.float64), np.asarray(current_counts, np.float64)]
    )
    table = table[:, table.sum(axis=0) > 0]
    dof = table.shape[1] - 1
    if dof == 0:
        return Score(0.0, 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    # chi2.sf(x, dof) is special.chdtrc(dof, x), minus the per-call overhead
    return Score(statistic, float(special.chdtrc(dof, statistic)))


def chisquare_categorical(reference_counts: CountArray, current_counts: CountArray) -> Score:
    return chi2_homogeneity(reference_counts, current_counts)


def chisquare_numerical(reference: NumericSample, current: NumericSample) -> Score:
    """Each distinct pooled value is a category."""
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    pooled = pool(reference, current)
    return chi2_homogeneity(pooled.ref, pooled.cur)


CHISQUARE = register(
    StatTest(
        name="chisquare",
        kind=TestKind.P_VALUE,
        default_threshold=0.05,
        symmetric=True,
        description="chi-square test of homogeneity (2xK table, no continuity correction)",
        numerical=chisquare_numerical,
        categorical=chisquare_categorical,
    )
)
