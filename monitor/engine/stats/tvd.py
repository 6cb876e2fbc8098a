"""Total variation distance.

``TVD = 0.5 * sum(|r_i - c_i|)`` over the reference and current shares: the
largest difference in probability the two distributions give any event.

Evidently 0.7.23's ``TVD`` stattest is different: a permutation test (1,000
shuffles, fixed seed) that reports a p-value of this distance, categorical
features only.  This module is the pure distance, a distance test.  For
categorical data it equals Evidently's ``_total_variation_distance`` helper
(one bin per category).  Numerical features are binned as the other Evidently
distances bin them (see :mod:`monitor.engine.stats.binning`, no zero filling); the
tests check them against an independent numpy formula.

Properties: distance in [0, 1] (drift when >= 0.1, Evidently's default
threshold for ``TVD``), categorical and numerical features.  The formula is
symmetric but the numerical binning choice looks at the reference only:
registered as not symmetric.

>>> import numpy as np
>>> tvd_categorical(np.array([50.0, 50.0]), np.array([25.0, 75.0])).statistic
0.25
"""

from __future__ import annotations

import numpy as np

from monitor.engine.stats.binning import share_scores
from monitor.engine.stats.distance import distance_test
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import FloatArray


def total_variation(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    return float(0.5 * np.sum(np.abs(reference_shares - current_shares)))


tvd_numerical, tvd_categorical = share_scores(total_variation)

TVD = register(
    distance_test(
        "tvd", "total variation distance (Evidently binning)", tvd_numerical, tvd_categorical
    )
)
