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
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

Label = Hashable
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

EPS: Final[float] = float(np.finfo(np.float64).eps)
DEFAULT_AUC_CAP: Final[int] = 100_000

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


# --------------------------------------------------------------------------- results


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


def _empty_classification(dropped: int, average: str) -> ClassificationMetrics:
    return ClassificationMetrics(
        accuracy=None,
        precision=None,
        recall=None,
        f1=None,
        roc_auc=None,
        log_loss=None,
        rows=0,
        dropped=dropped,
        undefined=dict.fromkeys(CLASSIFICATION_METRICS, NO_ROWS),
        average=average,
    )


# --------------------------------------------------------------------------- input helpers


def _as_1d(name: str, values: ArrayLike) -> NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _as_float_1d(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


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


def _mann_whitney_auc(scores: FloatArray, positive: BoolArray) -> float:
    """ROC AUC as the Mann-Whitney U statistic with average ranks for ties."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)
    ranks = (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


# --------------------------------------------------------------------------- bounded sample


class _Reservoir:
    """Label ids and scores of scored rows: all of them up to ``cap``, then a
    uniform reservoir sample (Algorithm R) of ``cap`` rows.  ``cap=None`` keeps
    every row."""

    def __init__(self, cap: int | None, rng: np.random.Generator, width: int | None) -> None:
        self.cap = cap
        self.rng = rng
        self.width = width
        self.seen = 0
        self.ids: IntArray = np.empty(0, dtype=np.int64)
        shape = (0,) if width is None else (0, width)
        self.values: FloatArray = np.empty(shape, dtype=np.float64)

    @property
    def estimated(self) -> bool:
        return self.seen > int(self.ids.shape[0])

    def add(self, ids: IntArray, values: FloatArray) -> None:
        if self.cap is None or self.seen + ids.shape[0] <= self.cap:
            self._append(ids, values)
            self.seen += ids.shape[0]
            return
        room = max(self.cap - self.ids.shape[0], 0)
        if room:
            self._append(ids[:room], values[:room])
            self.seen += room
            ids, values = ids[room:], values[room:]
        # Algorithm R: row t (0-based over the stream) replaces slot j ~ U{0..t} if j < cap.
        t = self.seen + np.arange(ids.shape[0], dtype=np.int64)
        slots = self.rng.integers(0, t + 1)
        take = slots < self.cap
        src = np.nonzero(take)[0]
        dst = slots[take]
        if dst.size:
            # Later rows overwrite earlier ones drawing the same slot.
            unique_dst, first_in_reversed = np.unique(dst[::-1], return_index=True)
            last_src = src[::-1][first_in_reversed]
            self.ids[unique_dst] = ids[last_src]
            self.values[unique_dst] = values[last_src]
        self.seen += ids.shape[0]

    def merge(self, other: _Reservoir, remap: IntArray) -> None:
        other_ids = remap[other.ids] if other.ids.size else other.ids
        if self.cap is None or self.seen + other.seen <= self.cap:
            self._append(other_ids, other.values)
            self.seen += other.seen
            return
        # Each side is a uniform sample of its stream; the count drawn from
        # each side of a uniform sample of the union is hypergeometric.
        size = self.cap
        from_self = int(self.rng.hypergeometric(self.seen, other.seen, size))
        mine = self.rng.choice(self.ids.shape[0], size=from_self, replace=False)
        theirs = self.rng.choice(other.ids.shape[0], size=size - from_self, replace=False)
        self.ids = np.concatenate([self.ids[mine], other_ids[theirs]])
        self.values = np.concatenate([self.values[mine], other.values[theirs]])
        self.seen += other.seen

    def _append(self, ids: IntArray, values: FloatArray) -> None:
        self.ids = np.concatenate([self.ids, ids])
        self.values = np.concatenate([self.values, values])


# --------------------------------------------------------------------------- classification


class _ClassificationState:
    """Sufficient statistics of a classification window.

    Confusion counts are keyed by label ids (memory grows with the number of
    classes, never with rows); log loss is a running sum; ROC AUC keeps a
    :class:`_Reservoir` of (label id, score) pairs.
    """

    def __init__(
        self,
        *,
        multiclass: bool,
        positive_label: Label | None,
        threshold: float,
        labels: tuple[Label, ...] | None,
        auc_cap: int | None,
        rng: np.random.Generator,
    ) -> None:
        if positive_label is not None and labels is not None and positive_label not in labels:
            raise ValueError(f"positive_label {positive_label!r} is not one of labels {labels}")
        self.multiclass = multiclass
        self.positive_label = positive_label
        self.threshold = _check_threshold(threshold)
        self.labels = labels
        self.auc_cap = auc_cap
        self._ids: dict[Label, int] = {}
        self._names: list[Label] = []
        for label in labels or ():
            self._intern(label)
        self._pairs: dict[tuple[int, int], int] = {}
        self._decisions: dict[tuple[int, bool], int] = {}
        self.rows = 0
        self.dropped = 0
        self._scored_rows = 0
        self._ll_if_positive: dict[int, float] = {}
        self._ll_if_negative: dict[int, float] = {}
        self._ll_sum = 0.0
        self._ll_invalid = 0
        self._ll_unknown = 0
        width = len(labels) if multiclass and labels is not None else None
        self.reservoir = _Reservoir(auc_cap, rng, width)

    # ---------------------------------------------------------------- update

    def _intern(self, label: Label) -> int:
        found = self._ids.get(label)
        if found is None:
            found = len(self._names)
            self._ids[label] = found
            self._names.append(label)
        return found

    def _global_ids(self, values: NDArray[Any]) -> IntArray:
        uniques, codes = _factorize(values)
        table = np.array([self._intern(u) for u in uniques], dtype=np.int64)
        return table[codes] if codes.size else codes

    def _binary_column(self) -> int:
        if self.labels is None:
            return 1
        if len(self.labels) != 2:
            raise ValueError(
                f"a two-column binary y_score needs two labels, got {len(self.labels)}"
            )
        positive = self.positive()
        return self.labels.index(positive) if positive in self.labels else 1

    def add(self, y_true: ArrayLike, y_pred: ArrayLike | None, y_score: ArrayLike | None) -> None:
        true = _as_1d("y_true", y_true)
        n = true.shape[0]
        pred = None if y_pred is None else _as_1d("y_pred", y_pred)
        score = None if y_score is None else _as_scores(y_score)
        if pred is None and score is None:
            raise ValueError("classification needs y_pred (labels) or y_score (scores)")
        if pred is not None:
            _check_length("y_pred", pred, n)
        if score is not None:
            _check_length("y_score", score, n)
            score = self._shape_scores(score)

        missing = _missing(true)
        if pred is not None:
            missing |= _missing(pred)
        if score is not None:
            missing |= _missing(score)
        self.dropped += int(missing.sum())
        keep = ~missing
        true = true[keep]
        pred = None if pred is None else pred[keep]
        score = None if score is None else score[keep]
        rows = true.shape[0]
        if rows == 0:
            return
        self.rows += rows

        true_ids = self._global_ids(true)
        if pred is not None:
            _count_pairs(self._pairs, true_ids, self._global_ids(pred))
        elif self.multiclass:
            assert score is not None and self.labels is not None
            column_ids = np.array([self._ids[label] for label in self.labels], dtype=np.int64)
            _count_pairs(self._pairs, true_ids, column_ids[np.argmax(score, axis=1)])
        else:
            assert score is not None
            decided = score >= self.threshold
            _count_decisions(self._decisions, true_ids, decided)

        if score is not None:
            self._scored_rows += rows
            self._add_log_loss(true_ids, score)
            self.reservoir.add(true_ids, score)

    def _shape_scores(self, score: FloatArray) -> FloatArray:
        if score.ndim == 1:
            if self.multiclass:
                raise ValueError(
                    "multiclass y_score must be a (rows, classes) probability matrix"
                )
            return score
        columns = score.shape[1]
        if self.multiclass:
            if self.labels is None:
                raise ValueError("a multiclass probability matrix needs labels for its columns")
            if columns != len(self.labels):
                raise ValueError(
                    f"y_score has {columns} columns but labels has {len(self.labels)} classes"
                )
            return score
        if columns != 2:
            raise ValueError(
                f"binary y_score must have one score per row or two columns, got {columns}"
            )
        return np.ascontiguousarray(score[:, self._binary_column()])

    def _add_log_loss(self, true_ids: IntArray, score: FloatArray) -> None:
        in_range: BoolArray = (score >= 0.0) & (score <= 1.0)
        valid = np.asarray(in_range.all(axis=1), dtype=np.bool_) if score.ndim == 2 else in_range
        self._ll_invalid += int((~valid).sum())
        true_ids, score = true_ids[valid], score[valid]
        if true_ids.size == 0:
            return
        if score.ndim == 1:
            # Per true label: the loss if that label is the positive class, and if not.
            loss_pos = -np.log(np.clip(score, EPS, 1.0 - EPS))
            loss_neg = -np.log(np.clip(1.0 - score, EPS, 1.0 - EPS))
            length = int(true_ids.max()) + 1
            sum_pos = np.bincount(true_ids, weights=loss_pos, minlength=length)
            sum_neg = np.bincount(true_ids, weights=loss_neg, minlength=length)
            for label_id in np.unique(true_ids).tolist():
                self._ll_if_positive[label_id] = (
                    self._ll_if_positive.get(label_id, 0.0) + float(sum_pos[label_id])
                )
                self._ll_if_negative[label_id] = (
                    self._ll_if_negative.get(label_id, 0.0) + float(sum_neg[label_id])
                )
            return
        assert self.labels is not None
        column_of = np.full(len(self._names), -1, dtype=np.int64)
        for column, label in enumerate(self.labels):
            column_of[self._ids[label]] = column
        columns = column_of[true_ids]
        known = columns >= 0
        self._ll_unknown += int((~known).sum())
        picked = score[np.nonzero(known)[0], columns[known]]
        self._ll_sum += float(-np.log(np.clip(picked, EPS, 1.0 - EPS)).sum())

    # ---------------------------------------------------------------- merge

    def merge(self, other: _ClassificationState) -> None:
        if (
            self.multiclass != other.multiclass
            or self.labels != other.labels
            or self.positive_label != other.positive_label
            or self.threshold != other.threshold
            or self.auc_cap != other.auc_cap
        ):
            raise ValueError("cannot merge accumulators with different configurations")
        remap = np.array([self._intern(name) for name in list(other._names)], dtype=np.int64)
        for (a, b), count in list(other._pairs.items()):
            key = (int(remap[a]), int(remap[b]))
            self._pairs[key] = self._pairs.get(key, 0) + count
        for (a, decided), count in list(other._decisions.items()):
            dkey = (int(remap[a]), decided)
            self._decisions[dkey] = self._decisions.get(dkey, 0) + count
        for source, target in (
            (other._ll_if_positive, self._ll_if_positive),
            (other._ll_if_negative, self._ll_if_negative),
        ):
            for label_id, total in list(source.items()):
                mapped = int(remap[label_id])
                target[mapped] = target.get(mapped, 0.0) + total
        self.rows += other.rows
        self.dropped += other.dropped
        self._scored_rows += other._scored_rows
        self._ll_sum += other._ll_sum
        self._ll_invalid += other._ll_invalid
        self._ll_unknown += other._ll_unknown
        self.reservoir.merge(other.reservoir, remap)

    # ---------------------------------------------------------------- result

    def classes(self) -> list[Label]:
        if self.labels is not None:
            return list(self.labels)
        return _sorted_labels(self._names)

    def positive(self) -> Label | None:
        if self.positive_label is not None:
            return self.positive_label
        return _default_positive(self.classes())

    def metrics(self) -> ClassificationMetrics:
        average = "macro" if self.multiclass else "binary"
        if self.rows == 0:
            return _empty_classification(self.dropped, average)
        undefined: dict[str, str] = {}
        positive = None if self.multiclass else self.positive()
        if self.multiclass:
            accuracy, precision, recall, f1 = self._macro(undefined)
        else:
            accuracy, precision, recall, f1 = self._binary(positive, undefined)
        roc_auc = self._roc_auc(positive, undefined)
        log_loss = self._log_loss(positive, undefined)
        estimated = ("roc_auc",) if roc_auc is not None and self.reservoir.estimated else ()
        return ClassificationMetrics(
            accuracy=accuracy,
            precision=precision,
            recall=recall,
            f1=f1,
            roc_auc=roc_auc,
            log_loss=log_loss,
            rows=self.rows,
            dropped=self.dropped,
            undefined=undefined,
            average=average,
            positive_label=positive,
            estimated=estimated,
        )

    def _binary(
        self, positive: Label | None, undefined: dict[str, str]
    ) -> tuple[float, float | None, float | None, float | None]:
        pos_id = self._ids.get(positive) if positive is not None else None
        tp = fp = fn = correct = 0
        for (t, p), count in self._pairs.items():
            is_true, is_pred = t == pos_id, p == pos_id
            tp += count if is_true and is_pred else 0
            fp += count if is_pred and not is_true else 0
            fn += count if is_true and not is_pred else 0
            correct += count if t == p else 0
        for (t, decided), count in self._decisions.items():
            is_true = t == pos_id
            tp += count if is_true and decided else 0
            fp += count if decided and not is_true else 0
            fn += count if is_true and not decided else 0
            correct += count if is_true == decided else 0
        precision = recall = f1 = None
        if tp + fp:
            precision = tp / (tp + fp)
        else:
            undefined["precision"] = "no positive predictions in window"
        if tp + fn:
            recall = tp / (tp + fn)
        else:
            undefined["recall"] = "no positive targets in window"
        if 2 * tp + fp + fn:
            f1 = 2 * tp / (2 * tp + fp + fn)
        else:
            undefined["f1"] = "no positive targets or predictions in window"
        return correct / self.rows, precision, recall, f1

    def _macro(
        self, undefined: dict[str, str]
    ) -> tuple[float, float | None, float | None, float | None]:
        size = len(self._names)
        confusion = np.zeros((size, size), dtype=np.int64)
        for (t, p), count in self._pairs.items():
            confusion[t, p] += count
        accuracy = float(np.trace(confusion)) / self.rows
        ids = np.array([self._ids.get(c, -1) for c in self.classes()], dtype=np.int64)
        present = ids >= 0
        tp = np.zeros(ids.size, dtype=np.float64)
        predicted = np.zeros(ids.size, dtype=np.float64)
        actual = np.zeros(ids.size, dtype=np.float64)
        tp[present] = confusion[ids[present], ids[present]]
        predicted[present] = confusion[:, ids[present]].sum(axis=0)
        actual[present] = confusion[ids[present], :].sum(axis=1)
        precision = _nan_mean(tp, predicted)
        recall = _nan_mean(tp, actual)
        f1 = _nan_mean(2.0 * tp, predicted + actual)
        if precision is None:
            undefined["precision"] = "no class has predictions in window"
        if recall is None:
            undefined["recall"] = "no class has targets in window"
        if f1 is None:
            undefined["f1"] = "no class has targets or predictions in window"
        return accuracy, precision, recall, f1

    def _roc_auc(self, positive: Label | None, undefined: dict[str, str]) -> float | None:
        if self._scored_rows == 0:
            undefined["roc_auc"] = NEEDS_SCORES
            return None
        ids, values = self.reservoir.ids, self.reservoir.values
        if not self.multiclass:
            pos_id = self._ids.get(positive, -1) if positive is not None else -1
            is_pos = ids == pos_id
            if is_pos.all() or not is_pos.any():
                undefined["roc_auc"] = SINGLE_CLASS
                return None
            return _mann_whitney_auc(values, is_pos)
        assert self.labels is not None
        per_class: list[float] = []
        for column, label in enumerate(self.labels):
            is_pos = ids == self._ids[label]
            if is_pos.any() and not is_pos.all():
                per_class.append(_mann_whitney_auc(values[:, column], is_pos))
        if not per_class:
            undefined["roc_auc"] = SINGLE_CLASS
            return None
        return float(np.mean(per_class))

    def _log_loss(self, positive: Label | None, undefined: dict[str, str]) -> float | None:
        if self._scored_rows == 0:
            undefined["log_loss"] = NEEDS_PROBABILITIES
            return None
        if self._ll_invalid:
            undefined["log_loss"] = NOT_PROBABILITIES
            return None
        if self.multiclass:
            if self._ll_unknown:
                undefined["log_loss"] = UNKNOWN_TARGET
                return None
            return self._ll_sum / self._scored_rows
        pos_id = self._ids.get(positive, -1) if positive is not None else -1
        total = 0.0
        for label_id, if_negative in self._ll_if_negative.items():
            total += self._ll_if_positive[label_id] if label_id == pos_id else if_negative
        return total / self._scored_rows


def _count_pairs(counts: dict[tuple[int, int], int], a: IntArray, b: IntArray) -> None:
    width = int(max(a.max(), b.max())) + 1
    keys, tallies = np.unique(a * width + b, return_counts=True)
    for key, tally in zip(keys.tolist(), tallies.tolist(), strict=True):
        pair = (key // width, key % width)
        counts[pair] = counts.get(pair, 0) + tally


def _count_decisions(counts: dict[tuple[int, bool], int], a: IntArray, b: BoolArray) -> None:
    keys, tallies = np.unique(a * 2 + b.astype(np.int64), return_counts=True)
    for key, tally in zip(keys.tolist(), tallies.tolist(), strict=True):
        pair = (key // 2, bool(key % 2))
        counts[pair] = counts.get(pair, 0) + tally


def _nan_mean(numerator: FloatArray, denominator: FloatArray) -> float | None:
    """Mean of the ratios whose denominator is non-zero; None when there are none."""
    ok = denominator > 0
    if not ok.any():
        return None
    return float(np.mean(numerator[ok] / denominator[ok]))


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
    true = _as_1d("y_true", y_true)
    pred = None if y_pred is None else _as_1d("y_pred", y_pred)
    score = None if y_score is None else _as_scores(y_score)
    if pred is None and score is None:
        raise ValueError("classification needs y_pred (labels) or y_score (scores)")
    if pred is not None:
        _check_length("y_pred", pred, true.shape[0])
    if score is not None:
        _check_length("y_score", score, true.shape[0])
    label_tuple = _label_tuple(labels)

    keep = ~_missing(true)
    if pred is not None:
        keep &= ~_missing(pred)
    if score is not None:
        keep &= ~_missing(score)
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
        undefined = dict(result.undefined)
        undefined.update(roc_auc=misaligned, log_loss=misaligned)
        return ClassificationMetrics(
            accuracy=result.accuracy,
            precision=result.precision,
            recall=result.recall,
            f1=result.f1,
            roc_auc=None,
            log_loss=None,
            rows=result.rows,
            dropped=dropped,
            undefined=undefined,
            average="macro",
        )
    rows = int(keep.sum())
    if rows == 0:
        return _empty_classification(dropped, "macro")
    return ClassificationMetrics(
        accuracy=None,
        precision=None,
        recall=None,
        f1=None,
        roc_auc=None,
        log_loss=None,
        rows=rows,
        dropped=dropped,
        undefined=dict.fromkeys(CLASSIFICATION_METRICS, misaligned),
        average="macro",
    )


def _observed_classes(true: NDArray[Any], pred: NDArray[Any] | None) -> list[Label]:
    seen: dict[Label, None] = dict.fromkeys(_factorize(true)[0])
    if pred is not None:
        seen.update(dict.fromkeys(_factorize(pred)[0]))
    return _sorted_labels(list(seen))


# --------------------------------------------------------------------------- regression


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
        rows = self.rows + other.rows
        delta = other.mean - self.mean
        self.mean += delta * other.rows / rows
        self.m2 += other.m2 + delta * delta * self.rows * other.rows / rows
        self.rows = rows
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


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> RegressionMetrics:
    """Regression metrics of one window; rows with a missing or non-finite
    target or prediction are dropped."""
    state = _RegressionState()
    state.add(y_true, y_pred)
    return state.metrics()


# --------------------------------------------------------------------------- dispatch


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
        if y_pred is None:
            raise ValueError("regression needs y_pred")
        if y_score is not None:
            raise ValueError("regression takes y_pred only, not y_score")
        return regression_metrics(y_true, y_pred).as_dict()
    return classification_metrics(
        y_true,
        y_pred,
        y_score,
        positive_label=positive_label,
        threshold=threshold,
        labels=labels,
        multiclass=task == MULTICLASS,
    ).as_dict()


# --------------------------------------------------------------------------- streaming


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
        state = self._regression or self._classification
        assert state is not None
        return state.rows

    @property
    def dropped(self) -> int:
        """Rows dropped for a missing target or prediction."""
        state = self._regression or self._classification
        assert state is not None
        return state.dropped

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
            if y_pred is None:
                raise ValueError("regression needs y_pred")
            if y_score is not None:
                raise ValueError("regression takes y_pred only, not y_score")
            self._regression.add(y_true, y_pred)
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
