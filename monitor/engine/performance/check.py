"""Model performance in a batch check: metrics over labelled rows, compared
with the config's bounds.  Pure: arrays in, a frozen result out.

A bound is broken when a metric falls below its ``min`` or rises above its
``max``; a metric that cannot be computed on the data (one class only, labels
without scores) is reported as undefined with the reason, never as broken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.engine.performance import (
    REGRESSION,
    classification_metrics,
    regression_metrics,
)


@dataclass(frozen=True)
class Bound:
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class PerformancePlan:
    """Which columns hold the target and the prediction, and the bounds."""

    target: str
    task: str  # binary_classification | multiclass_classification | regression
    prediction: str
    prediction_type: str  # numerical (scores / values) or categorical (labels)
    bounds: Mapping[str, Bound] = field(default_factory=dict)


@dataclass(frozen=True)
class PerformanceResult:
    rows: int  # labelled rows used
    dropped: int  # rows without a target or a prediction
    metrics: Mapping[str, float]
    undefined: Mapping[str, str]
    violations: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "dropped": self.dropped, "metrics": dict(self.metrics),
                "undefined": dict(self.undefined), "violations": list(self.violations)}


def evaluate(plan: PerformancePlan, y_true: NDArray[Any], y_pred: NDArray[Any]) -> PerformanceResult:
    """Metrics of one batch and the bounds they break."""
    result: Any
    if plan.task == REGRESSION:
        result = regression_metrics(y_true, y_pred)
    elif plan.prediction_type == "numerical":
        result = classification_metrics(y_true, y_score=y_pred,
                                         multiclass=plan.task != "binary_classification")
    else:
        result = classification_metrics(y_true, y_pred,
                                         multiclass=plan.task != "binary_classification")
    metrics = result.as_dict()
    violations = []
    for name, bound in plan.bounds.items():
        value = metrics.get(name)
        if value is None or np.isnan(value):
            continue
        if bound.min is not None and value < bound.min:
            violations.append({"metric": name, "value": value, "min": bound.min})
        elif bound.max is not None and value > bound.max:
            violations.append({"metric": name, "value": value, "max": bound.max})
    return PerformanceResult(rows=int(result.rows), dropped=int(result.dropped), metrics=metrics,
                             undefined=dict(result.undefined), violations=tuple(violations))
