"""Two-proportion z-test.

Compares the share of one category between reference and current with the
pooled-variance two-sided z-test: ``z = (p_ref - p_cur) / sqrt(P (1 - P)
(1/n_ref + 1/n_cur))`` with ``P`` the pooled share, ``p = 2 * (1 - Phi(|z|))``.
``z**2`` is the chi-square statistic of the 2x2 table, so the p-value equals
``chi2_contingency(table, correction=False)``'s.

Properties: p-value test (drift when p < 0.05), categorical features.  Meant
for binary features; with more categories the most frequent reference
category is tested against all the others.  The statistic's sign says which
side has more of that category, and which category is tested depends on the
reference, so the test is not symmetric.  When the pooled share is 0 or 1
(nothing to compare) the result is z = 0, p = 1.  ``two_proportion_z`` is
also used on its own, e.g. for drift in the share of missing values.

>>> import numpy as np
>>> score = two_proportion_z(30, 100, 50, 100)
>>> round(score.statistic, 4), round(score.p_value, 4)
(-2.8868, 0.0039)
>>> z_categorical(np.array([80.0, 20.0]), np.array([80.0, 20.0]))
Score(statistic=0.0, p_value=1.0)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from monitor.engine.stats.base import NO_DATA, CountArray, Score, StatTest, TestKind
from monitor.engine.stats.binning import has_data
from monitor.engine.stats.registry import register


def two_proportion_z(x1: float, n1: float, x2: float, n2: float) -> Score:
    """Two-sided pooled z-test of ``x1 / n1`` against ``x2 / n2``.

    Returns :data:`NO_DATA` when either side has no observations.
    """
    if not (n1 > 0 and n2 > 0) or math.isnan(x1) or math.isnan(x2):
        return NO_DATA
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if not variance > 0:
        return Score(0.0, 1.0)
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    # norm.sf(x) is special.ndtr(-x), minus the per-call overhead
    return Score(float(z), float(min(2.0 * special.ndtr(-abs(z)), 1.0)))


def z_categorical(reference_counts: CountArray, current_counts: CountArray) -> Score:
    """The most frequent reference category against the rest."""
    if not has_data(reference_counts, current_counts):
        return NO_DATA
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    top = int(np.argmax(ref))
    return two_proportion_z(float(ref[top]), float(ref.sum()), float(cur[top]), float(cur.sum()))


Z = register(
    StatTest(
        name="z",
        kind=TestKind.P_VALUE,
        default_threshold=0.05,
        symmetric=False,
        description="two-proportion z-test (most frequent reference category vs rest)",
        categorical=z_categorical,
    )
)
