"""Samples as the statistical tests see them.

A numerical sample is an ascending array of finite values, each standing for
``n / len(values)`` observations.  For an exact sample that weight is one and
the array is the data itself, duplicates included.  For a sample summarised by
a quantile sketch the array is an evenly spaced quantile grid and ``n`` stays
the number of observations it summarises, which is what p-values use.

Tests that need the two samples side by side use :class:`Pooled`: the sorted
union of distinct values with each side's weight at every value.  The fast
path for the default tests (KS, Wasserstein, energy) skips pooling entirely
and walks both sorted arrays once (see :mod:`monitor.engine.stats.ecdf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class NumericSample:
    """Ascending finite values standing for ``n`` observations."""

    values: FloatArray
    n: int
    exact: bool = True

    @classmethod
    def from_values(cls, data: NDArray[np.floating] | list[float]) -> NumericSample:
        """An exact sample of the finite values of ``data`` (NaN and inf dropped)."""
        arr = np.asarray(data, dtype=np.float64)
        finite = np.isfinite(arr)
        if not finite.all():
            arr = arr[finite]
        ordered = np.sort(arr)
        return cls(ordered, int(ordered.size), True)

    @classmethod
    def from_grid(cls, grid: FloatArray, n: int) -> NumericSample:
        """A quantile grid standing for ``n`` observations (a sketch's summary)."""
        ordered = np.sort(np.asarray(grid, dtype=np.float64))
        if ordered.size == 0 or n == 0:
            return cls.empty()
        return cls(ordered, int(n), exact=False)

    @classmethod
    def empty(cls) -> NumericSample:
        return cls(np.empty(0), 0, True)

    @property
    def size(self) -> int:
        """Number of values held (equal to ``n`` for an exact sample)."""
        return int(self.values.size)

    @property
    def weight(self) -> float:
        """Observations each held value stands for."""
        return self.n / self.values.size if self.values.size else 0.0

    @cached_property
    def distinct_count(self) -> int:
        """Number of distinct values (the values are sorted: count the steps)."""
        values = self.values
        return int(np.count_nonzero(values[1:] != values[:-1])) + 1 if values.size else 0

    @cached_property
    def distinct(self) -> tuple[FloatArray, FloatArray]:
        """Distinct values and the observations at each (weights sum to ``n``)."""
        values, counts = np.unique(self.values, return_counts=True)
        return values, counts.astype(np.float64) * self.weight

    def mean(self) -> float:
        return float(self.values.mean()) if self.size else float("nan")

    def std(self) -> float:
        """Population standard deviation (ddof=0), as ``np.std``."""
        return float(self.values.std()) if self.size else float("nan")


@dataclass(frozen=True, eq=False)
class Pooled:
    """Two samples on the sorted union of their distinct values.

    ``ref`` and ``cur`` are each side's weight (observations) at every value,
    zero where the value does not occur on that side.
    """

    values: FloatArray
    ref: FloatArray
    cur: FloatArray
    n_ref: int
    n_cur: int
    exact: bool

    @property
    def ref_cdf(self) -> FloatArray:
        """Reference ECDF at each pooled value (right-continuous)."""
        out: FloatArray = np.cumsum(self.ref) / self.ref.sum()
        return out

    @property
    def cur_cdf(self) -> FloatArray:
        out: FloatArray = np.cumsum(self.cur) / self.cur.sum()
        return out

    def swapped(self) -> Pooled:
        return Pooled(self.values, self.cur, self.ref, self.n_cur, self.n_ref, self.exact)


def pool(reference: NumericSample, current: NumericSample) -> Pooled:
    """Both samples on their common sorted support."""
    if reference.size == 0 or current.size == 0:
        raise ValueError("cannot pool an empty sample")
    values, ref, cur = union_weights(reference, current)
    return Pooled(values, ref, cur, reference.n, current.n, reference.exact and current.exact)


def union_weights(
    reference: NumericSample, current: NumericSample
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The sorted union of both samples' distinct values and each side's weight
    at every value (zero where absent); either sample may be empty."""
    ref_values, ref_w = reference.distinct
    cur_values, cur_w = current.distinct
    values = np.union1d(ref_values, cur_values)
    ref = np.zeros(values.size)
    cur = np.zeros(values.size)
    ref[np.searchsorted(values, ref_values)] = ref_w
    cur[np.searchsorted(values, cur_values)] = cur_w
    return values, ref, cur
