"""Evidently-compatible binning shared by the histogram-based distances.

Evidently 0.7.23 (``evidently/legacy/calculations/stattests/utils.py``,
``get_binned_data``) turns two columns into two vectors of shares:

* numerical, reference with more than 20 distinct values: Sturges' rule over
  the concatenated data (``np.histogram_bin_edges(concat, bins="sturges")``),
  then each side's histogram divided by its length;
* otherwise (categorical, or numerical with at most 20 distinct reference
  values): one bin per distinct value of either side;
* optionally every zero share is replaced by a small epsilon (``feel_zeroes``).

Here the same shares come from our representations: a :class:`NumericSample`
(exact values, or a quantile grid whose values each stand for ``weight``
observations) or a categorical count vector.  Sturges' rule counts
observations (``n``), not grid points, so a sketch gets the bins the raw data
would have had.

>>> import numpy as np
>>> from monitor.engine.stats.samples import NumericSample
>>> ref, cur = category_shares(np.array([2.0, 0.0, 2.0]), np.array([1.0, 0.0, 3.0]))
>>> ref.tolist(), cur.tolist()
([0.5, 0.5], [0.25, 0.75])
>>> fill_zeroes(np.array([0.5, 0.0, 0.5])).tolist()
[0.5, 0.0001, 0.5]
>>> sturges_edges(0.0, 10.0, 100).size - 1   # ceil(log2(100) + 1) bins
8

:func:`share_scores` turns one distance between two share vectors (PSI, KL,
Jensen-Shannon, TVD) into a test's numerical and categorical score functions,
both binning as above and giving no result when a side is empty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from monitor.engine.stats.base import NO_DATA, CategoricalFn, CountArray, NumericalFn, Score
from monitor.engine.stats.samples import FloatArray, NumericSample, pool

# Evidently switches from per-value bins to a histogram above this many
# distinct reference values.
MAX_DISCRETE_VALUES = 20


def sturges_edges(low: float, high: float, count: int) -> FloatArray:
    """Bin edges as ``np.histogram_bin_edges(data, bins="sturges")`` computes them.

    ``low`` and ``high`` are the data's minimum and maximum and ``count`` the
    number of observations.  Where numpy would raise (a range too narrow for
    the bins, or one that overflows) a single bin over the range is used.
    """
    lo, hi = np.float64(low), np.float64(high)
    first, last = lo, hi
    if first == last:
        first, last = first - 0.5, last + 0.5
    with np.errstate(all="ignore"):
        ptp = hi - lo
        width = ptp / (np.log2(count) + 1.0) if count > 0 else np.float64(0.0)
        bins = int(np.ceil((last - first) / width)) if width and np.isfinite(width) else 1
        edges = np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)
    if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(edges[:-1] >= edges[1:]):
        return np.array([first, last], dtype=np.float64)
    return edges


def histogram(sample: NumericSample, edges: FloatArray) -> FloatArray:
    """Observations of ``sample`` in each bin (last bin closed), as ``np.histogram``."""
    weights = None if sample.exact else np.full(sample.size, sample.weight)
    counts, _ = np.histogram(sample.values, bins=edges, weights=weights)
    return np.asarray(counts, dtype=np.float64)


def numeric_shares(
    reference: NumericSample, current: NumericSample
) -> tuple[FloatArray, FloatArray]:
    """Each side's share per bin, as ``get_binned_data(..., feel_zeroes=False)``.

    Both samples must be non-empty.
    """
    if reference.distinct[0].size > MAX_DISCRETE_VALUES:
        low = min(reference.values[0], current.values[0])
        high = max(reference.values[-1], current.values[-1])
        edges = sturges_edges(low, high, reference.n + current.n)
        return histogram(reference, edges) / reference.n, histogram(current, edges) / current.n
    pooled = pool(reference, current)
    return pooled.ref / reference.n, pooled.cur / current.n


def category_shares(
    reference_counts: FloatArray, current_counts: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Shares over the categories seen on either side (both sides must be non-empty).

    Categories absent from both sides are dropped, as Evidently only bins the
    values it sees.
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    seen = (ref + cur) > 0
    ref, cur = ref[seen], cur[seen]
    return ref / ref.sum(), cur / cur.sum()


def has_data(reference_counts: FloatArray, current_counts: FloatArray) -> bool:
    """Whether both count vectors are aligned and hold at least one observation."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    return (
        ref.shape == cur.shape
        and ref.size > 0
        and bool(np.nansum(ref) > 0)
        and bool(np.nansum(cur) > 0)
    )


def fill_zeroes(shares: FloatArray) -> FloatArray:
    """Evidently's ``feel_zeroes``: zero shares become a small epsilon.

    The epsilon is ``min(non-zero share) / 1e6`` when that minimum is at most
    1e-4, and 1e-4 otherwise.  The shares are not renormalised afterwards.
    """
    out = np.array(shares, dtype=np.float64)
    nonzero = out[out != 0]
    if nonzero.size == 0:
        return out
    smallest = float(nonzero.min())
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


ShareDistance = Callable[[FloatArray, FloatArray], float]


def share_scores(distance: ShareDistance) -> tuple[NumericalFn, CategoricalFn]:
    """The numerical and categorical score functions of ``distance`` between
    the reference and current shares: :func:`numeric_shares` of two samples,
    :func:`category_shares` of two count vectors; ``NO_DATA`` when a side is
    empty."""

    def numerical(reference: NumericSample, current: NumericSample) -> Score:
        if reference.size == 0 or current.size == 0:
            return NO_DATA
        return Score(distance(*numeric_shares(reference, current)))

    def categorical(reference_counts: CountArray, current_counts: CountArray) -> Score:
        if not has_data(reference_counts, current_counts):
            return NO_DATA
        return Score(distance(*category_shares(reference_counts, current_counts)))

    return numerical, categorical
