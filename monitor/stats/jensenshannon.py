"""Jensen-Shannon distance.

The square root of the Jensen-Shannon divergence (natural logarithm) between
the binned reference and current distributions, as
``scipy.spatial.distance.jensenshannon``.  Binning is Evidently 0.7.23's
(see :mod:`monitor.stats.binning`), without zero filling, so the numbers
equal Evidently's ``jensenshannon`` stattest.

Properties: distance in [0, sqrt(ln 2)] (drift when >= 0.1, Evidently's
default), categorical and numerical features.  The formula is symmetric but
the histogram-or-per-value binning choice looks at the reference only:
registered as not symmetric.

>>> import numpy as np
>>> score = jensenshannon_categorical(np.array([50.0, 50.0]), np.array([25.0, 75.0]))
>>> round(score.statistic, 4)
0.1839
"""

from __future__ import annotations

from scipy.spatial import distance

from monitor.stats.base import NO_DATA, CountArray, Score, StatTest, TestKind
from monitor.stats.binning import category_shares, has_data, numeric_shares
from monitor.stats.registry import register
from monitor.stats.samples import FloatArray, NumericSample


def js_distance(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    return float(distance.jensenshannon(reference_shares, current_shares))


def jensenshannon_numerical(reference: NumericSample, current: NumericSample) -> Score:
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    return Score(js_distance(*numeric_shares(reference, current)))


def jensenshannon_categorical(reference_counts: CountArray, current_counts: CountArray) -> Score:
    if not has_data(reference_counts, current_counts):
        return NO_DATA
    return Score(js_distance(*category_shares(reference_counts, current_counts)))


JENSENSHANNON = register(
    StatTest(
        name="jensenshannon",
        kind=TestKind.DISTANCE,
        default_threshold=0.1,
        symmetric=False,
        description="Jensen-Shannon distance (Evidently binning)",
        numerical=jensenshannon_numerical,
        categorical=jensenshannon_categorical,
    )
)
