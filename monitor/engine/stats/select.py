"""Automatic choice of test, and the effect size that says whether a
significant difference is big enough to matter.

The rule, and why (measured in benchmarks/README.md, detection quality):

=====================  ==============================  ===================
feature                test (p-value)                  effect size (floor)
=====================  ==============================  ===================
numerical, > 10        ``ks`` two-sample KS            normed Wasserstein
distinct values                                        (0.1 by default)
numerical, <= 10       ``chisquare`` on the values     total variation
distinct values                                        (0.05)
categorical / boolean  ``z`` two-proportion            total variation
with 2 categories                                      (0.05)
categorical, > 2       ``chisquare``, categories       total variation
categories             expected < 5 pooled             (0.05)
=====================  ==============================  ===================

The same p-value tests are used at every sample size.  Evidently switches to
distance thresholds above 1000 rows because p-value tests flag tiny,
harmless shifts in big windows; here the materiality floor on the effect size
does that job, while the p-value (corrected across features) keeps the
false-alarm rate at ``alpha`` in small windows, where a fixed distance
threshold alarms on noise.  KS is exact for windows up to 10,000 rows.
Discrete numerical features go to chi-square because KS loses power and is
very conservative when most values are ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from monitor.engine.stats import tvd

#: numerical features with at most this many distinct reference values are discrete
DISCRETE_MAX_DISTINCT = 10
#: chi-square needs expected counts of at least this much per cell
MIN_EXPECTED = 5.0

NUMERICAL_EFFECT = "wasserstein"  # normed by the reference standard deviation
CATEGORICAL_EFFECT = "tvd"


@dataclass(frozen=True)
class Choice:
    test: str
    effect: str  # name of the effect-size measure used for materiality
    reason: str


def choose(feature_type: str, *, reference_distinct: int) -> Choice:
    """The default test for a feature, given its reference profile."""
    if feature_type == "numerical":
        if reference_distinct <= DISCRETE_MAX_DISTINCT:
            return Choice("chisquare", CATEGORICAL_EFFECT,
                          f"numerical with {reference_distinct} distinct values: chi-square")
        return Choice("ks", NUMERICAL_EFFECT, "numerical: Kolmogorov-Smirnov")
    if reference_distinct <= 2:
        return Choice("z", CATEGORICAL_EFFECT, "two categories: two-proportion z-test")
    return Choice("chisquare", CATEGORICAL_EFFECT,
                  f"{reference_distinct} categories: chi-square, rare ones pooled")


def pool_rare(
    reference: NDArray[np.float64], current: NDArray[np.float64], min_expected: float = MIN_EXPECTED
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Merge categories too rare for chi-square into one bucket.

    A category is rare when its expected count in the smaller sample, under
    the pooled proportions, is below ``min_expected``.  If the merged bucket
    is itself still rare it joins the smallest remaining category.
    """
    total_ref, total_cur = reference.sum(), current.sum()
    if total_ref == 0 or total_cur == 0:
        return reference, current
    pooled_share = (reference + current) / (total_ref + total_cur)
    expected = pooled_share * min(total_ref, total_cur)
    rare = expected < min_expected
    if rare.sum() <= 1 and not (rare.sum() == 1 and (~rare).sum() >= 2):
        return reference, current
    keep_ref, keep_cur = reference[~rare], current[~rare]
    bucket_ref, bucket_cur = reference[rare].sum(), current[rare].sum()
    if keep_ref.size == 0:
        return np.array([bucket_ref]), np.array([bucket_cur])
    bucket_expected = (bucket_ref + bucket_cur) / (total_ref + total_cur) * min(total_ref, total_cur)
    if bucket_expected < min_expected and keep_ref.size >= 2:
        smallest = int(np.argmin(keep_ref + keep_cur))
        keep_ref = keep_ref.copy()
        keep_cur = keep_cur.copy()
        keep_ref[smallest] += bucket_ref
        keep_cur[smallest] += bucket_cur
        return keep_ref, keep_cur
    return np.append(keep_ref, bucket_ref), np.append(keep_cur, bucket_cur)


def total_variation(reference: NDArray[np.float64], current: NDArray[np.float64]) -> float:
    """Half the L1 distance between the two category distributions."""
    a, b = reference.sum(), current.sum()
    if a == 0 or b == 0:
        return float("nan")
    return tvd.total_variation(reference / a, current / b)
