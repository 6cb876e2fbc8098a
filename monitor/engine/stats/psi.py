"""Population Stability Index.

``PSI = sum((r_i - c_i) * ln(r_i / c_i))`` over the bins' reference and
current shares, computed exactly as Evidently 0.7.23's ``psi`` stattest:
its binning (Sturges histogram over both samples when the reference has more
than 20 distinct values, else one bin per value; one bin per category) and
its zero filling (see :mod:`monitor.engine.stats.binning`).

Properties: distance (drift when PSI >= 0.1, Evidently's default),
categorical and numerical features.  The formula is symmetric, but the
histogram-or-per-value choice looks at the reference only, so swapping the
samples can change the bins: registered as not symmetric.

>>> import numpy as np
>>> score = psi_categorical(np.array([50.0, 50.0]), np.array([25.0, 75.0]))
>>> round(score.statistic, 4)
0.2747
"""

from __future__ import annotations

import numpy as np

from monitor.engine.stats.binning import fill_zeroes, share_scores
from monitor.engine.stats.distance import distance_test
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import FloatArray


def psi(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    """PSI of two share vectors after Evidently's zero filling."""
    ref, cur = fill_zeroes(reference_shares), fill_zeroes(current_shares)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


psi_numerical, psi_categorical = share_scores(psi)

PSI = register(
    distance_test(
        "psi", "population stability index (Evidently binning)", psi_numerical, psi_categorical
    )
)
