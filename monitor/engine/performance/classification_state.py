"""Sufficient statistics of a classification window.

:class:`_ClassificationState` takes chunks of labelled predictions and keeps
confusion counts keyed by label ids, log-loss running sums and a reservoir for
ROC AUC, so that memory grows with the number of classes, never with rows;
states merge, and :meth:`_ClassificationState.metrics` computes the
:class:`~monitor.engine.performance.results.ClassificationMetrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from monitor.engine.performance.auc import _mann_whitney_auc, _Reservoir
from monitor.engine.performance.inputs import (
    BoolArray,
    FloatArray,
    IntArray,
    _check_threshold,
    _classification_inputs,
    _default_positive,
    _factorize,
    _missing_rows,
    _sorted_labels,
)
from monitor.engine.performance.results import (
    EPS,
    NEEDS_PROBABILITIES,
    NEEDS_SCORES,
    NOT_PROBABILITIES,
    SINGLE_CLASS,
    UNKNOWN_TARGET,
    ClassificationMetrics,
    Label,
    _empty_classification,
)


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
        true, pred, score = _classification_inputs(y_true, y_pred, y_score)
        if score is not None:
            score = self._shape_scores(score)
        missing = _missing_rows(true, pred, score)
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
