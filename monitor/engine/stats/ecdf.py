"""Distances between two empirical CDFs in one linear pass.

``compare(reference, current)`` returns the largest gaps between the two
ECDFs in each direction and the integrals of ``|F - G|`` and ``(F - G)^2``.
Those four numbers give the two-sample Kolmogorov-Smirnov statistic, the
1-Wasserstein distance and the energy distance exactly as scipy defines them.

The work is done by a small C kernel (``_ecdf.c``) that merges the two sorted
arrays; where the kernel is not built, a numpy implementation over the pooled
support gives the same numbers (tests run both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.engine.stats.samples import NumericSample, pool

try:
    from monitor.engine.stats import _ecdf  # type: ignore[attr-defined]

    HAVE_KERNEL = True
except ImportError:  # pragma: no cover - depends on the build
    HAVE_KERNEL = False


@dataclass(frozen=True)
class EcdfGap:
    """How far apart the reference CDF F and the current CDF G are."""

    ref_above: float  # sup(F - G)
    cur_above: float  # sup(G - F)
    l1: float  # integral of |F - G| dx: the 1-Wasserstein distance
    l2_squared: float  # integral of (F - G)^2 dx

    @property
    def ks(self) -> float:
        return max(self.ref_above, self.cur_above)

    @property
    def energy(self) -> float:
        """Energy distance as scipy defines it: sqrt(2 * integral (F-G)^2)."""
        return float(np.sqrt(2.0 * self.l2_squared))


def _unit_or_uniform(sample: NumericSample) -> np.ndarray:
    if sample.exact:
        return np.empty(0)
    return np.full(sample.size, sample.weight)


def compare(reference: NumericSample, current: NumericSample, *, use_kernel: bool = True) -> EcdfGap:
    """The gap between the ECDFs of two non-empty samples."""
    if reference.size == 0 or current.size == 0:
        raise ValueError("cannot compare an empty sample")
    if use_kernel and HAVE_KERNEL:
        a, b, c, d = _ecdf.compare(
            reference.values, _unit_or_uniform(reference), current.values, _unit_or_uniform(current)
        )
        return EcdfGap(a, b, c, d)
    return _compare_numpy(reference, current)


def _compare_numpy(reference: NumericSample, current: NumericSample) -> EcdfGap:
    pooled = pool(reference, current)
    gap = pooled.ref_cdf - pooled.cur_cdf
    widths = np.diff(pooled.values)
    inner = gap[:-1]
    return EcdfGap(
        ref_above=float(max(gap.max(), 0.0)),
        cur_above=float(max((-gap).max(), 0.0)),
        l1=float(np.sum(np.abs(inner) * widths)),
        l2_squared=float(np.sum(inner * inner * widths)),
    )
