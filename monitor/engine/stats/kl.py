"""Kullback-Leibler divergence KL(reference || current).

``sum(r_i * ln(r_i / c_i))`` over the binned shares, as Evidently 0.7.23's
``kl_div`` stattest computes it: Evidently's binning and zero filling (see
:mod:`monitor.engine.stats.binning`), then ``scipy.stats.entropy(ref, cur)``, which
renormalises both filled vectors to sum to one.

Properties: divergence, not a metric (drift when >= 0.1, Evidently's
default), not symmetric, categorical and numerical features.

>>> import numpy as np
>>> score = kl_categorical(np.array([50.0, 50.0]), np.array([25.0, 75.0]))
>>> round(score.statistic, 4)
0.1438
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

from monitor.engine.stats.binning import fill_zeroes, share_scores
from monitor.engine.stats.distance import distance_test
from monitor.engine.stats.registry import register
from monitor.engine.stats.samples import FloatArray


def kl_divergence(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    """KL divergence of two share vectors after Evidently's zero filling.

    The arithmetic of ``scipy.stats.entropy(p, q)`` (normalise both, sum
    ``rel_entr``) without importing scipy.stats.
    """
    p = fill_zeroes(reference_shares)
    q = fill_zeroes(current_shares)
    with np.errstate(invalid="ignore"):
        q = q / np.sum(q)
        p = p / np.sum(p)
    return float(np.sum(rel_entr(p, q)))


kl_numerical, kl_categorical = share_scores(kl_divergence)

KL_DIV = register(
    distance_test(
        "kl_div",
        "Kullback-Leibler divergence of reference from current (Evidently binning)",
        kl_numerical,
        kl_categorical,
    )
)
