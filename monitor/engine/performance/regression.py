"""Regression metrics: MAE, RMSE, MAPE and R².

:class:`_RegressionState` keeps running sums and the target's moments, so
chunks and merges give the numbers of one pass; :func:`regression_metrics`
is one window from arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from monitor.engine.moments import merge_moments
from monitor.engine.performance.inputs import _as_float_1d, _check_length
from monitor.engine.performance.results import EPS, NO_ROWS, REGRESSION_METRICS, RegressionMetrics


class _RegressionState:
    """Running sums for MAE, RMSE and MAPE; Chan's parallel update of the
    target's mean and sum of squared deviations for R²; the target's range to
    recognise a constant target exactly."""

    def __init__(self) -> None:
        self.rows = 0
        self.dropped = 0
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.sum_ape = 0.0
        self.mean = 0.0
        self.m2 = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        true = _as_float_1d("y_true", y_true)
        pred = _as_float_1d("y_pred", y_pred)
        _check_length("y_pred", pred, true.shape[0])
        keep = np.isfinite(true) & np.isfinite(pred)
        self.dropped += int((~keep).sum())
        true, pred = true[keep], pred[keep]
        if true.size == 0:
            return
        error = np.abs(pred - true)
        chunk = _RegressionState()
        chunk.rows = int(true.size)
        chunk.sum_abs = float(error.sum())
        chunk.sum_sq = float(np.sum((true - pred) ** 2))
        chunk.sum_ape = float((error / np.maximum(np.abs(true), EPS)).sum())
        chunk.mean = float(np.mean(true))
        chunk.m2 = float(np.sum((true - chunk.mean) ** 2))
        chunk.low = float(true.min())
        chunk.high = float(true.max())
        self.merge(chunk)

    def merge(self, other: _RegressionState) -> None:
        self.dropped += other.dropped
        if other.rows == 0:
            return
        if self.rows == 0:
            dropped = self.dropped
            self.__dict__.update(other.__dict__)
            self.dropped = dropped
            return
        self.rows, self.mean, self.m2 = merge_moments(
            self.rows, self.mean, self.m2, other.rows, other.mean, other.m2
        )
        self.sum_abs += other.sum_abs
        self.sum_sq += other.sum_sq
        self.sum_ape += other.sum_ape
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)

    def metrics(self) -> RegressionMetrics:
        if self.rows == 0:
            return RegressionMetrics(
                mae=None,
                rmse=None,
                mape=None,
                r2=None,
                rows=0,
                dropped=self.dropped,
                undefined=dict.fromkeys(REGRESSION_METRICS, NO_ROWS),
            )
        undefined: dict[str, str] = {}
        r2: float | None
        if self.rows < 2:
            r2 = None
            undefined["r2"] = "fewer than two rows"
        else:
            # sklearn r2_score(force_finite=True); a constant target has no variance.
            denominator = 0.0 if self.low == self.high else self.m2
            if self.sum_sq == 0.0:
                r2 = 1.0
            elif denominator == 0.0:
                r2 = 0.0
            else:
                r2 = 1.0 - self.sum_sq / denominator
        return RegressionMetrics(
            mae=self.sum_abs / self.rows,
            rmse=math.sqrt(self.sum_sq / self.rows),
            mape=self.sum_ape / self.rows,
            r2=r2,
            rows=self.rows,
            dropped=self.dropped,
            undefined=undefined,
        )


def _regression_pred(y_pred: ArrayLike | None, y_score: ArrayLike | None) -> ArrayLike:
    """``y_pred``, checked: regression needs predictions, and takes no scores."""
    if y_pred is None:
        raise ValueError("regression needs y_pred")
    if y_score is not None:
        raise ValueError("regression takes y_pred only, not y_score")
    return y_pred


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> RegressionMetrics:
    """Regression metrics of one window; rows with a missing or non-finite
    target or prediction are dropped."""
    state = _RegressionState()
    state.add(y_true, y_pred)
    return state.metrics()
