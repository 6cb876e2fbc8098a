"""The drift decision: significant and material, corrected across features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitor.batch.tabular import profile_frame
from monitor.engine.analysis import DriftSettings, FeatureSpec, Materiality, analyze
from monitor.engine.profiles import ProfileSettings

EXACT = ProfileSettings(exact_cap=None)


def profiles(ref: pd.DataFrame, cur: pd.DataFrame, types: dict[str, str]):
    return (profile_frame(ref, types, settings=EXACT),  # type: ignore[arg-type]
            profile_frame(cur, types, settings=EXACT))  # type: ignore[arg-type]


def test_feature_p_values_equal_scipy_and_adjusted_values_equal_scipy_bh(rng):
    ref = pd.DataFrame({f"x{i}": rng.normal(size=800) for i in range(5)})
    cur = pd.DataFrame({f"x{i}": rng.normal(0.05 * i, 1, 600) for i in range(5)})
    types = {c: "numerical" for c in ref}
    r, c = profiles(ref, cur, types)
    report = analyze(r, c, [FeatureSpec(n, "numerical") for n in types])
    raw = [stats.ks_2samp(ref[n], cur[n]).pvalue for n in types]
    adjusted = stats.false_discovery_control(raw, method="bh")
    for f, p, q in zip(report.features, raw, adjusted, strict=True):
        assert f.test == "ks"
        assert f.p_value == pytest.approx(p, abs=1e-12)
        assert f.p_value_adjusted == pytest.approx(q, abs=1e-12)


def test_a_clear_shift_in_one_feature_drifts_that_feature_only(rng):
    ref = pd.DataFrame({"a": rng.normal(size=2000), "b": rng.normal(size=2000)})
    cur = pd.DataFrame({"a": rng.normal(1.0, 1, 1000), "b": rng.normal(size=1000)})
    r, c = profiles(ref, cur, {"a": "numerical", "b": "numerical"})
    report = analyze(r, c, [FeatureSpec("a", "numerical"), FeatureSpec("b", "numerical")])
    drift = {f.name: f.drift for f in report.features}
    assert drift == {"a": True, "b": False}
    assert report.drift_detected and report.drifted_share == 0.5
    assert "any feature" in report.rule


def test_a_tiny_shift_in_a_huge_window_is_significant_but_not_material(rng):
    ref = pd.DataFrame({"a": rng.normal(size=200_000)})
    cur = pd.DataFrame({"a": rng.normal(0.03, 1, 200_000)})
    r, c = profiles(ref, cur, {"a": "numerical"})
    report = analyze(r, c, [FeatureSpec("a", "numerical")])
    (f,) = report.features
    assert f.p_value_adjusted is not None and f.p_value_adjusted < 1e-6
    w = stats.wasserstein_distance(ref["a"], cur["a"]) / np.std(ref["a"])
    assert f.effect_size == pytest.approx(w, rel=1e-9)
    assert not f.drift and "materiality" in f.reason
    assert not report.drift_detected


def test_a_surge_in_missing_values_is_drift_of_that_feature(rng):
    ref = pd.DataFrame({"a": rng.normal(size=3000)})
    values = rng.normal(size=1000)
    values[:150] = np.nan
    cur = pd.DataFrame({"a": values})
    r, c = profiles(ref, cur, {"a": "numerical"})
    (f,) = analyze(r, c, [FeatureSpec("a", "numerical")]).features
    assert f.drift and "missing share" in f.reason
    assert f.missing_share == pytest.approx(0.15)


def test_a_feature_that_is_entirely_missing_in_the_current_window_drifts_with_the_reason(rng):
    ref = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    cur = pd.DataFrame({"a": [np.nan] * 50, "b": rng.normal(size=50)})
    r, c = profiles(ref, cur, {"a": "numerical", "b": "numerical"})
    report = analyze(r, c, [FeatureSpec("a", "numerical"), FeatureSpec("b", "numerical")])
    a = report.features[0]
    assert a.drift and "all missing" in a.reason
    assert any(q.issue == "all_missing" and q.feature == "a" for q in report.quality)


def test_categorical_features_use_chi_square_with_p_values_equal_scipy(rng):
    ref = pd.DataFrame({"c": rng.choice(list("abcd"), 3000, p=[0.4, 0.3, 0.2, 0.1])})
    cur = pd.DataFrame({"c": rng.choice(list("abcd"), 1000, p=[0.3, 0.3, 0.2, 0.2])})
    r, c = profiles(ref, cur, {"c": "categorical"})
    (f,) = analyze(r, c, [FeatureSpec("c", "categorical")]).features
    table = np.array([ref["c"].value_counts().sort_index(), cur["c"].value_counts().sort_index()])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert f.test == "chisquare"
    assert f.statistic == pytest.approx(chi2, rel=1e-9)
    assert f.p_value == pytest.approx(p, rel=1e-9)
    assert f.drift


def test_a_binary_feature_uses_the_two_proportion_z_test(rng):
    ref = pd.DataFrame({"m": rng.random(2000) < 0.3})
    cur = pd.DataFrame({"m": rng.random(1000) < 0.45})
    r, c = profiles(ref, cur, {"m": "boolean"})
    (f,) = analyze(r, c, [FeatureSpec("m", "boolean")]).features
    table = np.array([[ref["m"].sum(), (~ref["m"]).sum()], [cur["m"].sum(), (~cur["m"]).sum()]])
    _, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert f.test == "z" and f.p_value == pytest.approx(p, rel=1e-9)
    assert f.drift


def test_an_explicit_distance_test_decides_by_its_own_threshold(rng):
    ref = pd.DataFrame({"c": rng.choice(list("abc"), 3000, p=[0.5, 0.3, 0.2])})
    cur = pd.DataFrame({"c": rng.choice(list("abc"), 3000, p=[0.2, 0.3, 0.5])})
    r, c = profiles(ref, cur, {"c": "categorical"})
    (f,) = analyze(r, c, [FeatureSpec("c", "categorical", test="psi", threshold=0.2)]).features
    assert f.test == "psi" and f.kind == "distance" and f.p_value is None
    assert f.statistic is not None and f.statistic >= 0.2 and f.drift


def test_unseen_categories_are_reported_as_quality_findings(rng):
    ref = pd.DataFrame({"c": rng.choice(list("ab"), 500)})
    cur = pd.DataFrame({"c": rng.choice(list("abz"), 500)})
    r, c = profiles(ref, cur, {"c": "categorical"})
    report = analyze(r, c, [FeatureSpec("c", "categorical")])
    assert report.features[0].new_categories == ("z",)
    assert any(q.issue == "new_categories" and "z" in q.detail for q in report.quality)


def test_the_share_rule_needs_the_share_of_drifted_features(rng):
    ref = pd.DataFrame({k: rng.normal(size=1000) for k in "abcd"})
    cur = pd.DataFrame({k: rng.normal(2.0 if k == "a" else 0.0, 1, 1000) for k in "abcd"})
    types = {k: "numerical" for k in "abcd"}
    r, c = profiles(ref, cur, types)
    specs = [FeatureSpec(k, "numerical") for k in "abcd"]
    assert analyze(r, c, specs).drift_detected
    lenient = DriftSettings(dataset_share=0.5, materiality=Materiality())
    report = analyze(r, c, specs, lenient)
    assert report.drifted_features == 1 and not report.drift_detected
    assert "50%" in report.rule


def test_bonferroni_adjusted_p_values_are_the_raw_ones_times_the_family_size(rng):
    ref = pd.DataFrame({k: rng.normal(size=500) for k in "abc"})
    cur = pd.DataFrame({k: rng.normal(0.1, 1, 400) for k in "abc"})
    r, c = profiles(ref, cur, {k: "numerical" for k in "abc"})
    report = analyze(r, c, [FeatureSpec(k, "numerical") for k in "abc"],
                     DriftSettings(correction="bonferroni"))
    for f in report.features:
        assert f.p_value is not None
        assert f.p_value_adjusted == pytest.approx(min(1.0, 3 * f.p_value), rel=1e-12)
