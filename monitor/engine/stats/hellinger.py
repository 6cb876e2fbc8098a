"""Hellinger distance.

``H = sqrt(1 - BC)`` with ``BC`` the Bhattacharyya coefficient of the two
distributions, computed as Evidently 0.7.23's ``hellinger`` stattest does,
which bins differently from its other distances:

* categorical: ``BC = sum(sqrt(r_i * c_i))`` over the category shares;
* numerical: always a histogram (never per-value bins), with Sturges' rule
  applied to the *distinct* pooled values (their count and range), density
  histograms ``h`` of each side, and ``BC = sum(sqrt(h_ref * h_cur)) * w``
  with ``w`` the mean bin width.  No zero filling.

``BC`` is clipped to [0, 1] before the square root.

Properties: distance in [0, 1] (drift when >= 0.1, Evidently's default),
symmetric, categorical and numerical features.

>>> import numpy as np
>>> score = hellinger_categorical(np.array([50.0, 50.0]), np.array([25.0, 75.0]))
>>> round(score.statistic, 4)
0.1846
"""

from __future__ import annotations

import math

import numpy as np

from monitor.engine.stats.base import NO_DATA, CountArray, Score, StatTest, TestKind
from monitor.engine.stats.binning import category_shares, has_data, histogram, sturges_edges
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import NumericSample, pool


def _from_coefficient(coefficient: float) -> float:
    return math.sqrt(1.0 - float(np.clip(coefficient, 0.0, 1.0)))


def hellinger_numerical(reference: NumericSample, current: NumericSample) -> Score:
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    keys = pool(reference, current).values
    edges = sturges_edges(keys[0], keys[-1], keys.size)
    ref_counts, cur_counts = histogram(reference, edges), histogram(current, edges)
    with np.errstate(all="ignore"):  # ranges near the float limits
        widths = np.diff(edges)
        ref_density = ref_counts / widths / ref_counts.sum()
        cur_density = cur_counts / widths / cur_counts.sum()
        bin_width = (edges[-1] - edges[0]) / (edges.size - 1)
        coefficient = float(np.sum(np.sqrt(ref_density * cur_density) * bin_width))
    if not math.isfinite(coefficient):
        # The bins have (almost) equal widths, so density times width is the
        # share: the same coefficient without dividing by widths that
        # overflow or underflow.
        ref_share, cur_share = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
        coefficient = float(np.sum(np.sqrt(ref_share * cur_share)))
    return Score(_from_coefficient(coefficient))


def hellinger_categorical(reference_counts: CountArray, current_counts: CountArray) -> Score:
    if not has_data(reference_counts, current_counts):
        return NO_DATA
    ref, cur = category_shares(reference_counts, current_counts)
    return Score(_from_coefficient(float(np.sum(np.sqrt(ref * cur)))))


HELLINGER = register(
    StatTest(
        name="hellinger",
        kind=TestKind.DISTANCE,
        default_threshold=0.1,
        symmetric=True,
        description="Hellinger distance (Evidently binning)",
        numerical=hellinger_numerical,
        categorical=hellinger_categorical,
    )
)
