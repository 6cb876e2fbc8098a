"""monitor.engine.performance against scikit-learn as the independent reference."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from monitor.engine.performance import (
    NO_ROWS,
    SINGLE_CLASS,
    ClassificationMetrics,
    PerformanceAccumulator,
    RegressionMetrics,
    classification_metrics,
    compute,
    regression_metrics,
)

TOL = 1e-9
NAN = float("nan")


def assert_matches(ours: float | None, reference: float) -> None:
    """``ours`` equals sklearn's value to 1e-9 (relative for large values);
    sklearn's NaN is our None."""
    if math.isnan(reference):
        assert ours is None
        return
    assert ours is not None
    assert ours == pytest.approx(reference, rel=TOL, abs=TOL)


def sklearn_binary(
    y: np.ndarray, pred: np.ndarray, pos: Any = 1
) -> tuple[float, float, float, float]:
    kw: dict[str, Any] = {"pos_label": pos, "zero_division": np.nan}
    return (
        skm.accuracy_score(y, pred),
        skm.precision_score(y, pred, **kw),
        skm.recall_score(y, pred, **kw),
        skm.f1_score(y, pred, **kw),
    )


def sklearn_macro(
    y: np.ndarray, pred: np.ndarray, labels: Any = None
) -> tuple[float, float, float, float]:
    kw: dict[str, Any] = {"average": "macro", "zero_division": np.nan, "labels": labels}
    return (
        skm.accuracy_score(y, pred),
        skm.precision_score(y, pred, **kw),
        skm.recall_score(y, pred, **kw),
        skm.f1_score(y, pred, **kw),
    )


def assert_label_metrics(result: ClassificationMetrics, reference: tuple[float, ...]) -> None:
    for name, value in zip(("accuracy", "precision", "recall", "f1"), reference, strict=True):
        assert_matches(getattr(result, name), value)


def assert_same_metrics(
    a: ClassificationMetrics | RegressionMetrics, b: ClassificationMetrics | RegressionMetrics
) -> None:
    da, db = a.as_dict(), b.as_dict()
    assert da.keys() == db.keys()
    for key in da:
        assert da[key] == pytest.approx(db[key], rel=1e-12, abs=1e-12), key
    assert a.rows == b.rows
    assert a.dropped == b.dropped
    assert a.undefined == b.undefined


# --------------------------------------------------------------------------- binary


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_equal_scikit_learn_on_random_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 2000))
    y = rng.integers(0, 2, n)
    score = np.clip(rng.random(n) * 0.6 + y * 0.3, 0, 1)
    result = classification_metrics(y, y_score=score)
    pred = (score >= 0.5).astype(int)
    assert_label_metrics(result, sklearn_binary(y, pred))
    assert_matches(result.roc_auc, skm.roc_auc_score(y, score))
    assert_matches(result.log_loss, skm.log_loss(y, score))
    assert result.rows == n and result.dropped == 0 and result.undefined == {}
    assert result.average == "binary" and result.positive_label == 1


def test_binary_roc_auc_with_heavily_tied_scores_equals_scikit_learn() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 5000)
    score = np.round(rng.random(5000) * 0.5 + 0.3 * y, 1)
    result = classification_metrics(y, y_score=score)
    assert_matches(result.roc_auc, skm.roc_auc_score(y, score))
    constant = classification_metrics(y, y_score=np.full(5000, 0.3))
    assert constant.roc_auc == pytest.approx(0.5)
    assert_matches(constant.roc_auc, skm.roc_auc_score(y, np.full(5000, 0.3)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.9, 1.0])),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([0.0, 0.3, 0.5, 0.9]),
)
def test_binary_metrics_equal_scikit_learn_for_any_small_window_with_ties(
    rows: list[tuple[int, float]], threshold: float
) -> None:
    y = np.array([r[0] for r in rows])
    score = np.array([r[1] for r in rows])
    result = classification_metrics(y, y_score=score, threshold=threshold)
    pred = (score >= threshold).astype(int)
    assert_label_metrics(result, sklearn_binary(y, pred))
    assert_matches(result.log_loss, skm.log_loss(y, score, labels=[0, 1]))
    if len(set(y.tolist())) == 2:
        assert_matches(result.roc_auc, skm.roc_auc_score(y, score))
    else:
        assert result.roc_auc is None
        assert result.undefined["roc_auc"] == SINGLE_CLASS


def test_binary_positive_label_is_configurable() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice(np.array(["ham", "spam"]), 400)
    score = np.clip(rng.random(400) * 0.7 + (y == "ham") * 0.3, 0, 1)  # P(ham)
    result = classification_metrics(y, y_score=score, positive_label="ham")
    pred = np.where(score >= 0.5, "ham", "spam")
    assert_label_metrics(result, sklearn_binary(y, pred, pos="ham"))
    assert_matches(result.roc_auc, skm.roc_auc_score(y == "ham", score))
    assert_matches(result.log_loss, skm.log_loss(y == "ham", score))
    assert result.positive_label == "ham"


def test_binary_labels_only_predictions_use_default_larger_positive_label() -> None:
    rng = np.random.default_rng(4)
    y = rng.choice(np.array(["a", "b"]), 300)
    pred = rng.choice(np.array(["a", "b"]), 300)
    result = classification_metrics(y, pred)
    assert result.positive_label == "b"
    assert_label_metrics(result, sklearn_binary(y, pred, pos="b"))
    assert result.roc_auc is None and result.log_loss is None
    assert "labels only" in result.undefined["roc_auc"]
    assert "labels only" in result.undefined["log_loss"]
    assert result.as_dict().keys() == {"accuracy", "precision", "recall", "f1"}


def test_default_positive_label_is_one_or_true_even_in_a_single_class_window() -> None:
    assert classification_metrics([0, 0, 0], [0, 1, 0]).positive_label == 1
    assert classification_metrics([False, False], [False, True]).positive_label is True
    zeros = classification_metrics([0.0, 0.0], y_score=[0.2, 0.7])
    assert zeros.positive_label == 1
    assert zeros.precision == 0.0
    assert zeros.recall is None and zeros.undefined["recall"] == "no positive targets in window"
    assert classification_metrics([3, 7, 3], [3, 7, 7]).positive_label == 7


def test_predicted_labels_take_precedence_over_thresholded_scores() -> None:
    y = np.array([0, 1, 1, 0, 1])
    pred = np.array([1, 1, 0, 0, 1])
    score = np.array([0.1, 0.8, 0.7, 0.4, 0.9])
    result = classification_metrics(y, pred, score)
    assert_label_metrics(result, sklearn_binary(y, pred))
    assert_matches(result.roc_auc, skm.roc_auc_score(y, score))


def test_two_column_binary_probability_matrix_uses_the_positive_column() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    p1 = rng.random(200)
    matrix = np.column_stack([1 - p1, p1])
    result = classification_metrics(y, y_score=matrix)
    assert_matches(result.roc_auc, skm.roc_auc_score(y, p1))
    assert_matches(result.log_loss, skm.log_loss(y, matrix))
    flipped = classification_metrics(y, y_score=matrix, labels=[0, 1], positive_label=0)
    assert_matches(flipped.roc_auc, skm.roc_auc_score(y == 0, 1 - p1))


def test_log_loss_clips_certain_wrong_probabilities_like_scikit_learn() -> None:
    y = np.array([0, 1, 1, 0, 1, 0])
    score = np.array([0.0, 1.0, 0.0, 1.0, 1e-20, 1 - 1e-17])
    result = classification_metrics(y, y_score=score)
    assert_matches(result.log_loss, skm.log_loss(y, score))


def test_scores_outside_unit_interval_have_roc_auc_but_no_log_loss() -> None:
    y = np.array([0, 1, 1, 0, 1])
    logits = np.array([-2.0, 1.5, 0.3, 0.7, 3.0])
    result = classification_metrics(y, y_score=logits, threshold=0.0)
    assert_matches(result.roc_auc, skm.roc_auc_score(y, logits))
    assert result.log_loss is None
    assert "not probabilities" in result.undefined["log_loss"]
    assert_label_metrics(result, sklearn_binary(y, (logits >= 0).astype(int)))


def test_single_class_window_reports_roc_auc_undefined() -> None:
    y = np.ones(20, dtype=int)
    score = np.linspace(0.05, 0.95, 20)
    result = classification_metrics(y, y_score=score)
    assert result.roc_auc is None
    assert result.undefined["roc_auc"] == SINGLE_CLASS
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(skm.roc_auc_score(y, score))
    assert_matches(result.log_loss, skm.log_loss(y, score, labels=[0, 1]))
    assert_label_metrics(result, sklearn_binary(y, (score >= 0.5).astype(int)))
    assert "roc_auc" not in result.as_dict()


def test_precision_is_undefined_where_scikit_learn_warns_about_zero_division() -> None:
    y = np.array([0, 1, 1, 0])
    pred = np.zeros(4, dtype=int)
    result = classification_metrics(y, pred)
    assert result.precision is None
    assert result.undefined["precision"] == "no positive predictions in window"
    assert result.recall == 0.0 and result.f1 == 0.0
    with pytest.warns(UndefinedMetricWarning):
        assert skm.precision_score(y, pred) == 0.0
    assert_label_metrics(result, sklearn_binary(y, pred))


# --------------------------------------------------------------------------- multiclass


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_metrics_equal_scikit_learn_macro_averages(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 7))
    n = int(rng.integers(100, 1500))
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present, as sklearn's OvR AUC requires
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = list(range(k))
    result = classification_metrics(y, y_score=proba, labels=labels)
    pred = proba.argmax(axis=1)
    assert_label_metrics(result, sklearn_macro(y, pred, labels))
    assert_matches(result.roc_auc, skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert_matches(result.log_loss, skm.log_loss(y, proba, labels=labels))
    assert result.average == "macro"
    inferred = classification_metrics(y, y_score=proba)  # columns = sorted classes
    assert_same_metrics(inferred, result)


def test_multiclass_string_labels_and_tied_probabilities_equal_scikit_learn() -> None:
    rng = np.random.default_rng(11)
    labels = ["cat", "dog", "eel"]
    y = rng.choice(np.array(labels), 600)
    proba = rng.dirichlet(np.ones(3), 600).round(1)
    proba /= proba.sum(axis=1, keepdims=True)
    result = classification_metrics(y, y_score=proba, labels=labels)
    pred = np.array(labels)[proba.argmax(axis=1)]
    assert_label_metrics(result, sklearn_macro(y, pred, labels))
    assert_matches(result.roc_auc, skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert_matches(result.log_loss, skm.log_loss(y, proba, labels=labels))


def test_multiclass_macro_skips_classes_never_predicted_or_absent() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 1, 0])  # class 2 never predicted
    result = classification_metrics(y, pred, labels=[0, 1, 2, 3])  # class 3 absent
    assert_label_metrics(result, sklearn_macro(y, pred, [0, 1, 2, 3]))
    labels_only = classification_metrics(y, pred)
    assert labels_only.average == "macro"
    assert_label_metrics(labels_only, sklearn_macro(y, pred))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_multiclass_label_metrics_equal_scikit_learn_for_any_window(
    rows: list[tuple[int, int]],
) -> None:
    y = np.array([r[0] for r in rows])
    pred = np.array([r[1] for r in rows])
    labels = [0, 1, 2, 3]
    result = classification_metrics(y, pred, labels=labels, multiclass=True)
    assert_label_metrics(result, sklearn_macro(y, pred, labels))


def test_multiclass_roc_auc_averages_only_classes_present_in_window() -> None:
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(3), 50)
    y = rng.integers(0, 2, 50)  # class 2 absent
    result = classification_metrics(y, y_score=proba, labels=[0, 1, 2])
    expected = np.mean([skm.roc_auc_score(y == c, proba[:, c]) for c in (0, 1)])
    assert_matches(result.roc_auc, float(expected))
    assert_matches(result.log_loss, skm.log_loss(y, proba, labels=[0, 1, 2]))
    single = classification_metrics(np.zeros(50, int), y_score=proba, labels=[0, 1, 2])
    assert single.roc_auc is None and single.undefined["roc_auc"] == SINGLE_CLASS


def test_unaligned_probability_columns_are_reported_not_raised() -> None:
    proba = np.full((4, 3), 1 / 3)
    result = classification_metrics([0, 1, 0, 1], y_score=proba)
    assert result.rows == 4 and result.as_dict() == {}
    assert "pass labels" in result.undefined["roc_auc"]
    with_pred = classification_metrics([0, 1, 0, 1], [0, 1, 1, 1], proba)
    assert with_pred.accuracy == 0.75 and with_pred.roc_auc is None
    assert "pass labels" in with_pred.undefined["log_loss"]


def test_targets_outside_probability_columns_make_log_loss_undefined() -> None:
    proba = np.full((3, 3), 1 / 3)
    result = classification_metrics(["a", "b", "z"], y_score=proba, labels=["a", "b", "c"])
    assert result.log_loss is None and "outside" in result.undefined["log_loss"]
    assert result.roc_auc is not None


# --------------------------------------------------------------------------- missing and empty


def test_rows_with_missing_target_or_prediction_are_dropped_and_counted() -> None:
    y = np.array([1, None, 0, 1, 0, 1, "x"], dtype=object)[:-1]
    pred = np.array([1, 1, None, 0, 0, float("nan")], dtype=object)
    result = classification_metrics(y, pred)
    assert result.rows == 3 and result.dropped == 3
    assert_label_metrics(result, sklearn_binary(np.array([1, 1, 0]), np.array([1, 0, 0])))

    y_float = np.array([0.0, 1.0, NAN, 1.0, 0.0])
    score = np.array([0.2, NAN, 0.9, 0.6, 0.7])
    scored = classification_metrics(y_float, y_score=score)
    assert scored.rows == 3 and scored.dropped == 2
    keep_y, keep_s = np.array([0, 1, 0]), np.array([0.2, 0.6, 0.7])
    assert_matches(scored.roc_auc, skm.roc_auc_score(keep_y, keep_s))
    assert_matches(scored.log_loss, skm.log_loss(keep_y, keep_s))

    proba = np.array([[0.2, 0.3, 0.5], [NAN, 0.5, 0.5], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    multi = classification_metrics([0, 1, 2, None], y_score=proba, labels=[0, 1, 2])
    assert multi.rows == 2 and multi.dropped == 2

    reg = regression_metrics([1.0, None, 3.0, 4.0, NAN], [1.5, 2.0, NAN, 3.0, 1.0])
    assert reg.rows == 2 and reg.dropped == 3
    assert_matches(reg.mae, skm.mean_absolute_error([1.0, 4.0], [1.5, 3.0]))


def test_empty_windows_report_every_metric_undefined() -> None:
    for result in (
        classification_metrics([], []),
        classification_metrics([], y_score=np.empty(0)),
        classification_metrics([None, None], [1, 0]),
        classification_metrics([0, 1], y_score=[NAN, NAN]),
        classification_metrics(np.empty(0), y_score=np.empty((0, 3)), labels=[0, 1, 2]),
        classification_metrics([1, 2], y_score=np.full((2, 3), NAN)),
    ):
        assert result.as_dict() == {}
        assert result.rows == 0
        assert set(result.undefined.values()) == {NO_ROWS}
        assert set(result.undefined) == {
            "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"
        }
    reg = regression_metrics([NAN, 1.0], [2.0, None])
    assert reg.as_dict() == {} and reg.rows == 0 and reg.dropped == 2
    assert reg.undefined == dict.fromkeys(["mae", "rmse", "mape", "r2"], NO_ROWS)
    assert regression_metrics([], []).undefined["r2"] == NO_ROWS


def test_programming_errors_raise_value_error_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="y_pred has 2 rows but y_true has 3"):
        classification_metrics([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="y_score has 2 rows"):
        classification_metrics([0, 1, 1], y_score=[0.1, 0.2])
    with pytest.raises(ValueError, match="y_pred has 1 rows"):
        regression_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="y_pred .labels. or y_score"):
        classification_metrics([0, 1])
    with pytest.raises(ValueError, match="one-dimensional"):
        regression_metrics([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match="3 columns but labels has 2"):
        classification_metrics([0, 1], y_score=np.full((2, 3), 0.3), labels=[0, 1])
    with pytest.raises(ValueError, match="probability matrix"):
        classification_metrics([0, 1, 2], y_score=[0.1, 0.2, 0.3], multiclass=True)
    with pytest.raises(ValueError, match="positive_label"):
        classification_metrics([0, 1], [0, 1], labels=[0, 1], positive_label=2)
    with pytest.raises(ValueError, match="threshold"):
        classification_metrics([0, 1], y_score=[0.1, 0.2], threshold=float("nan"))
    with pytest.raises(ValueError, match="unknown task"):
        compute("ranking", [1.0], [1.0])


# --------------------------------------------------------------------------- regression


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 2)),
            st.floats(-1e3, 1e3, allow_nan=False),
        ),
        min_size=2,
        max_size=80,
    )
)
def test_regression_metrics_equal_scikit_learn_on_random_data(
    rows: list[tuple[float, float]],
) -> None:
    y = np.array([r[0] for r in rows])
    pred = np.array([r[1] for r in rows])
    result = regression_metrics(y, pred)
    assert_matches(result.mae, skm.mean_absolute_error(y, pred))
    assert_matches(result.rmse, skm.root_mean_squared_error(y, pred))
    assert_matches(result.mape, skm.mean_absolute_percentage_error(y, pred))
    if y.min() != y.max():
        assert_matches(result.r2, skm.r2_score(y, pred))


def test_mape_divides_zero_targets_by_machine_epsilon_like_scikit_learn() -> None:
    y = np.array([1.0, 0.0, 2.4, 7.0, 0.0])
    pred = np.array([1.2, 0.1, 2.4, 8.0, 0.0])
    result = regression_metrics(y, pred)
    reference = skm.mean_absolute_percentage_error(y, pred)
    assert reference > 1e13
    assert_matches(result.mape, reference)


def test_r2_for_constant_targets_follows_scikit_learn_force_finite() -> None:
    y = np.full(10, 3.0)
    assert regression_metrics(y, y).r2 == skm.r2_score(y, y) == 1.0
    off = y + np.linspace(-1, 1, 10)
    assert regression_metrics(y, off).r2 == skm.r2_score(y, off) == 0.0
    # np.mean([0.1] * 3) != 0.1, so sklearn sees a tiny variance and returns about
    # -5e31; the target is constant and we give force_finite's 0.0.
    tenth = np.full(3, 0.1)
    assert regression_metrics(tenth, tenth + 0.1).r2 == 0.0
    assert regression_metrics(tenth, tenth).r2 == 1.0


def test_r2_of_a_single_row_is_undefined_where_scikit_learn_warns() -> None:
    result = regression_metrics([2.0], [3.0])
    assert result.r2 is None and result.undefined == {"r2": "fewer than two rows"}
    assert result.mae == 1.0 and result.rmse == 1.0 and result.mape == 0.5
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(skm.r2_score([2.0], [3.0]))


def test_regression_drops_infinite_values_as_missing() -> None:
    result = regression_metrics([1.0, math.inf, 3.0], [1.0, 2.0, -math.inf])
    assert result.rows == 1 and result.dropped == 2


# --------------------------------------------------------------------------- compute


def test_compute_dispatches_on_task() -> None:
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 100)
    score = rng.random(100)
    assert compute("binary_classification", y, None, score) == classification_metrics(
        y, y_score=score
    ).as_dict()
    binary_labels = compute("binary_classification", [0, 1, 2], [0, 2, 2])
    assert binary_labels["precision"] == 0.5  # one-vs-rest for the largest label, 2
    multi = compute("multiclass_classification", [0, 1, 1], [0, 1, 0])
    assert_matches(multi["f1"], skm.f1_score([0, 1, 1], [0, 1, 0], average="macro"))
    reg = compute("regression", [1.0, 2.0, 4.0], [1.0, 3.0, 3.0])
    assert set(reg) == {"mae", "rmse", "mape", "r2"}
    with pytest.raises(ValueError, match="regression takes y_pred only"):
        compute("regression", [1.0], [1.0], [0.3])


# --------------------------------------------------------------------------- accumulator


def feed(
    acc: PerformanceAccumulator,
    cuts: list[int],
    y: Any,
    pred: Any = None,
    score: Any = None,
) -> None:
    bounds = [0, *sorted(cuts), len(y)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        acc.update(
            y[lo:hi],
            None if pred is None else pred[lo:hi],
            None if score is None else score[lo:hi],
        )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_accumulator_over_chunks_and_merges_equals_one_shot_binary(data: st.DataObject) -> None:
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = data.draw(st.integers(1, 300))
    y = rng.integers(0, 2, n).astype(float)
    score = np.round(rng.random(n), 2)
    y[rng.random(n) < 0.05] = NAN
    score[rng.random(n) < 0.05] = NAN
    cuts = data.draw(st.lists(st.integers(0, n), max_size=6))
    split = data.draw(st.integers(0, n))
    one_shot = classification_metrics(y, y_score=score)

    whole = PerformanceAccumulator("binary_classification")
    feed(whole, cuts, y, score=score)
    assert_same_metrics(whole.metrics(), one_shot)

    left = PerformanceAccumulator("binary_classification")
    right = PerformanceAccumulator("binary_classification")
    feed(left, [c for c in cuts if c < split], y[:split], score=score[:split])
    feed(right, [c - split for c in cuts if c >= split], y[split:], score=score[split:])
    left.merge(right)
    assert_same_metrics(left.metrics(), one_shot)
    assert left.result("binary_classification") == pytest.approx(one_shot.as_dict())


def test_accumulator_with_string_labels_seen_in_different_orders_merges_correctly() -> None:
    rng = np.random.default_rng(12)
    y = rng.choice(np.array(["no", "yes"]), 500)
    pred = rng.choice(np.array(["no", "yes"]), 500)
    score = rng.random(500)
    one_shot = classification_metrics(y, pred, score)
    first = PerformanceAccumulator("binary_classification")
    second = PerformanceAccumulator("binary_classification")
    second.update(y[250:], pred[250:], score[250:])
    first.update(y[:3][y[:3] == "yes"], pred[:3][y[:3] == "yes"], score[:3][y[:3] == "yes"])
    first.update(y[:3][y[:3] != "yes"], pred[:3][y[:3] != "yes"], score[:3][y[:3] != "yes"])
    first.update(y[3:250], pred[3:250], score[3:250])
    second.merge(first)
    assert_same_metrics(second.metrics(), one_shot)


def test_accumulator_over_chunks_and_merges_equals_one_shot_multiclass() -> None:
    rng = np.random.default_rng(21)
    labels = ["a", "b", "c", "d"]
    n = 2000
    y = rng.choice(np.array(labels), n)
    proba = rng.dirichlet(np.ones(4), n)
    one_shot = classification_metrics(y, y_score=proba, labels=labels)
    accs = [PerformanceAccumulator("multiclass_classification", labels=labels) for _ in range(3)]
    for i, lo in enumerate(range(0, n, 137)):
        accs[i % 3].update(y[lo : lo + 137], None, proba[lo : lo + 137])
    accs[0].merge(accs[1])
    accs[0].merge(accs[2])
    assert_same_metrics(accs[0].metrics(), one_shot)

    pred = rng.choice(np.array(labels), n)
    labels_only = PerformanceAccumulator("multiclass_classification")
    feed(labels_only, [10, 500, 501, 1900], y, pred)
    assert_same_metrics(labels_only.metrics(), classification_metrics(y, pred, multiclass=True))


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_accumulator_over_chunks_and_merges_equals_one_shot_regression(
    data: st.DataObject,
) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = data.draw(st.integers(0, 300))
    scale = data.draw(st.sampled_from([1e-3, 1.0, 1e6]))
    y = rng.normal(5, 2, n) * scale
    y[rng.random(n) < 0.1] = 0.0
    pred = y + rng.normal(0, 1, n) * scale
    pred[rng.random(n) < 0.05] = NAN
    cuts = data.draw(st.lists(st.integers(0, n), max_size=8))
    one_shot = regression_metrics(y, pred)
    acc = PerformanceAccumulator("regression")
    feed(acc, cuts, y, pred)
    other = PerformanceAccumulator("regression")
    feed(other, cuts, y, pred)
    assert_same_metrics(acc.metrics(), one_shot)
    acc.merge(PerformanceAccumulator("regression"))
    empty = PerformanceAccumulator("regression")
    empty.merge(other)
    assert_same_metrics(empty.metrics(), one_shot)
    if n >= 2 and data.draw(st.booleans()):
        twice = regression_metrics(np.concatenate([y, y]), np.concatenate([pred, pred]))
        acc.merge(other)
        result = acc.metrics()
        assert result.rows == twice.rows and result.dropped == twice.dropped
        for key, value in twice.as_dict().items():
            assert result.as_dict()[key] == pytest.approx(value, rel=1e-9, abs=1e-9)


def test_accumulator_keeps_constant_target_r2_exact_across_chunks() -> None:
    acc = PerformanceAccumulator("regression")
    for _ in range(7):
        acc.update(np.full(3, 0.1), np.full(3, 0.2))
    assert acc.result()["r2"] == 0.0
    perfect = PerformanceAccumulator("regression")
    perfect.update([0.1, 0.1], [0.1, 0.1])
    perfect.update([0.1], [0.1])
    assert perfect.result()["r2"] == 1.0


def test_accumulator_auc_sample_never_exceeds_cap_and_estimate_is_close() -> None:
    cap = 500
    rng = np.random.default_rng(31)
    acc = PerformanceAccumulator("binary_classification", auc_cap=cap, rng=np.random.default_rng(1))
    ys, scores = [], []
    for _ in range(40):
        y = rng.integers(0, 2, int(rng.integers(1, 400)))
        score = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
        acc.update(y, None, score)
        ys.append(y)
        scores.append(score)
        assert acc.auc_sample_size <= cap
        state = acc._classification
        assert state is not None
        assert state.reservoir.ids.shape[0] <= cap and state.reservoir.values.shape[0] <= cap
    y_all, s_all = np.concatenate(ys), np.concatenate(scores)
    assert acc.rows == len(y_all) > 10 * cap
    result = acc.metrics()
    assert isinstance(result, ClassificationMetrics)
    assert result.estimated == ("roc_auc",)
    exact = classification_metrics(y_all, y_score=s_all)
    assert result.roc_auc == pytest.approx(exact.roc_auc, abs=0.05)
    # label metrics and log loss stay exact past the cap
    for key in ("accuracy", "precision", "recall", "f1", "log_loss"):
        assert result.as_dict()[key] == pytest.approx(exact.as_dict()[key], rel=1e-9)

    other = PerformanceAccumulator("binary_classification", auc_cap=cap, rng=7)
    other.update(y_all[:300], None, s_all[:300])
    acc.merge(other)
    assert acc.auc_sample_size == cap
    small = PerformanceAccumulator("binary_classification", auc_cap=cap, rng=8)
    small.update(y_all[:400], None, s_all[:400])
    small.merge(other)  # 700 > cap rows from two exact samples
    assert small.auc_sample_size == cap
    assert small.metrics().estimated == ("roc_auc",)


def test_accumulator_reservoir_is_a_uniform_sample_of_the_stream() -> None:
    cap, n, runs = 200, 20_000, 20
    index = np.arange(n, dtype=float)
    streamed, merged = [], []
    for seed in range(runs):
        acc = PerformanceAccumulator("binary_classification", auc_cap=cap, rng=seed)
        for lo in range(0, n, 1000):
            acc.update(np.arange(lo, lo + 1000) % 2, None, index[lo : lo + 1000])
        state = acc._classification
        assert state is not None
        assert len(np.unique(state.reservoir.values)) == cap
        streamed.append(state.reservoir.values.mean())

        # 3/4 of the stream in one accumulator, 1/4 in another, then merged
        big = PerformanceAccumulator("binary_classification", auc_cap=cap, rng=seed + 100)
        small = PerformanceAccumulator("binary_classification", auc_cap=cap, rng=seed + 200)
        big.update(np.arange(15_000) % 2, None, index[:15_000])
        small.update(np.arange(5_000) % 2, None, index[15_000:])
        big.merge(small)
        state = big._classification
        assert state is not None
        assert len(np.unique(state.reservoir.values)) == cap
        merged.append(state.reservoir.values.mean())
    # mean of a uniform sample of cap from 0..n-1: (n-1)/2, s.d. about n/sqrt(12 cap)
    sd = n / math.sqrt(12 * cap) / math.sqrt(runs)
    assert np.mean(streamed) == pytest.approx((n - 1) / 2, abs=4 * sd)
    assert np.mean(merged) == pytest.approx((n - 1) / 2, abs=4 * sd)


def test_accumulator_multiclass_sample_is_bounded_by_cap() -> None:
    rng = np.random.default_rng(41)
    acc = PerformanceAccumulator("multiclass_classification", labels=[0, 1, 2], auc_cap=64)
    for _ in range(30):
        acc.update(rng.integers(0, 3, 50), None, rng.dirichlet(np.ones(3), 50))
        state = acc._classification
        assert state is not None
        assert state.reservoir.values.shape[0] <= 64 and state.reservoir.values.shape[1] == 3
    assert acc.metrics().estimated == ("roc_auc",)


def test_accumulator_rejects_mismatched_configuration_and_task() -> None:
    binary = PerformanceAccumulator("binary_classification")
    with pytest.raises(ValueError, match="cannot merge"):
        binary.merge(PerformanceAccumulator("regression"))
    with pytest.raises(ValueError, match="different configurations"):
        binary.merge(PerformanceAccumulator("binary_classification", threshold=0.3))
    with pytest.raises(ValueError, match="computes binary_classification, not regression"):
        binary.result("regression")
    with pytest.raises(ValueError, match="needs labels"):
        PerformanceAccumulator("multiclass_classification").update([0], None, [[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="auc_cap"):
        PerformanceAccumulator("binary_classification", auc_cap=0)
    with pytest.raises(ValueError, match="unknown task"):
        PerformanceAccumulator("clustering")


def test_empty_accumulator_reports_no_labelled_rows() -> None:
    for task in ("binary_classification", "multiclass_classification", "regression"):
        acc = PerformanceAccumulator(task)
        assert acc.result(task) == {}
        assert set(acc.metrics().undefined.values()) == {NO_ROWS}
        assert acc.rows == 0 and acc.dropped == 0


def test_results_are_frozen_dataclasses() -> None:
    result = classification_metrics([0, 1], [0, 1])
    with pytest.raises(AttributeError):
        result.accuracy = 0.0  # type: ignore[misc]
    reg = regression_metrics([1.0, 2.0], [1.0, 2.0])
    assert isinstance(reg, RegressionMetrics)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.as_dict() == {"mae": 0.0, "rmse": 0.0, "mape": 0.0, "r2": 1.0}
