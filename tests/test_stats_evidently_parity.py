"""Our histogram distances equal Evidently 0.7.23's stattests (to 1e-6).

Evidently's functions are called as its drift code calls them: pandas Series
of raw values (strings for categorical data) and a column type.  Ours see the
same data as :class:`NumericSample` or as count vectors over the categories.
Evidently's ``TVD`` stattest is a permutation p-value; our ``tvd`` is the
distance itself, compared with Evidently's ``_total_variation_distance`` on
categories and with an independent numpy formula on histograms.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from monitor.engine.stats.base import Score
from monitor.engine.stats.hellinger import hellinger_categorical, hellinger_numerical
from monitor.engine.stats.jensenshannon import jensenshannon_categorical, jensenshannon_numerical
from monitor.engine.stats.kl import kl_categorical, kl_numerical
from monitor.engine.stats.psi import psi_categorical, psi_numerical
from monitor.engine.stats.samples import NumericSample
from monitor.engine.stats.tvd import tvd_categorical, tvd_numerical
from monitor.engine.stats.wasserstein import wasserstein_numerical

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # evidently touches numpy.core on import
    from evidently.legacy.calculations.stattests import (
        hellinger_distance,
        jensenshannon,
        kl_div,
        psi,
        tvd_stattest,
        wasserstein_distance_norm,
    )
    from evidently.legacy.core import ColumnType

TOL = 1e-6
Array = NDArray[np.float64]
NumericalFn = Callable[[NumericSample, NumericSample], Score]
CategoricalFn = Callable[[Array, Array], Score]


def _evidently(fn: Callable[..., Any], ref: pd.Series, cur: pd.Series, kind: ColumnType) -> float:
    # copies: Evidently's hellinger drops NaNs from its arguments in place
    return float(fn(ref.copy(), cur.copy(), kind, 0.1)[0])


EVIDENTLY_FN: dict[str, Callable[..., Any]] = {
    "psi": psi._psi,
    "jensenshannon": jensenshannon._jensenshannon,
    "kl_div": kl_div._kl_div,
    "hellinger": hellinger_distance._hellinger_distance,
}
NUMERICAL: dict[str, NumericalFn] = {
    "psi": psi_numerical,
    "jensenshannon": jensenshannon_numerical,
    "kl_div": kl_numerical,
    "hellinger": hellinger_numerical,
}
CATEGORICAL: dict[str, CategoricalFn] = {
    "psi": psi_categorical,
    "jensenshannon": jensenshannon_categorical,
    "kl_div": kl_categorical,
    "hellinger": hellinger_categorical,
}


def _numerical_case(name: str) -> tuple[Array, Array]:
    rng = np.random.default_rng(sum(map(ord, name)))
    cases: dict[str, Callable[[], tuple[Array, Array]]] = {
        "continuous 1000 vs 800": lambda: (rng.normal(0, 1, 1000), rng.normal(0.3, 1.1, 800)),
        "continuous 5000 vs 7000": lambda: (rng.lognormal(0, 1, 5000), rng.lognormal(0.1, 1, 7000)),
        "small 30 vs 25": lambda: (rng.normal(0, 1, 30), rng.normal(0, 2, 25)),
        "separated (empty bins)": lambda: (rng.normal(0, 1, 600), rng.normal(6, 1, 400)),
        "discrete 10 values": lambda: (
            rng.integers(0, 10, 900).astype(float),
            rng.integers(2, 14, 700).astype(float),
        ),
        "discrete reference, continuous current": lambda: (
            rng.integers(0, 15, 500).astype(float),
            rng.normal(7, 4, 500),
        ),
        "identical": lambda: (np.arange(200.0) % 37, np.arange(200.0) % 37),
    }
    return cases[name]()


NUMERICAL_CASES = [
    "continuous 1000 vs 800",
    "continuous 5000 vs 7000",
    "small 30 vs 25",
    "separated (empty bins)",
    "discrete 10 values",
    "discrete reference, continuous current",
    "identical",
]


def _categorical_case(name: str) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(sum(map(ord, name)))
    cats = np.array(["north", "south", "east", "west", "centre"])
    cases: dict[str, Callable[[], tuple[Any, Any]]] = {
        "similar": lambda: (
            rng.choice(cats[:4], 2000, p=[0.4, 0.3, 0.2, 0.1]),
            rng.choice(cats[:4], 1500, p=[0.38, 0.32, 0.2, 0.1]),
        ),
        "new and vanished categories": lambda: (
            rng.choice(cats[:4], 800, p=[0.4, 0.3, 0.2, 0.1]),
            rng.choice(cats[1:], 900, p=[0.1, 0.2, 0.3, 0.4]),
        ),
        "binary": lambda: (rng.choice(cats[:2], 300), rng.choice(cats[:2], 250, p=[0.7, 0.3])),
        "rare category": lambda: (
            np.array(["north"] * 99_999 + ["south"]),
            np.array(["north"] * 50_000 + ["south"] * 10 + ["east"]),
        ),
    }
    ref, cur = cases[name]()
    return pd.Series(ref), pd.Series(cur)


CATEGORICAL_CASES = ["similar", "new and vanished categories", "binary", "rare category"]


def _counts(ref: pd.Series, cur: pd.Series) -> tuple[Array, Array]:
    """Count vectors over the sorted union, plus a category seen on neither side."""
    categories = sorted(set(ref) | set(cur)) + ["never seen"]
    r = ref.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    c = cur.value_counts().reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    return r, c


def _close(ours: float, theirs: float) -> None:
    assert abs(ours - theirs) <= TOL, (ours, theirs)


@pytest.mark.parametrize("test", sorted(NUMERICAL))
@pytest.mark.parametrize("case", NUMERICAL_CASES)
def test_binned_distances_equal_evidently_on_numerical_data(test: str, case: str) -> None:
    ref, cur = _numerical_case(case)
    ours = NUMERICAL[test](NumericSample.from_values(ref), NumericSample.from_values(cur))
    theirs = _evidently(EVIDENTLY_FN[test], pd.Series(ref), pd.Series(cur), ColumnType.Numerical)
    _close(ours.statistic, theirs)


@pytest.mark.parametrize("test", sorted(CATEGORICAL))
@pytest.mark.parametrize("case", CATEGORICAL_CASES)
def test_binned_distances_equal_evidently_on_string_categories(test: str, case: str) -> None:
    ref, cur = _categorical_case(case)
    ours = CATEGORICAL[test](*_counts(ref, cur))
    theirs = _evidently(EVIDENTLY_FN[test], ref, cur, ColumnType.Categorical)
    _close(ours.statistic, theirs)


@pytest.mark.parametrize("case", NUMERICAL_CASES)
def test_normed_wasserstein_equals_evidently(case: str) -> None:
    ref, cur = _numerical_case(case)
    ours = wasserstein_numerical(NumericSample.from_values(ref), NumericSample.from_values(cur))
    theirs = _evidently(
        wasserstein_distance_norm._wasserstein_distance_norm,
        pd.Series(ref),
        pd.Series(cur),
        ColumnType.Numerical,
    )
    _close(ours.statistic, theirs)


@pytest.mark.parametrize("case", CATEGORICAL_CASES)
def test_tvd_on_categories_equals_evidentlys_total_variation_distance(case: str) -> None:
    ref, cur = _categorical_case(case)
    theirs = float(tvd_stattest._total_variation_distance(ref, cur))
    _close(tvd_categorical(*_counts(ref, cur)).statistic, theirs)


@pytest.mark.parametrize("case", NUMERICAL_CASES)
def test_tvd_on_numerical_data_equals_half_l1_of_evidentlys_bin_shares(case: str) -> None:
    ref, cur = _numerical_case(case)
    if np.unique(ref).size > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        r = np.histogram(ref, edges)[0] / ref.size
        c = np.histogram(cur, edges)[0] / cur.size
    else:
        values = np.union1d(ref, cur)
        r = np.array([np.sum(ref == v) for v in values]) / ref.size
        c = np.array([np.sum(cur == v) for v in values]) / cur.size
    expected = 0.5 * np.abs(r - c).sum()
    ours = tvd_numerical(NumericSample.from_values(ref), NumericSample.from_values(cur))
    _close(ours.statistic, float(expected))
    if np.unique(ref).size <= 20 and np.unique(cur).size <= 20:  # per-value bins, as Evidently
        _close(
            ours.statistic,
            float(tvd_stattest._total_variation_distance(pd.Series(ref), pd.Series(cur))),
        )


@pytest.mark.parametrize("test", [*sorted(NUMERICAL), "wasserstein", "tvd"])
@pytest.mark.parametrize("repeat", [2, 5])
def test_sketch_grids_give_evidentlys_numbers_for_the_data_they_stand_for(
    test: str, repeat: int
) -> None:
    """A grid whose values each stand for ``repeat`` rows is binned as those rows."""
    rng = np.random.default_rng(repeat)
    ref_grid, cur_grid = np.sort(rng.normal(0, 1, 120)), np.sort(rng.normal(0.5, 1.3, 90))
    ref, cur = np.repeat(ref_grid, repeat), np.repeat(cur_grid, repeat)
    r = NumericSample.from_grid(ref_grid, ref.size)
    c = NumericSample.from_grid(cur_grid, cur.size)
    assert not r.exact
    if test == "wasserstein":
        ours = wasserstein_numerical(r, c).statistic
        theirs = _evidently(
            wasserstein_distance_norm._wasserstein_distance_norm,
            pd.Series(ref),
            pd.Series(cur),
            ColumnType.Numerical,
        )
    elif test == "tvd":
        ours = tvd_numerical(r, c).statistic
        exact = tvd_numerical(NumericSample.from_values(ref), NumericSample.from_values(cur))
        theirs = exact.statistic
    else:
        ours = NUMERICAL[test](r, c).statistic
        theirs = _evidently(
            EVIDENTLY_FN[test], pd.Series(ref), pd.Series(cur), ColumnType.Numerical
        )
    _close(ours, theirs)
