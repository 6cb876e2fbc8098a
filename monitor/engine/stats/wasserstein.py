"""Normed Wasserstein distance.

The 1-Wasserstein (earth mover's) distance between the two empirical
distributions, ``integral |F_ref - F_cur| dx`` (as
``scipy.stats.wasserstein_distance``), divided by the reference's population
standard deviation floored at 0.001.  This is Evidently 0.7.23's
``wasserstein`` stattest: the normed value reads as "the mean moved by that
many reference standard deviations" for a pure shift.

Properties: distance (drift when >= 0.1, Evidently's default), numerical
features only, not symmetric (the norm is the reference's).  The distance
comes from the shared one-pass ECDF kernel; the norm (:func:`reference_norm`)
is shared with :mod:`monitor.engine.stats.energy`.

>>> import numpy as np
>>> from monitor.engine.stats.samples import NumericSample
>>> ref = NumericSample.from_values(np.arange(100.0))
>>> score = wasserstein_numerical(ref, NumericSample.from_values(np.arange(100.0) + 5))
>>> round(score.statistic, 4)   # 5 / std(0..99) = 5 / 28.866
0.1732
"""

from __future__ import annotations

import numpy as np

from monitor.engine.stats.base import NO_DATA, Score
from monitor.engine.stats.distance import distance_test
from monitor.engine.stats.ecdf import compare
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import NumericSample

# Evidently's floor on the reference standard deviation
MIN_NORM = 0.001


def wasserstein_distance(reference: NumericSample, current: NumericSample) -> float:
    """The raw 1-Wasserstein distance (non-empty samples)."""
    return compare(reference, current).l1


def reference_norm(reference: NumericSample) -> float:
    """The reference's population standard deviation floored at :data:`MIN_NORM`."""
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limits
        return max(reference.std(), MIN_NORM)


def wasserstein_numerical(reference: NumericSample, current: NumericSample) -> Score:
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    return Score(wasserstein_distance(reference, current) / reference_norm(reference))


WASSERSTEIN = register(
    distance_test(
        "wasserstein",
        "1-Wasserstein distance normed by the reference standard deviation",
        wasserstein_numerical,
    )
)
