"""The Evidently report is rebuilt from profiles alone: each rebuilt column has
its profile's distribution, Evidently sees the drift that is there and only
that, and the page says the rows are reconstructed."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitor.batch import evidently_report
from monitor.batch.evidently_report import apportion, reconstruct, render_html
from monitor.batch.tabular import profile_frame
from monitor.engine.analysis import FeatureSpec
from monitor.engine.profiles import (
    OTHER,
    CategoricalProfile,
    FeatureType,
    NumericProfile,
    Profile,
    ProfileSettings,
)
from monitor.errors import InputError

TYPES: dict[str, FeatureType] = {
    "income": "numerical",  # shifted in the current window
    "age": "numerical",
    "score": "numerical",
    "children": "numerical",  # integers
    "tenure": "numerical",  # 10% missing
    "region": "categorical",  # mix changed in the current window
    "channel": "categorical",
    "is_member": "boolean",
}
SPECS = [FeatureSpec(name, kind) for name, kind in TYPES.items()]
DRIFTED = {"income", "region"}
REF_ROWS, CUR_ROWS = 20_000, 4_000
SKETCHED = ProfileSettings(exact_cap=2_000)


def make_frame(rng: np.random.Generator, n: int, *, drift: bool) -> pd.DataFrame:
    tenure = rng.gamma(2.0, 3.0, n)
    tenure[rng.random(n) < 0.1] = np.nan
    region_p = [0.2, 0.3, 0.2, 0.3] if drift else [0.4, 0.3, 0.2, 0.1]
    return pd.DataFrame({
        "income": rng.lognormal(10.4 if drift else 10.0, 0.5, n),
        "age": rng.normal(40, 10, n),
        "score": rng.uniform(0, 1, n),
        "children": rng.integers(0, 4, n),
        "tenure": tenure,
        "region": rng.choice(["north", "south", "east", "west"], n, p=region_p),
        "channel": rng.choice(["web", "app", "branch"], n),
        "is_member": rng.random(n) < 0.3,
    })


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(20260301)
    return {"reference": make_frame(rng, REF_ROWS, drift=False),
            "current": make_frame(rng, CUR_ROWS, drift=True)}


@pytest.fixture(scope="module")
def profiles(frames: Mapping[str, pd.DataFrame]) -> dict[str, Profile]:
    return {
        "reference": profile_frame(frames["reference"], TYPES),
        "reference_sketched": profile_frame(frames["reference"], TYPES, settings=SKETCHED),
        "current": profile_frame(frames["current"], TYPES),
    }


@pytest.fixture(scope="module")
def ev() -> Any:
    """The evidently module, imported once for the whole file."""
    try:
        evidently, _ = evidently_report._evidently()
    except RuntimeError:
        pytest.skip("evidently is not installed")
    return evidently


@pytest.fixture(scope="module")
def page(ev: Any, profiles: Mapping[str, Profile]) -> str:
    return render_html(profiles["reference_sketched"], profiles["current"], SPECS, title="model fraud-v3")


def original(frames: Mapping[str, pd.DataFrame], key: str) -> pd.DataFrame:
    return frames["current" if key == "current" else "reference"]


@pytest.mark.parametrize(("key", "max_rows"), [
    ("reference", 5000), ("reference_sketched", 5000), ("current", 5000), ("current", 1500)])
def test_rebuilt_numerical_columns_have_the_profiled_distribution(
        frames: Mapping[str, pd.DataFrame], profiles: Mapping[str, Profile], key: str, max_rows: int) -> None:
    profile = profiles[key]
    rebuilt = reconstruct(profile, SPECS, max_rows=max_rows)
    n = min(max_rows, profile.rows)
    assert list(rebuilt.columns) == list(TYPES) and len(rebuilt) == n
    for name, kind in TYPES.items():
        if kind != "numerical":
            continue
        feature = profile.features[name]
        assert isinstance(feature, NumericProfile)
        data = original(frames, key)[name].to_numpy(dtype=float)
        column = rebuilt[name].to_numpy(dtype=float)
        result = stats.ks_2samp(column[~np.isnan(column)], data[~np.isnan(data)])
        assert result.statistic < 0.02, (key, name, result.statistic)
        assert abs(np.isnan(column).mean() - feature.missing_share) <= 1 / n
    # integers stay integers: quantiles are read off the sample, not interpolated
    children = rebuilt["children"].dropna().to_numpy()
    assert set(np.unique(children)) <= {0.0, 1.0, 2.0, 3.0}


def test_an_exact_sample_rebuilt_at_its_own_size_is_the_data_reordered(
        frames: Mapping[str, pd.DataFrame], profiles: Mapping[str, Profile]) -> None:
    rebuilt = reconstruct(profiles["current"], SPECS, max_rows=CUR_ROWS)
    for name in ("income", "age", "children"):
        assert np.array_equal(np.sort(rebuilt[name].to_numpy(dtype=float)),
                              np.sort(frames["current"][name].to_numpy(dtype=float)))


@pytest.mark.parametrize(("key", "max_rows"), [("reference", 5000), ("current", 5000), ("current", 777)])
def test_rebuilt_category_shares_are_within_one_row_of_the_profile(
        profiles: Mapping[str, Profile], key: str, max_rows: int) -> None:
    profile = profiles[key]
    rebuilt = reconstruct(profile, SPECS, max_rows=max_rows)
    n = len(rebuilt)
    for name in ("region", "channel", "is_member"):
        feature = profile.features[name]
        assert isinstance(feature, CategoricalProfile)
        shares = rebuilt[name].value_counts(normalize=True, dropna=False)
        for label, count in feature.as_dict().items():
            assert abs(shares.get(label, 0.0) - count / feature.rows) <= 1 / n, (name, label)
        assert set(shares.index) <= {*feature.as_dict(), None}


def test_missing_values_and_the_other_bucket_are_rebuilt_in_proportion() -> None:
    values = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 10 + [None] * 10, dtype=object)
    frame = pd.DataFrame({"x": np.r_[np.arange(90.0), [np.nan] * 10], "c": values})
    profile = profile_frame(frame, {"x": "numerical", "c": "categorical"},
                            settings=ProfileSettings(max_categories=2))
    specs = [FeatureSpec("x", "numerical"), FeatureSpec("c", "categorical")]
    rebuilt = reconstruct(profile, specs, max_rows=20)
    assert rebuilt["x"].isna().sum() == 2
    assert rebuilt["c"].value_counts(dropna=False).to_dict() == {"a": 10, "b": 6, OTHER: 2, None: 2}


def test_the_rebuild_is_deterministic_and_the_columns_are_shuffled(profiles: Mapping[str, Profile]) -> None:
    first = reconstruct(profiles["current"], SPECS)
    again = reconstruct(profiles["current"], SPECS)
    pd.testing.assert_frame_equal(first, again)
    # not sorted, and no artificial rank correlation between independent features
    assert not first["age"].is_monotonic_increasing
    rho = stats.spearmanr(first["age"], first["score"]).statistic
    assert abs(rho) < 0.05


def test_largest_remainder_apportionment_keeps_every_part_within_one_of_its_quota() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        weights = rng.integers(0, 1000, rng.integers(1, 12))
        n = int(rng.integers(0, 5000))
        parts = apportion(weights.tolist(), n)
        if weights.sum() == 0:
            assert parts.sum() == 0
            continue
        assert parts.sum() == n
        assert np.all(np.abs(parts - n * weights / weights.sum()) < 1)


def test_the_html_is_a_full_document_with_the_reconstruction_banner_naming_every_feature(page: str) -> None:
    text = page.strip()
    assert text.startswith("<!DOCTYPE html>") and text.endswith("</html>")
    body = text.index("<body>")
    banner_at = text.index('id="driftline-banner"')
    assert body < banner_at < text.index('<div id="root_')
    banner = text[banner_at:text.index("</div>", banner_at)]
    assert "reconstructed per feature from the driftline profiles" in banner
    assert "cross-feature correlations are not shown" in banner
    assert "model fraud-v3" in banner and "<title>model fraud-v3</title>" in text
    for name in TYPES:
        assert name in banner
    assert "Sketched" in banner and "income" in banner


def test_evidently_flags_the_shifted_features_and_only_them_on_the_rebuilt_frames(
        ev: Any, frames: Mapping[str, pd.DataFrame], profiles: Mapping[str, Profile]) -> None:
    from evidently.presets import DataDriftPreset

    definition = ev.DataDefinition(
        numerical_columns=[s.name for s in SPECS if s.type == "numerical"],
        categorical_columns=[s.name for s in SPECS if s.type != "numerical"])

    def run(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[dict[str, bool], dict[str, float]]:
        snapshot = ev.Report([DataDriftPreset()], include_tests=True).run(
            ev.Dataset.from_pandas(cur, data_definition=definition),
            ev.Dataset.from_pandas(ref, data_definition=definition))
        result = snapshot.dict()
        verdicts = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
                    for t in result["tests"]
                    if t["metric_config"]["params"]["type"] == "evidently:metric_v2:ValueDrift"}
        scores = {m["config"]["column"]: float(m["value"]) for m in result["metrics"]
                  if m["config"]["type"] == "evidently:metric_v2:ValueDrift"}
        return verdicts, scores

    verdicts, scores = run(reconstruct(profiles["reference_sketched"], SPECS, side="reference"),
                           reconstruct(profiles["current"], SPECS, side="current"))
    assert verdicts.keys() == TYPES.keys()
    assert {name for name, drift in verdicts.items() if drift} == DRIFTED
    # and Evidently scores the rebuilt columns as it scores the raw data
    raw = {side: frames[side].astype({"is_member": str}).replace({"is_member": {"True": "true",
                                                                               "False": "false"}})
           for side in ("reference", "current")}
    raw_verdicts, raw_scores = run(raw["reference"], raw["current"])
    assert raw_verdicts == verdicts
    for name, score in scores.items():
        assert score == pytest.approx(raw_scores[name], abs=0.01), name


def test_a_feature_with_no_values_on_one_side_is_left_out_and_named(
        ev: Any, frames: Mapping[str, pd.DataFrame], profiles: Mapping[str, Profile]) -> None:
    small = frames["current"].iloc[:300].copy()
    small["age"] = np.nan
    current = profile_frame(small, TYPES)
    specs = [FeatureSpec("age", "numerical"), FeatureSpec("channel", "categorical"),
             FeatureSpec("gone", "numerical")]
    page = render_html(profiles["reference"], current, specs, title="t", max_rows=500)
    banner = page[page.index('id="driftline-banner"'):]
    assert "Not in this report (no values on one side): age, gone" in banner
    with pytest.raises(InputError, match="no monitored feature"):
        render_html(profiles["reference"], current, specs[:1], title="t")


def test_a_feature_profiled_as_another_kind_is_refused(profiles: Mapping[str, Profile]) -> None:
    with pytest.raises(InputError, match="configured as categorical but profiled as numerical"):
        reconstruct(profiles["current"], [FeatureSpec("age", "categorical")])


def test_without_evidently_the_report_asks_for_the_extra(
        monkeypatch: pytest.MonkeyPatch, profiles: Mapping[str, Profile]) -> None:
    monkeypatch.setitem(sys.modules, "evidently", None)
    with pytest.raises(RuntimeError) as info:
        render_html(profiles["reference"], profiles["current"], SPECS, title="t")
    assert str(info.value) == ("the Evidently report needs the 'evidently' extra: "
                               "pip install 'driftline[evidently]'")


@pytest.mark.parametrize(("dataset_share", "verdict"), [
    (None, "Dataset Drift is detected. Dataset drift detection threshold is 1e-06"),
    (0.99, "Dataset Drift is NOT detected. Dataset drift detection threshold is 0.99")])
def test_the_report_decides_dataset_drift_by_the_model_rule_not_evidently_default_of_half(
        ev: Any, profiles: Mapping[str, Profile], dataset_share: float | None, verdict: str) -> None:
    # fewer than half of the features drift, so Evidently's default (0.5) would say "NOT detected"
    assert 0 < len(DRIFTED) / len(SPECS) < 0.5
    page = render_html(profiles["reference"], profiles["current"], SPECS, title="t", max_rows=1500,
                       dataset_share=dataset_share)
    assert verdict in page
