"""What comes out of a performance window.

The task and metric names, ``EPS`` (sklearn's clip for probabilities and
zero targets), the reasons a metric can be undefined (the ``undefined``
values), and the frozen results :class:`ClassificationMetrics` and
:class:`RegressionMetrics`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

Label = Hashable

EPS: Final[float] = float(np.finfo(np.float64).eps)

BINARY: Final[str] = "binary_classification"
MULTICLASS: Final[str] = "multiclass_classification"
REGRESSION: Final[str] = "regression"
TASKS: Final[tuple[str, ...]] = (BINARY, MULTICLASS, REGRESSION)

CLASSIFICATION_METRICS: Final[tuple[str, ...]] = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS: Final[tuple[str, ...]] = ("mae", "rmse", "mape", "r2")

NO_ROWS: Final[str] = "no labelled rows"
SINGLE_CLASS: Final[str] = "single class in window"
NEEDS_SCORES: Final[str] = "needs scores; predictions are labels only"
NEEDS_PROBABILITIES: Final[str] = "needs probability scores; predictions are labels only"
NOT_PROBABILITIES: Final[str] = "scores outside [0, 1] are not probabilities"
UNKNOWN_TARGET: Final[str] = "target labels outside the probability columns"


@dataclass(frozen=True)
class ClassificationMetrics:
    """Classification performance of one window.

    ``average`` is ``"binary"`` (metrics for ``positive_label``) or ``"macro"``.
    ``estimated`` names metrics computed from a sample rather than every row
    (ROC AUC of an accumulator past its cap).
    """

    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None
    log_loss: float | None
    rows: int
    dropped: int = 0
    undefined: dict[str, str] = field(default_factory=dict)
    average: str = "binary"
    positive_label: Label | None = None
    estimated: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, float]:
        """The defined metrics by name."""
        return _defined(self, CLASSIFICATION_METRICS)


@dataclass(frozen=True)
class RegressionMetrics:
    """Regression performance of one window."""

    mae: float | None
    rmse: float | None
    mape: float | None
    r2: float | None
    rows: int
    dropped: int = 0
    undefined: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """The defined metrics by name."""
        return _defined(self, REGRESSION_METRICS)


def _defined(
    result: ClassificationMetrics | RegressionMetrics, names: Sequence[str]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        value = getattr(result, name)
        if value is not None:
            out[name] = float(value)
    return out


def _undefined_classification(rows: int, dropped: int, reason: str, average: str) -> ClassificationMetrics:
    """A window of ``rows`` rows where no metric could be computed, for ``reason``."""
    return ClassificationMetrics(
        accuracy=None,
        precision=None,
        recall=None,
        f1=None,
        roc_auc=None,
        log_loss=None,
        rows=rows,
        dropped=dropped,
        undefined=dict.fromkeys(CLASSIFICATION_METRICS, reason),
        average=average,
    )


def _empty_classification(dropped: int, average: str) -> ClassificationMetrics:
    return _undefined_classification(0, dropped, NO_ROWS, average)
