"""Chan's parallel update of a mean and a sum of squared deviations.

Two parts of a sample, each summarised by its count, mean and ``m2`` (the sum
of squared deviations from its mean), combine into the summary of the whole
without another pass over the data (Chan, Golub and LeVeque, 1979), so
chunked updates and merges of accumulators agree with one pass up to
rounding.  Both the profile accumulators (:mod:`monitor.engine.profiles`) and the
regression metrics (:mod:`monitor.engine.performance.regression`) use it.

>>> merge_moments(2, 1.0, 2.0, 2, 5.0, 2.0)   # [0, 2] and [4, 6]
(4, 3.0, 20.0)
"""

from __future__ import annotations


def merge_moments(
    count: int, mean: float, m2: float, other_count: int, other_mean: float, other_m2: float
) -> tuple[int, float, float]:
    """``(count, mean, m2)`` of two parts together; ``count + other_count`` must be positive."""
    total = count + other_count
    delta = other_mean - mean
    return (
        total,
        mean + delta * other_count / total,
        m2 + (other_m2 + delta * delta * count * other_count / total),
    )
