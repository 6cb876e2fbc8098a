"""Classification metrics of one window, from arrays.

:func:`classification_metrics` checks the inputs, decides binary or macro
averaging and aligns probability columns with the classes, then lets a
:class:`~monitor.engine.performance.classification_state._ClassificationState`
count every row (no sampling).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from monitor.engine.performance.classification_state import _ClassificationState
from monitor.engine.performance.inputs import (
    _classification_inputs,
    _factorize,
    _label_tuple,
    _missing_rows,
    _sorted_labels,
)
from monitor.engine.performance.results import (
    ClassificationMetrics,
    Label,
    _empty_classification,
    _undefined_classification,
)


def classification_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike | None = None,
    y_score: ArrayLike | None = None,
    *,
    positive_label: Label | None = None,
    threshold: float = 0.5,
    labels: ArrayLike | None = None,
    multiclass: bool | None = None,
) -> ClassificationMetrics:
    """Classification metrics of one window of labelled predictions.

    ``y_pred`` are predicted labels, ``y_score`` binary positive-class scores
    (one per row) or a ``(rows, classes)`` probability matrix; at least one is
    needed.  ``labels`` fixes the class set (and the probability columns).
    ``multiclass`` forces macro (True) or binary (False) averaging; by default
    it is macro for a matrix of more than two columns or, without scores, when
    there are more than two classes.
    """
    true, pred, score = _classification_inputs(y_true, y_pred, y_score)
    label_tuple = _label_tuple(labels)
    keep = ~_missing_rows(true, pred, score)
    observed = _observed_classes(true[keep], None if pred is None else pred[keep])

    if multiclass is None:
        if score is not None:
            multiclass = score.ndim == 2 and score.shape[1] > 2
        else:
            multiclass = len(label_tuple if label_tuple is not None else observed) > 2
    if multiclass and score is not None and score.ndim == 1:
        raise ValueError("multiclass y_score must be a (rows, classes) probability matrix")

    state_labels = label_tuple
    misaligned = None
    if multiclass and score is not None and label_tuple is None:
        if len(observed) == score.shape[1]:
            state_labels = tuple(observed)
        else:
            misaligned = (
                f"y_score has {score.shape[1]} columns but the window has {len(observed)} "
                "classes; pass labels to align the probability columns"
            )
    state = _ClassificationState(
        multiclass=multiclass,
        positive_label=positive_label,
        threshold=threshold,
        labels=state_labels,
        auc_cap=None,
        rng=np.random.default_rng(0),
    )
    if misaligned is None:
        state.add(true, pred, score)
        return state.metrics()

    # Unalignable probability columns: the scores say nothing usable.
    dropped = int((~keep).sum())
    if pred is not None:
        state.add(true[keep], pred[keep], None)
        result = state.metrics()
        if result.rows == 0:
            return _empty_classification(dropped, "macro")
        # no scores went in, so roc_auc and log_loss are None already; say why
        undefined = {**result.undefined, "roc_auc": misaligned, "log_loss": misaligned}
        return replace(result, dropped=dropped, undefined=undefined)
    rows = int(keep.sum())
    if rows == 0:
        return _empty_classification(dropped, "macro")
    return _undefined_classification(rows, dropped, misaligned, "macro")


def _observed_classes(true: NDArray[Any], pred: NDArray[Any] | None) -> list[Label]:
    seen: dict[Label, None] = dict.fromkeys(_factorize(true)[0])
    if pred is not None:
        seen.update(dict.fromkeys(_factorize(pred)[0]))
    return _sorted_labels(list(seen))
