"""Performance by task: one window (:func:`compute`) or a stream
(:class:`PerformanceAccumulator`, incremental and memory-bounded)."""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike

from monitor.engine.performance.classification import classification_metrics
from monitor.engine.performance.classification_state import _ClassificationState
from monitor.engine.performance.inputs import _check_task, _label_tuple
from monitor.engine.performance.regression import _regression_pred, _RegressionState, regression_metrics
from monitor.engine.performance.results import (
    MULTICLASS,
    REGRESSION,
    ClassificationMetrics,
    Label,
    RegressionMetrics,
)

DEFAULT_AUC_CAP: Final[int] = 100_000


def compute(
    task: str,
    y_true: ArrayLike,
    y_pred: ArrayLike | None = None,
    y_score: ArrayLike | None = None,
    *,
    positive_label: Label | None = None,
    threshold: float = 0.5,
    labels: ArrayLike | None = None,
) -> dict[str, float]:
    """The defined metrics of ``task`` (one of :data:`TASKS`) for one window."""
    _check_task(task)
    if task == REGRESSION:
        return regression_metrics(y_true, _regression_pred(y_pred, y_score)).as_dict()
    return classification_metrics(
        y_true,
        y_pred,
        y_score,
        positive_label=positive_label,
        threshold=threshold,
        labels=labels,
        multiclass=task == MULTICLASS,
    ).as_dict()


class PerformanceAccumulator:
    """Incremental, memory-bounded metrics over a stream of labelled pairs.

    Regression and label metrics (accuracy, precision, recall, F1) keep
    sufficient statistics: running sums, Chan's mean/variance update and a
    confusion table whose size depends on the number of classes only.  Log
    loss is a running sum.  ROC AUC is exact for the first ``auc_cap`` scored
    rows; beyond that it is *estimated* from a uniform reservoir sample of
    ``auc_cap`` rows (Algorithm R; merges draw a hypergeometric split), drawn
    with ``rng`` (a Generator or a seed; default seed 0), and
    :attr:`ClassificationMetrics.estimated` says so.  While under the cap,
    chunked updates and merges give the same metrics as one call of
    :func:`classification_metrics` / :func:`regression_metrics` on all rows.

    A multiclass probability matrix needs ``labels`` (its columns); a
    two-column binary matrix without ``labels`` takes the second column as
    the positive class.
    """

    def __init__(
        self,
        task: str,
        *,
        positive_label: Label | None = None,
        threshold: float = 0.5,
        labels: ArrayLike | None = None,
        auc_cap: int = DEFAULT_AUC_CAP,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        self.task = _check_task(task)
        if int(auc_cap) < 1:
            raise ValueError(f"auc_cap must be at least 1, got {auc_cap}")
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
            0 if rng is None else rng
        )
        self._regression: _RegressionState | None = None
        self._classification: _ClassificationState | None = None
        if task == REGRESSION:
            self._regression = _RegressionState()
        else:
            self._classification = _ClassificationState(
                multiclass=task == MULTICLASS,
                positive_label=positive_label,
                threshold=threshold,
                labels=_label_tuple(labels),
                auc_cap=int(auc_cap),
                rng=generator,
            )

    @property
    def rows(self) -> int:
        """Labelled rows accumulated so far."""
        return self._state.rows

    @property
    def dropped(self) -> int:
        """Rows dropped for a missing target or prediction."""
        return self._state.dropped

    @property
    def _state(self) -> _RegressionState | _ClassificationState:
        state = self._regression or self._classification
        assert state is not None
        return state

    @property
    def auc_sample_size(self) -> int:
        """Rows currently held for ROC AUC (never more than ``auc_cap``)."""
        if self._classification is None:
            return 0
        return int(self._classification.reservoir.ids.shape[0])

    def update(
        self,
        y_true: ArrayLike,
        y_pred: ArrayLike | None = None,
        y_score: ArrayLike | None = None,
    ) -> None:
        """Add a chunk of labelled pairs."""
        if self._regression is not None:
            self._regression.add(y_true, _regression_pred(y_pred, y_score))
            return
        assert self._classification is not None
        self._classification.add(y_true, y_pred, y_score)

    def merge(self, other: PerformanceAccumulator) -> None:
        """Fold ``other`` (left unchanged) into this accumulator."""
        if other.task != self.task:
            raise ValueError(f"cannot merge a {other.task} accumulator into a {self.task} one")
        if self._regression is not None:
            assert other._regression is not None
            self._regression.merge(other._regression)
            return
        assert self._classification is not None and other._classification is not None
        self._classification.merge(other._classification)

    def metrics(self) -> ClassificationMetrics | RegressionMetrics:
        """Metrics with their undefined reasons."""
        if self._regression is not None:
            return self._regression.metrics()
        assert self._classification is not None
        return self._classification.metrics()

    def result(self, task: str | None = None) -> dict[str, float]:
        """The defined metrics; ``task``, if given, must be the accumulator's."""
        if task is not None and _check_task(task) != self.task:
            raise ValueError(f"this accumulator computes {self.task}, not {task}")
        return self.metrics().as_dict()
