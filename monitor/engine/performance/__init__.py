"""Model performance over a window of labelled predictions.

Pure functions from numpy arrays to frozen dataclasses, plus a bounded
:class:`PerformanceAccumulator` for the streaming service.  Every metric is
defined to agree with :mod:`sklearn.metrics` (which is only used by the tests,
never imported here):

* classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (binary for
  the positive label; macro average over classes for multiclass), ``roc_auc``
  (binary from positive-class scores, tie-aware Mann-Whitney, equal to
  ``roc_auc_score``; multiclass one-vs-rest macro from a probability matrix)
  and ``log_loss`` (probabilities clipped to ``[eps, 1 - eps]`` with
  ``eps = np.finfo(float64).eps`` as in ``sklearn.metrics.log_loss``);
* regression: ``mae``, ``rmse``, ``mape`` (zero targets divided by ``eps`` like
  ``mean_absolute_percentage_error``) and ``r2`` (``r2_score`` with
  ``force_finite=True``: perfect predictions give 1.0, a constant target with
  imperfect predictions gives 0.0).

Data problems never raise: rows whose target or prediction is missing (None or
NaN; non-finite values for regression) are dropped and counted in
``dropped``; a metric that cannot be computed is ``None`` and its reason is in
``undefined`` (e.g. ``"single class in window"``, ``"no labelled rows"``).
Where sklearn would warn and return 0.0 for a zero division (precision with no
positive predictions, ...), the metric is ``None`` instead, which is what
sklearn returns as NaN with ``zero_division=np.nan``; macro averages skip the
classes whose value is undefined, again as sklearn does with
``zero_division=np.nan``.  ``ValueError`` is raised only for programming
errors: mismatched lengths, wrong shapes, unknown tasks, inconsistent options.

Scores and labels
-----------------
``y_pred`` holds predicted labels; ``y_score`` holds scores.  Binary scores are
one float per row, the score (probability, for log loss) of the positive
class; labels are derived as ``score >= threshold`` when ``y_pred`` is not
given.  A two-column binary probability matrix is reduced to the positive
column (columns follow ``labels``; without ``labels`` the second column is the
positive class, sklearn's convention).  Multiclass scores are a
``(rows, classes)`` probability matrix whose columns follow ``labels`` (or the
sorted classes of the window when ``labels`` is not given and their number
matches the columns); labels are derived by arg-max.

The positive label defaults to 1 (``True`` for booleans) when every class is
0/1, otherwise to the largest label; pass ``positive_label`` explicitly for
string labels, since a window that holds only one class cannot tell which one
is positive.  With a one-dimensional score and more than two classes in the
window, the binary metrics are one-vs-rest for the positive label.

Multiclass ROC AUC averages the classes that have both positive and negative
rows in the window (sklearn refuses such windows); log loss is undefined when
a target is not among the probability columns.

Modules: :mod:`~monitor.engine.performance.results` (names, reasons, result types),
:mod:`~monitor.engine.performance.inputs` (array checks, missing rows, labels),
:mod:`~monitor.engine.performance.classification` and
:mod:`~monitor.engine.performance.classification_state` (its sufficient
statistics), :mod:`~monitor.engine.performance.auc` (Mann-Whitney AUC, reservoir),
:mod:`~monitor.engine.performance.regression`, :mod:`~monitor.engine.performance.accumulator`
(:func:`compute` by task, streaming).
"""

from __future__ import annotations

from monitor.engine.performance.accumulator import DEFAULT_AUC_CAP, PerformanceAccumulator, compute
from monitor.engine.performance.classification import classification_metrics
from monitor.engine.performance.inputs import BoolArray, FloatArray, IntArray
from monitor.engine.performance.regression import regression_metrics
from monitor.engine.performance.results import (
    BINARY,
    CLASSIFICATION_METRICS,
    EPS,
    MULTICLASS,
    NEEDS_PROBABILITIES,
    NEEDS_SCORES,
    NO_ROWS,
    NOT_PROBABILITIES,
    REGRESSION,
    REGRESSION_METRICS,
    SINGLE_CLASS,
    TASKS,
    UNKNOWN_TARGET,
    ClassificationMetrics,
    Label,
    RegressionMetrics,
)

__all__ = [
    "BINARY",
    "CLASSIFICATION_METRICS",
    "DEFAULT_AUC_CAP",
    "EPS",
    "MULTICLASS",
    "NEEDS_PROBABILITIES",
    "NEEDS_SCORES",
    "NOT_PROBABILITIES",
    "NO_ROWS",
    "REGRESSION",
    "REGRESSION_METRICS",
    "SINGLE_CLASS",
    "TASKS",
    "UNKNOWN_TARGET",
    "BoolArray",
    "ClassificationMetrics",
    "FloatArray",
    "IntArray",
    "Label",
    "PerformanceAccumulator",
    "RegressionMetrics",
    "classification_metrics",
    "compute",
    "regression_metrics",
]
