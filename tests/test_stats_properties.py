"""Properties every registered test must have, checked with hypothesis.

One property test, parametrized over every registered test and every data
kind it supports:

* identical samples do not drift;
* a two-standard-deviation mean shift (numerical, at least 200 rows a side)
  or a big change of category frequencies (categorical) does drift;
* the result does not depend on row order;
* a symmetric test gives the same statistic with the samples swapped;
* empty or all-NaN input gives a NaN statistic, no p-value and no drift,
  without raising.

Numerical data are normal draws rounded to 0.1 standard deviation (ties, and
few enough distinct values that chi-square on the values is meaningful),
then moved and scaled.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from monitor.engine.stats import registry
from monitor.engine.stats.base import Score, StatTest
from monitor.engine.stats.samples import NumericSample

CASES = [
    pytest.param(test, kind, id=f"{test.name}-{kind}")
    for test in registry.all_tests()
    for kind in ("numerical", "categorical")
    if (test.supports_numerical if kind == "numerical" else test.supports_categorical)
]


def _same(a: Score, b: Score) -> bool:
    def eq(x: float | None, y: float | None) -> bool:
        if x is None or y is None:
            return x is y
        return (math.isnan(x) and math.isnan(y)) or x == y

    return eq(a.statistic, b.statistic) and eq(a.p_value, b.p_value)


def _is_no_data(score: Score) -> bool:
    return math.isnan(score.statistic) and score.p_value is None


def _numerical_rows(
    rng: np.random.Generator, rows: int, loc: float, scale: float, shift: float
) -> NDArray[np.float64]:
    return loc + scale * (np.round(rng.normal(0.0, 1.0, rows), 1) + shift)


def _category_rows(rng: np.random.Generator, rows: int, k: int, top: int) -> NDArray[np.int64]:
    """Labels 0..k-1 with 80% on ``top`` and the rest spread at random."""
    rest = rng.dirichlet(np.ones(k - 1)) * 0.2
    p = np.insert(rest, top, 0.8)
    return rng.choice(k, size=rows, p=p / p.sum())


@pytest.mark.parametrize(("test", "kind"), CASES)
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(200, 1500),
    m=st.integers(200, 1500),
    loc=st.sampled_from([0.0, -3.5, 1e3]),
    scale=st.sampled_from([1e-3, 0.5, 1.0, 37.0, 1e3]),
    k=st.integers(2, 6),
    nan_rows=st.integers(1, 5),
)
def test_registered_tests_ignore_identical_data_flag_big_shifts_and_handle_no_data(
    test: StatTest,
    kind: str,
    seed: int,
    n: int,
    m: int,
    loc: float,
    scale: float,
    k: int,
    nan_rows: int,
) -> None:
    rng = np.random.default_rng(seed)
    if kind == "numerical":
        numerical = test.numerical
        assert numerical is not None

        def score(ref: NDArray[np.float64], cur: NDArray[np.float64]) -> Score:
            return numerical(NumericSample.from_values(ref), NumericSample.from_values(cur))

        ref = _numerical_rows(rng, n, loc, scale, 0.0)
        moved = _numerical_rows(rng, m, loc, scale, 2.0)
        empties = [np.empty(0), np.full(nan_rows, np.nan)]
    else:
        categorical = test.categorical
        assert categorical is not None

        def score(ref: NDArray[np.float64], cur: NDArray[np.float64]) -> Score:
            counts_ref = np.bincount(ref.astype(np.int64), minlength=k).astype(np.float64)
            counts_cur = np.bincount(cur.astype(np.int64), minlength=k).astype(np.float64)
            return categorical(counts_ref, counts_cur)

        top = int(rng.integers(k))
        other = int((top + rng.integers(1, k)) % k)
        ref = _category_rows(rng, n, k, top).astype(np.float64)
        moved = _category_rows(rng, m, k, other).astype(np.float64)
        empties = [np.empty(0)]  # no rows: all counts zero (NaN labels are not counted)

    # identical samples do not drift
    same = score(ref, rng.permutation(ref))
    assert not test.decide(same), same

    # a big shift drifts
    shifted = score(ref, moved)
    assert test.decide(shifted), shifted
    assert math.isfinite(shifted.statistic)

    # row order does not matter
    assert _same(score(rng.permutation(ref), rng.permutation(moved)), shifted)

    # symmetric tests do not care which side is the reference
    if test.symmetric:
        swapped = score(moved, ref)
        assert math.isclose(swapped.statistic, shifted.statistic, rel_tol=1e-9, abs_tol=1e-12)

    # no data: NaN statistic, no p-value, no drift, no exception
    for empty in empties:
        for result in (score(empty, ref), score(ref, empty), score(empty, empty)):
            assert _is_no_data(result), result
            assert not test.decide(result)
