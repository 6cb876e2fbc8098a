"""Checking and cleaning the arrays a performance window is given.

Shapes and lengths (``ValueError`` for programming errors), missing rows
(None, NaN, NaT; any NaN in a probability-matrix row), labels turned into
integer codes, the sorted class list and the default positive label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from monitor.engine.performance.results import TASKS, Label

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


def _as_1d(name: str, values: ArrayLike, dtype: type[np.float64] | None = None) -> NDArray[Any]:
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _as_float_1d(name: str, values: ArrayLike) -> FloatArray:
    return _as_1d(name, values, np.float64)


def _as_scores(values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(
            "y_score must be one score per row or a (rows, classes) probability matrix, "
            f"got shape {arr.shape}"
        )
    return arr


def _check_length(name: str, arr: NDArray[Any], rows: int) -> None:
    if arr.shape[0] != rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but y_true has {rows}")


def _classification_inputs(
    y_true: ArrayLike, y_pred: ArrayLike | None, y_score: ArrayLike | None
) -> tuple[NDArray[Any], NDArray[Any] | None, FloatArray | None]:
    """``y_true``, ``y_pred`` and ``y_score`` as arrays of one length; at least
    one of ``y_pred`` and ``y_score`` is needed."""
    true = _as_1d("y_true", y_true)
    pred = None if y_pred is None else _as_1d("y_pred", y_pred)
    score = None if y_score is None else _as_scores(y_score)
    if pred is None and score is None:
        raise ValueError("classification needs y_pred (labels) or y_score (scores)")
    if pred is not None:
        _check_length("y_pred", pred, true.shape[0])
    if score is not None:
        _check_length("y_score", score, true.shape[0])
    return true, pred, score


def _missing_rows(first: NDArray[Any], *others: NDArray[Any] | None) -> BoolArray:
    """Rows missing in any of the arrays (a None among ``others`` is no array)."""
    missing = _missing(first)
    for arr in others:
        if arr is not None:
            missing |= _missing(arr)
    return missing


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _missing(arr: NDArray[Any]) -> BoolArray:
    """Rows of ``arr`` that are missing (None or NaN; any NaN in a matrix row)."""
    if arr.dtype.kind in "fc":
        nan: BoolArray = np.isnan(arr)
        return _any_per_row(nan)
    if arr.dtype.kind == "O":
        flat = arr if arr.ndim == 1 else arr.reshape(arr.shape[0], -1)
        if flat.ndim == 1:
            return np.fromiter((_is_missing(v) for v in flat), dtype=np.bool_, count=len(flat))
        return np.array([any(_is_missing(v) for v in row) for row in flat], dtype=np.bool_)
    if arr.dtype.kind in "mM":
        nat: BoolArray = np.isnat(arr)
        return _any_per_row(nat)
    return np.zeros(arr.shape[0], dtype=np.bool_)


def _any_per_row(flags: BoolArray) -> BoolArray:
    if flags.ndim == 2:
        return np.asarray(flags.any(axis=1), dtype=np.bool_)
    return flags


def _factorize(values: NDArray[Any]) -> tuple[list[Label], IntArray]:
    """Distinct values and each row's index into them."""
    if values.dtype.kind != "O":
        uniq, inverse = np.unique(values, return_inverse=True)
        return cast(list[Label], uniq.tolist()), inverse.reshape(-1).astype(np.int64)
    index: dict[Label, int] = {}
    codes = np.fromiter(
        (index.setdefault(v, len(index)) for v in values.tolist()),
        dtype=np.int64,
        count=len(values),
    )
    return list(index), codes


def _sorted_labels(labels: Sequence[Label]) -> list[Label]:
    try:
        items: list[Any] = list(labels)
        return sorted(items)
    except TypeError:
        return sorted(labels, key=lambda v: (type(v).__name__, repr(v)))


def _default_positive(classes: Sequence[Label]) -> Label | None:
    """1 (``True`` for booleans) when every class is 0/1, else the largest label."""
    if not classes:
        return None
    if all(_is_zero_one(c) for c in classes):
        if all(isinstance(c, bool | np.bool_) for c in classes):
            return True
        return 1
    return _sorted_labels(classes)[-1]


def _is_zero_one(value: object) -> bool:
    if not isinstance(value, bool | int | float | np.number | np.bool_):
        return False
    return bool(value == 0 or value == 1)


def _label_tuple(labels: ArrayLike | None) -> tuple[Label, ...] | None:
    if labels is None:
        return None
    arr = _as_1d("labels", labels)
    if _missing(arr).any():
        raise ValueError("labels must not contain missing values")
    values = cast(list[Label], arr.tolist())
    if len(set(values)) != len(values):
        raise ValueError(f"labels must be distinct, got {values}")
    return tuple(values)


def _check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not math.isfinite(value):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return value


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task
