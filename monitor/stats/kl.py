"""Kullback-Leibler divergence KL(reference || current).

``sum(r_i * ln(r_i / c_i))`` over the binned shares, as Evidently 0.7.23's
``kl_div`` stattest computes it: Evidently's binning and zero filling (see
:mod:`monitor.stats.binning`), then ``scipy.stats.entropy(ref, cur)``, which
renormalises both filled vectors to sum to one.

Properties: divergence, not a metric (drift when >= 0.1, Evidently's
default), not symmetric, categorical and numerical features.

>>> import numpy as np
>>> score = kl_categorical(np.array([50.0, 50.0]), np.array([25.0, 75.0]))
>>> round(score.statistic, 4)
0.1438
"""

from __future__ import annotations

from scipy import stats

from monitor.stats.base import NO_DATA, CountArray, Score, StatTest, TestKind
from monitor.stats.binning import category_shares, fill_zeroes, has_data, numeric_shares
from monitor.stats.registry import register
from monitor.stats.samples import FloatArray, NumericSample


def kl_divergence(reference_shares: FloatArray, current_shares: FloatArray) -> float:
    """KL divergence of two share vectors after Evidently's zero filling."""
    return float(stats.entropy(fill_zeroes(reference_shares), fill_zeroes(current_shares)))


def kl_numerical(reference: NumericSample, current: NumericSample) -> Score:
    if reference.size == 0 or current.size == 0:
        return NO_DATA
    return Score(kl_divergence(*numeric_shares(reference, current)))


def kl_categorical(reference_counts: CountArray, current_counts: CountArray) -> Score:
    if not has_data(reference_counts, current_counts):
        return NO_DATA
    return Score(kl_divergence(*category_shares(reference_counts, current_counts)))


KL_DIV = register(
    StatTest(
        name="kl_div",
        kind=TestKind.DISTANCE,
        default_threshold=0.1,
        symmetric=False,
        description="Kullback-Leibler divergence of reference from current (Evidently binning)",
        numerical=kl_numerical,
        categorical=kl_categorical,
    )
)
