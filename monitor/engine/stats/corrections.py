"""Multiple-testing corrections of p-values.

Pure functions over a vector of p-values, one per feature.  NaN p-values
(features with no data) are passed through untouched and not counted among
the ``m`` tests.  Adjusted p-values are capped at 1.

* :func:`bonferroni`: ``min(m * p, 1)``; controls the family-wise error rate.
* :func:`benjamini_hochberg`: the step-up adjusted p-values that control the
  false discovery rate, monotone in ``p`` (as R's ``p.adjust(method="BH")``
  and ``scipy.stats.false_discovery_control(ps, method="bh")``).

>>> bonferroni([0.01, 0.2, float("nan")]).tolist()
[0.02, 0.4, nan]
>>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5]).round(4).tolist()
[0.04, 0.0533, 0.0533, 0.5]
>>> adjust([0.01, 0.04], "none").tolist()
[0.01, 0.04]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from monitor.engine.stats.samples import FloatArray

Method = Literal["none", "bonferroni", "bh"]


def _p_values(p_values: Sequence[float] | ArrayLike) -> FloatArray:
    p = np.array(p_values, dtype=np.float64).reshape(-1)
    known = p[~np.isnan(p)]
    if np.any((known < 0.0) | (known > 1.0)):
        raise ValueError("p-values must lie in [0, 1] (or be NaN)")
    return p


def bonferroni(p_values: Sequence[float] | ArrayLike) -> FloatArray:
    """Bonferroni-adjusted p-values: ``min(m * p, 1)``, ``m`` the non-NaN count."""
    p = _p_values(p_values)
    known = ~np.isnan(p)
    m = int(known.sum())
    p[known] = np.minimum(p[known] * m, 1.0)
    return p


def benjamini_hochberg(p_values: Sequence[float] | ArrayLike) -> FloatArray:
    """Benjamini-Hochberg adjusted p-values (FDR), in input order."""
    p = _p_values(p_values)
    known = np.flatnonzero(~np.isnan(p))
    m = known.size
    if m == 0:
        return p
    order = np.argsort(p[known], kind="stable")
    ranked = p[known][order] * (m / np.arange(1, m + 1, dtype=np.float64))
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    p[known[order]] = np.minimum(ranked, 1.0)
    return p


def adjust(p_values: Sequence[float] | ArrayLike, method: Method) -> FloatArray:
    """Adjust p-values by ``method``: ``"none"``, ``"bonferroni"`` or ``"bh"``."""
    if method == "none":
        return _p_values(p_values)
    if method == "bonferroni":
        return bonferroni(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    raise ValueError(f"unknown correction {method!r}; use 'none', 'bonferroni' or 'bh'")
