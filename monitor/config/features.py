"""What a model monitors.

Its input features (:class:`FeatureSpec`), its prediction and target columns
(:class:`PredictionSpec`, :class:`TargetSpec`) and performance thresholds by
metric (:class:`PerformanceSpec`), with the checks that a test fits the data
type and a threshold fits the test's kind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import Field

from monitor.config.durations import _is_number
from monitor.config.fields import (
    _NON_NEGATIVE_METRICS,
    _UNIT_INTERVAL_METRICS,
    FEATURE_TYPES,
    FeatureTypeField,
    NonEmptyStr,
    PositiveInt,
    PredictionTypeField,
    StrictFloat,
    TaskField,
    TestName,
)
from monitor.config.strict import Loc, _Strict
from monitor.engine import stats
from monitor.engine.stats import TestKind


def _test_checks(raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    """Checks shared by features and predictions: test vs type, threshold range."""
    kind, test, threshold = raw.get("type"), raw.get("test"), raw.get("threshold")
    stat = stats.get(test) if isinstance(test, str) and test in stats.names() else None
    if stat is not None and kind in FEATURE_TYPES:
        numerical = kind == "numerical"
        if not (stat.supports_numerical if numerical else stat.supports_categorical):
            fits = [
                name
                for name in stats.names()
                if (
                    stats.get(name).supports_numerical
                    if numerical
                    else stats.get(name).supports_categorical
                )
            ]
            yield (
                ("test",),
                (
                    f"test {test!r} does not support {kind} data; "
                    f"tests that do: {', '.join(fits) or 'none registered'}"
                ),
            )
    if threshold is not None and test is None:
        yield (
            ("threshold",),
            (
                "threshold needs an explicit 'test': the automatically chosen test, and so what "
                "the threshold means, depends on the data"
            ),
        )
    if stat is not None and _is_number(threshold):
        if stat.kind is TestKind.P_VALUE and not 0 < threshold < 1:
            yield (
                ("threshold",),
                (
                    f"{test!r} is a p-value test: threshold must be between 0 and 1 (exclusive); "
                    f"got {threshold}"
                ),
            )
        elif stat.kind is TestKind.DISTANCE and not threshold > 0:
            yield (
                ("threshold",),
                (f"{test!r} is a distance test: threshold must be positive; got {threshold}"),
            )


class FeatureSpec(_Strict):
    """One monitored input feature.  ``test`` is chosen automatically when
    omitted; ``threshold`` then needs an explicit test.  ``boolean`` features
    are tested as categorical."""

    type: FeatureTypeField = Field(
        description="The feature's data type; boolean features are tested as categorical.")
    test: TestName | None = Field(
        default=None, description="Drift test by name: a registered test that supports the feature's type; "
        "unset: chosen from the data (see \"Automatic test choice\").")
    threshold: StrictFloat | None = Field(
        default=None, description="What the test is compared against: a p-value (0 to 1) for p-value tests, "
        "a distance (above 0) for distance tests; needs an explicit test; unset: alpha, or the "
        "distance test's default.")
    max_categories: PositiveInt | None = Field(
        default=None, description="Categories kept for this feature (categorical features only); "
        "unset: the profile's max_categories.")

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        yield from _test_checks(raw)
        if raw.get("max_categories") is not None and raw.get("type") in ("numerical", "boolean"):
            yield ("max_categories",), "max_categories applies to categorical features only"

    @property
    def categorical(self) -> bool:
        return self.type != "numerical"


class PredictionSpec(_Strict):
    """The model's output column, monitored for drift like a feature."""

    name: NonEmptyStr = Field(
        description="The prediction's name among the events' outputs (and the reference's column).")
    type: PredictionTypeField = Field(
        description="The prediction's data type; a regression model's is numerical.")
    test: TestName | None = Field(
        default=None,
        description="Drift test by name: a registered test that supports the prediction's type; "
        "unset: chosen from the data (see \"Automatic test choice\").")
    threshold: StrictFloat | None = Field(
        default=None, description="What the test is compared against: a p-value (0 to 1) for p-value tests, "
        "a distance (above 0) for distance tests; needs an explicit test; unset: alpha, or the "
        "distance test's default.")

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        yield from _test_checks(raw)

    @property
    def categorical(self) -> bool:
        return self.type != "numerical"


class TargetSpec(_Strict):
    """The ground-truth label column (arriving on the labels topic) and the task."""

    name: NonEmptyStr = Field(
        description="The label's name in label events (and the reference's column).")
    task: TaskField = Field(description="The model's task, which decides the metrics that fit it.")

    @property
    def classification(self) -> bool:
        return self.task != "regression"


class MetricBounds(_Strict):
    """A performance metric's acceptable range; at least one of min / max."""

    min: StrictFloat | None = Field(
        default=None, description="Lowest acceptable value; below it DriftlinePerformanceBelowMin fires.")
    max: StrictFloat | None = Field(
        default=None, description="Highest acceptable value (error metrics such as mae); above it "
        "DriftlinePerformanceBelowMin fires.")

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        low, high = raw.get("min"), raw.get("max")
        if low is None and high is None:
            yield (), "give 'min' and/or 'max'"
        elif _is_number(low) and _is_number(high) and low > high:
            yield ("max",), f"max ({high}) is below min ({low})"

    def violated(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        )


class PerformanceSpec(_Strict):
    """Performance thresholds by metric name."""

    accuracy: MetricBounds | None = Field(
        default=None, description="Bounds of the accuracy (classification, 0 to 1).")
    precision: MetricBounds | None = Field(
        default=None, description="Bounds of the precision (classification, 0 to 1).")
    recall: MetricBounds | None = Field(
        default=None, description="Bounds of the recall (classification, 0 to 1).")
    f1: MetricBounds | None = Field(
        default=None, description="Bounds of the F1 score (classification, 0 to 1).")
    roc_auc: MetricBounds | None = Field(
        default=None, description="Bounds of the ROC AUC (classification, 0 to 1).")
    log_loss: MetricBounds | None = Field(
        default=None, description="Bounds of the log loss (classification, at least 0).")
    mae: MetricBounds | None = Field(
        default=None, description="Bounds of the mean absolute error (regression, at least 0).")
    rmse: MetricBounds | None = Field(
        default=None, description="Bounds of the root mean squared error (regression, at least 0).")
    mape: MetricBounds | None = Field(
        default=None, description="Bounds of the mean absolute percentage error (regression, at least 0).")
    r2: MetricBounds | None = Field(
        default=None, description="Bounds of the coefficient of determination R² (regression, at most 1).")

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        if not raw:
            yield (), "give at least one metric: " + ", ".join(cls.allowed_keys())
        for metric, bounds in raw.items():
            if not isinstance(bounds, Mapping):
                continue
            for side in ("min", "max"):
                value = bounds.get(side)
                if not _is_number(value):
                    continue
                if metric in _UNIT_INTERVAL_METRICS and not 0 <= value <= 1:
                    yield (metric, side), f"{metric} lies between 0 and 1; got {value}"
                elif metric in _NON_NEGATIVE_METRICS and value < 0:
                    yield (metric, side), f"{metric} is never negative; got {value}"
                elif metric == "r2" and value > 1:
                    yield (metric, side), f"r2 is at most 1; got {value}"

    def metrics(self) -> dict[str, MetricBounds]:
        """The configured metrics, in declaration order."""
        return {
            name: bounds
            for name in type(self).model_fields
            if (bounds := getattr(self, name)) is not None
        }
