"""Jensen-Shannon distance.

The square root of the Jensen-Shannon divergence (natural logarithm) between
the binned reference and current distributions, as
``scipy.spatial.distance.jensenshannon``.  Binning is Evidently 0.7.23's
(see :mod:`monitor.engine.stats.binning`), without zero filling, so the numbers
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

import numpy as np
from scipy.special import rel_entr

from monitor.engine.stats.binning import share_scores
from monitor.engine.stats.distance import distance_test
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import FloatArray


def js_distance(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    """``scipy.spatial.distance.jensenshannon`` (natural log), computed the
    same way, without importing scipy.spatial."""
    p = reference_shares / np.sum(reference_shares)
    q = current_shares / np.sum(current_shares)
    m = (p + q) / 2.0
    return float(np.sqrt((np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / 2.0))


jensenshannon_numerical, jensenshannon_categorical = share_scores(js_distance)

JENSENSHANNON = register(
    distance_test(
        "jensenshannon",
        "Jensen-Shannon distance (Evidently binning)",
        jensenshannon_numerical,
        jensenshannon_categorical,
    )
)
