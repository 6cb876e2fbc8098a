"""Normed energy distance.

The energy distance between the two empirical distributions,
``sqrt(2 * integral (F_ref - F_cur)^2 dx)``, exactly as
``scipy.stats.energy_distance`` (:func:`energy_distance` returns it raw).

The raw distance has the units of the square root of the data's, so it is
normed by the square root of the reference's population standard deviation
(floored at 0.001, as the Wasserstein norm): ``energy / sqrt(std_ref)``.  The
normed value does not depend on the feature's scale; for a shift of ``d``
reference standard deviations between normal distributions it is about
``d / pi**0.25 = 0.75 d``, so the default threshold 0.1 flags shifts of
roughly 0.13 standard deviations, close to the Wasserstein default.
(Evidently's ``ed`` stattest reports the raw distance against 0.1, which
depends on the feature's units.)

Properties: distance (drift when >= 0.1), numerical features only, not
symmetric (the norm is the reference's).  The distance comes from the shared
one-pass ECDF kernel.

>>> import numpy as np
>>> from monitor.engine.stats.samples import NumericSample
>>> ref, cur = NumericSample.from_values([0.0, 1.0]), NumericSample.from_values([1.0, 2.0])
>>> round(energy_distance(ref, cur), 4)   # sqrt(2 * (0.25 + 0.25))
1.0
>>> round(energy_numerical(ref, cur).statistic, 4)   # 1 / sqrt(0.5)
1.4142
"""

from __future__ import annotations

import math

from monitor.engine.stats.base import NO_DATA, Score
from monitor.engine.stats.distance import distance_test
from monitor.engine.stats.ecdf import compare
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import NumericSample
from monitor.engine.stats.wasserstein import MIN_NORM as MIN_NORM  # the same floor
from monitor.engine.stats.wasserstein import reference_norm


def energy_distance(reference: NumericSample, current: NumericSample) -> float:
    """The raw energy distance (non-empty samples), as ``scipy.stats.energy_distance``."""
    return compare(reference, current).energy


def energy_numerical(reference: NumericSample, current: NumericSample) -> Score:
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    return Score(energy_distance(reference, current) / math.sqrt(reference_norm(reference)))


ENERGY = register(
    distance_test(
        "energy",
        "energy distance normed by the square root of the reference std",
        energy_numerical,
    )
)
