"""Our scipy-backed tests give scipy's numbers (to 1e-9) on the same data.

Each case is a (reference, current) pair: continuous and tied (integer) data,
equal and unequal sizes, tiny samples (exact p-value paths) and samples over
10,000 (asymptotic paths).  Statistics come from our pooled / one-pass
representations; scipy sees the raw arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import stats

from monitor.engine.stats import ecdf
from monitor.engine.stats.anderson import anderson_test
from monitor.engine.stats.chisquare import chisquare_categorical, chisquare_numerical
from monitor.engine.stats.corrections import adjust, benjamini_hochberg, bonferroni
from monitor.engine.stats.cramervonmises import cramervonmises_test
from monitor.engine.stats.energy import energy_distance
from monitor.engine.stats.ks import ks_test
from monitor.engine.stats.samples import NumericSample
from monitor.engine.stats.wasserstein import wasserstein_distance
from monitor.engine.stats.ztest import two_proportion_z, z_categorical

TOL = 1e-9
Array = NDArray[np.float64]


def _case(name: str) -> tuple[Array, Array]:
    rng = np.random.default_rng(sum(map(ord, name)))
    maker: dict[str, Callable[[], tuple[Array, Array]]] = {
        "continuous 7 vs 5": lambda: (rng.normal(0, 1, 7), rng.normal(0.3, 1, 5)),
        "continuous 20 vs 20": lambda: (rng.normal(0, 1, 20), rng.normal(0.5, 1, 20)),
        "ties 12 vs 9": lambda: (
            rng.integers(0, 5, 12).astype(float),
            rng.integers(0, 5, 9).astype(float),
        ),
        "ties 300 vs 450": lambda: (
            rng.integers(0, 10, 300).astype(float),
            rng.integers(1, 12, 450).astype(float),
        ),
        "continuous 1000 vs 700": lambda: (rng.normal(0, 1, 1000), rng.normal(0.1, 1.2, 700)),
        "continuous 12000 vs 15000": lambda: (
            rng.normal(0, 1, 12_000),
            rng.normal(0.02, 1, 15_000),
        ),
        "ties 11000 vs 10500": lambda: (
            rng.integers(0, 50, 11_000).astype(float),
            rng.integers(0, 52, 10_500).astype(float),
        ),
        "unequal 10001 vs 30": lambda: (rng.exponential(1, 10_001), rng.exponential(1.5, 30)),
        "identical ties 400": lambda: (np.repeat(np.arange(8.0), 50), np.tile(np.arange(8.0), 50)),
    }
    return maker[name]()


CASES = [
    "continuous 7 vs 5",
    "continuous 20 vs 20",
    "ties 12 vs 9",
    "ties 300 vs 450",
    "continuous 1000 vs 700",
    "continuous 12000 vs 15000",
    "ties 11000 vs 10500",
    "unequal 10001 vs 30",
    "identical ties 400",
]
TIED_CASES = [c for c in CASES if "ties" in c]


def _samples(name: str) -> tuple[Array, Array, NumericSample, NumericSample]:
    ref, cur = _case(name)
    return ref, cur, NumericSample.from_values(ref), NumericSample.from_values(cur)


def _close(ours: float | None, theirs: float) -> None:
    assert ours is not None
    assert abs(ours - float(theirs)) <= TOL, (ours, float(theirs))


def _quiet_anderson(ref: Array, cur: Array, **kwargs: object) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns when it caps the p-value
        res = stats.anderson_ksamp([ref, cur], **kwargs)
    return float(res.statistic), float(res.pvalue)


@pytest.mark.parametrize("name", CASES)
def test_ks_statistic_and_p_value_equal_scipy_on_exact_samples(name: str) -> None:
    ref, cur, r, c = _samples(name)
    expected = stats.ks_2samp(ref, cur)
    score = ks_test(r, c)
    _close(score.statistic, expected.statistic)
    _close(score.p_value, expected.pvalue)


@pytest.mark.parametrize("name", CASES)
def test_raw_wasserstein_and_energy_distances_equal_scipy(name: str) -> None:
    ref, cur, r, c = _samples(name)
    _close(wasserstein_distance(r, c), stats.wasserstein_distance(ref, cur))
    _close(energy_distance(r, c), stats.energy_distance(ref, cur))


@pytest.mark.parametrize("name", CASES)
def test_anderson_darling_statistic_and_p_value_equal_scipy_midrank(name: str) -> None:
    ref, cur, r, c = _samples(name)
    statistic, p_value = _quiet_anderson(ref, cur, variant="midrank")
    score = anderson_test(r, c)
    _close(score.statistic, statistic)
    _close(score.p_value, p_value)


def test_anderson_darling_matches_scipy_default_call_and_never_warns() -> None:
    ref, cur, r, c = _samples("ties 300 vs 450")
    statistic, p_value = _quiet_anderson(ref, cur)  # legacy default: midrank=True
    score = anderson_test(r, c)  # filterwarnings=error: any warning fails here
    _close(score.statistic, statistic)
    _close(score.p_value, p_value)
    far = anderson_test(r, NumericSample.from_values(cur + 100))
    near = anderson_test(r, r)
    assert far.p_value == 0.001 and near.p_value == 0.25


@pytest.mark.parametrize("name", CASES)
def test_cramer_von_mises_statistic_and_p_value_equal_scipy_auto_method(name: str) -> None:
    ref, cur, r, c = _samples(name)
    expected = stats.cramervonmises_2samp(ref, cur)
    score = cramervonmises_test(r, c)
    _close(score.statistic, expected.statistic)
    _close(score.p_value, expected.pvalue)


def _table(ref: Array, cur: Array) -> NDArray[np.int64]:
    values = np.union1d(ref, cur)
    return np.vstack(
        [
            np.array([np.sum(ref == v) for v in values]),
            np.array([np.sum(cur == v) for v in values]),
        ]
    )


@pytest.mark.parametrize("name", TIED_CASES)
def test_chisquare_on_discrete_numerical_values_equals_chi2_contingency(name: str) -> None:
    ref, cur, r, c = _samples(name)
    table = _table(ref, cur)
    expected = stats.chi2_contingency(table, correction=False)
    score = chisquare_numerical(r, c)
    _close(score.statistic, expected.statistic)
    _close(score.p_value, expected.pvalue)
    _close(
        chisquare_categorical(table[0].astype(float), table[1].astype(float)).p_value,
        expected.pvalue,
    )


@pytest.mark.parametrize(
    ("ref", "cur"),
    [
        ([30, 70], [45, 55]),  # dof 1: no Yates correction
        ([120, 0, 30, 50, 0], [100, 0, 60, 40, 7]),  # empty categories dropped
        ([5, 3, 1, 0, 12, 40], [7, 0, 2, 9, 10, 33]),
        ([1_000_000, 3, 250_000], [900_000, 11, 260_000]),
    ],
)
def test_chisquare_categorical_equals_chi2_contingency_without_correction(
    ref: list[int], cur: list[int]
) -> None:
    table = np.array([ref, cur])
    kept = table[:, table.sum(axis=0) > 0]
    expected = stats.chi2_contingency(kept, correction=False)
    score = chisquare_categorical(np.array(ref, dtype=float), np.array(cur, dtype=float))
    _close(score.statistic, expected.statistic)
    _close(score.p_value, expected.pvalue)


def test_chisquare_with_a_single_category_is_no_evidence_of_drift() -> None:
    score = chisquare_categorical(np.array([10.0, 0.0]), np.array([4.0, 0.0]))
    assert (score.statistic, score.p_value) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(30, 100, 50, 100), (5, 1000, 9, 800), (4990, 10_000, 5120, 10_500), (1, 3, 2, 4)],
)
def test_two_proportion_z_equals_normal_formula_and_chi2_contingency(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    score = two_proportion_z(x1, n1, x2, n2)
    pooled = (x1 + x2) / (n1 + n2)
    z = (x1 / n1 - x2 / n2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    _close(score.statistic, z)
    _close(score.p_value, 2 * stats.norm.sf(abs(z)))
    chi2 = stats.chi2_contingency(np.array([[x1, n1 - x1], [x2, n2 - x2]]), correction=False)
    _close(score.statistic**2, chi2.statistic)
    _close(score.p_value, chi2.pvalue)


def test_two_proportion_z_without_variation_is_p_one_and_without_rows_is_no_data() -> None:
    assert two_proportion_z(0, 10, 0, 20).p_value == 1.0
    assert two_proportion_z(10, 10, 20, 20).p_value == 1.0
    assert np.isnan(two_proportion_z(0, 0, 1, 2).statistic)


def test_z_test_on_many_categories_tests_the_top_reference_category_against_the_rest() -> None:
    ref, cur = np.array([10.0, 60.0, 30.0]), np.array([20.0, 40.0, 40.0])
    expected = two_proportion_z(60, 100, 40, 100)
    assert expected.p_value is not None
    _close(z_categorical(ref, cur).statistic, expected.statistic)
    _close(z_categorical(ref, cur).p_value, expected.p_value)


@pytest.mark.parametrize("name", CASES)
def test_ecdf_kernel_and_numpy_fallback_give_the_same_numbers(name: str) -> None:
    _, _, r, c = _samples(name)
    grid_r = NumericSample.from_grid(r.values[:: max(1, r.size // 50)], r.n)
    for a, b in [(r, c), (c, r), (grid_r, c)]:
        fast, slow = ecdf.compare(a, b), ecdf.compare(a, b, use_kernel=False)
        for field in ("ref_above", "cur_above", "l1", "l2_squared"):
            assert abs(getattr(fast, field) - getattr(slow, field)) <= TOL, field


@pytest.mark.parametrize("repeat", [2, 3])
def test_sketch_samples_score_as_the_data_they_stand_for(repeat: int) -> None:
    """A grid whose values each stand for ``repeat`` observations is that data, repeated."""
    rng = np.random.default_rng(repeat)
    ref_grid, cur_grid = np.sort(rng.normal(0, 1, 40)), np.sort(rng.normal(0.4, 1, 30))
    ref, cur = np.repeat(ref_grid, repeat), np.repeat(cur_grid, repeat)
    r = NumericSample.from_grid(ref_grid, ref.size)
    c = NumericSample.from_grid(cur_grid, cur.size)
    assert not r.exact and r.weight == repeat
    statistic, p_value = _quiet_anderson(ref, cur, variant="midrank")
    _close(anderson_test(r, c).statistic, statistic)
    _close(anderson_test(r, c).p_value, p_value)
    cvm = stats.cramervonmises_2samp(ref, cur)
    _close(cramervonmises_test(r, c).statistic, cvm.statistic)
    _close(cramervonmises_test(r, c).p_value, cvm.pvalue)
    _close(ks_test(r, c).statistic, stats.ks_2samp(ref, cur).statistic)
    _close(wasserstein_distance(r, c), stats.wasserstein_distance(ref, cur))
    _close(energy_distance(r, c), stats.energy_distance(ref, cur))
    chi2 = stats.chi2_contingency(_table(ref, cur), correction=False)
    _close(chisquare_numerical(r, c).p_value, chi2.pvalue)


@pytest.mark.parametrize("size", [1, 2, 7, 50, 1000])
def test_benjamini_hochberg_equals_scipy_false_discovery_control(size: int) -> None:
    rng = np.random.default_rng(size)
    p = np.concatenate([rng.uniform(0, 1, size), rng.uniform(0, 0.01, size // 3)])
    p[::4] = p[0]  # ties
    ours = benjamini_hochberg(p)
    assert np.max(np.abs(ours - stats.false_discovery_control(p, method="bh"))) <= 1e-12
    assert np.all(np.diff(ours[np.argsort(p, kind="stable")]) >= 0)  # monotone in p
    assert np.all(ours <= 1.0) and np.array_equal(adjust(p, "bh"), ours)


def test_corrections_pass_nan_through_and_leave_it_out_of_the_count() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan, 0.5, 0.2])
    known = ~np.isnan(p)
    bh = benjamini_hochberg(p)
    assert np.array_equal(np.isnan(bh), ~known)
    expected = stats.false_discovery_control(p[known], method="bh")
    assert np.max(np.abs(bh[known] - expected)) <= 1e-12
    bonf = bonferroni(list(p))
    assert np.array_equal(np.isnan(bonf), ~known)
    assert np.max(np.abs(bonf[known] - np.minimum(p[known] * 5, 1.0))) <= 1e-12
    assert np.array_equal(adjust(p, "bonferroni"), bonf, equal_nan=True)
    assert np.array_equal(adjust(p, "none"), p, equal_nan=True)
    assert adjust([], "bh").size == 0 and np.isnan(bonferroni([np.nan])).all()


def test_corrections_reject_values_that_are_not_probabilities() -> None:
    with pytest.raises(ValueError):
        bonferroni([0.5, 1.5])
    with pytest.raises(ValueError):
        benjamini_hochberg([-0.1])
