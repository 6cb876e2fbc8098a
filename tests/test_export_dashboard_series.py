"""The series the dashboards draw beside the drift scores, checked against the analysis itself.

A real model setup from ``sample_data/driftline.yaml`` takes 1,000 July flights (a few values
blanked and a carrier renamed, so that missing shares, new categories and quality findings
have something to show); its window is exported, and every new series is compared with an
independent run of :func:`monitor.engine.analysis.analyze` over the same rows.
"""

from __future__ import annotations

import ast
import inspect
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.batch import tabular
from monitor.config import load_config
from monitor.engine import quality as quality_module
from monitor.engine.analysis import (
    DRIFT_REASON_CODES,
    DRIFTING_REASON_CODES,
    DriftReport,
    DriftSettings,
    FeatureSpec,
    analyze,
)
from monitor.engine.profiles import ProfileSettings
from monitor.engine.windows import WindowSpec
from monitor.runtime import exposition
from monitor.service.export import make_registry
from monitor.streaming import model_state
from monitor.streaming.model_state import ModelMonitor, ModelSetup
from monitor.streaming.setups import model_setup
from monitor.streaming.status import QUALITY_ISSUES, FeatureResult, ServiceStatus, WindowReport
from monitor.wire.decode import decode_predictions, encode_predictions

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
MODEL = "flight-delay"
ROWS = 1000  # the sample config's window size


def _clock() -> float:
    return 1_800_000_000.0


@pytest.fixture(scope="module")
def setup() -> ModelSetup:
    return model_setup(load_config(SAMPLE / "driftline.yaml"), MODEL, created_at="")


@pytest.fixture(scope="module")
def july() -> pd.DataFrame:
    frame = pd.read_parquet(SAMPLE / "flights" / "current.parquet").iloc[:ROWS].copy()
    frame.loc[frame.index[:150], "air_time"] = np.nan  # a missing share the reference lacks
    frame["carrier"] = frame["carrier"].astype(object)
    frame.loc[frame.index[:40], "carrier"] = "ZZ"  # a carrier the reference never had
    return frame


def _feed(monitor: ModelMonitor, setup: ModelSetup, frame: pd.DataFrame) -> list[WindowReport]:
    inputs = [f.name for f in setup.features if f.name != setup.prediction]
    events: list[dict[str, Any]] = []
    for i, row in enumerate(frame.to_dict("records")):
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        events.append({"request_id": f"r{i}", "ts": 1_700_000_000_000 + i,
                       "inputs": {k: clean[k] for k in inputs},
                       "outputs": {setup.prediction: clean[setup.prediction]}})
    return monitor.add(decode_predictions(encode_predictions(MODEL, events)))


@pytest.fixture(scope="module")
def evaluated(setup: ModelSetup, july: pd.DataFrame) -> tuple[ModelMonitor, WindowReport]:
    monitor = ModelMonitor(setup, clock=_clock)
    reports = _feed(monitor, setup, july)
    assert len(reports) == 1
    return monitor, reports[0]


@pytest.fixture(scope="module")
def independent(setup: ModelSetup, july: pd.DataFrame) -> DriftReport:
    """The batch analysis of the same rows, run apart from the monitor."""
    types = {f.name: f.type for f in setup.features}
    current = tabular.profile_frame(july, types, settings=setup.profile)
    return analyze(setup.reference, current, list(setup.features), setup.settings, model=MODEL)


def _series(status: ServiceStatus, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    body, _ = exposition(make_registry(lambda: status), None)
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples if s.name == name}


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _status(monitor: ModelMonitor) -> ServiceStatus:
    return ServiceStatus(models={MODEL: monitor.status()}, configured_models=(MODEL,))


# --------------------------------------------------------------------------- per feature


def test_thresholds_effect_sizes_and_floors_equal_what_the_analysis_compared(evaluated, independent):
    monitor, _ = evaluated
    status = _status(monitor)
    features = independent.features
    assert _series(status, "driftline_feature_drift_threshold") == {
        _key(model=MODEL, feature=f.name, test=f.test): f.threshold for f in features}
    # psi on dest is the configured distance test, with its configured threshold
    dest = next(f for f in features if f.name == "dest")
    assert (dest.kind, dest.threshold) == ("distance", 0.2)
    # p-value tests are compared with alpha: what the adjusted p-value is checked against
    assert {f.threshold for f in features if f.kind == "p_value"} == {0.05}
    effects = _series(status, "driftline_feature_effect_size")
    assert effects.keys() == {_key(model=MODEL, feature=f.name, test=f.test)
                              for f in features if f.effect_size is not None}
    for f in features:
        if f.effect_size is not None:
            assert effects[_key(model=MODEL, feature=f.name, test=f.test)] == pytest.approx(
                f.effect_size, rel=1e-9)
    assert _series(status, "driftline_feature_materiality") == {
        _key(model=MODEL, feature=f.name, test=f.test): f.materiality
        for f in features if f.materiality is not None}
    assert _key(model=MODEL, feature="dest", test="psi") not in _series(
        status, "driftline_feature_materiality")


def test_missing_shares_and_new_categories_equal_the_analysis_and_the_data(evaluated, independent, july):
    monitor, _ = evaluated
    status = _status(monitor)
    features = independent.features
    missing = _series(status, "driftline_feature_missing_share")
    assert missing == {_key(model=MODEL, feature=f.name): pytest.approx(f.missing_share)
                       for f in features if f.missing_share is not None}
    assert missing[_key(model=MODEL, feature="air_time")] == pytest.approx(
        july["air_time"].isna().mean())
    assert _series(status, "driftline_feature_reference_missing_share") == {
        _key(model=MODEL, feature=f.name): pytest.approx(f.reference_missing_share) for f in features}
    new = _series(status, "driftline_feature_new_categories")
    assert new == {_key(model=MODEL, feature=f.name): float(len(f.new_categories))
                   for f in features if f.type != "numerical"}
    assert new[_key(model=MODEL, feature="carrier")] == 1.0  # ZZ
    assert new.keys() == {_key(model=MODEL, feature=name) for name in ("carrier", "origin", "dest")}


def test_each_quality_finding_of_the_window_is_one_series_with_its_issue(evaluated, independent):
    monitor, _ = evaluated
    issues = _series(_status(monitor), "driftline_quality_issue")
    expected = {_key(model=MODEL, feature=q.feature, issue=q.issue): 1.0
                for q in independent.quality if q.issue != "extra_column"}
    assert issues == expected
    assert _key(model=MODEL, feature="carrier", issue="new_categories") in issues
    assert _key(model=MODEL, feature="air_time", issue="missing_share") in issues
    assert {dict(k)["issue"] for k in issues} <= set(QUALITY_ISSUES)


def test_the_reason_code_of_each_feature_is_the_analysis_code_and_agrees_with_its_drift_flag(
        evaluated, independent):
    monitor, _ = evaluated
    status = _status(monitor)
    reasons = _series(status, "driftline_feature_drift_reason")
    drifted = _series(status, "driftline_feature_drifted")
    assert reasons == {_key(model=MODEL, feature=f.name, test=f.test, reason=f.reason_code): 1.0
                       for f in independent.features}
    for key in reasons:
        labels = dict(key)
        flag = drifted[_key(model=MODEL, feature=labels["feature"], test=labels["test"])]
        assert (labels["reason"] in DRIFTING_REASON_CODES) == (flag == 1.0), labels
    assert {dict(k)["reason"] for k in reasons} <= set(DRIFT_REASON_CODES)
    assert any(f.drift for f in independent.features)  # July drifts: both kinds of code show


def test_the_configured_performance_bounds_are_exported_before_any_window(setup):
    fresh = ModelMonitor(setup, clock=_clock)
    status = _status(fresh)
    assert status.models[MODEL].latest is None
    assert _series(status, "driftline_model_performance_min") == {
        _key(model=MODEL, metric="roc_auc"): 0.60, _key(model=MODEL, metric="accuracy"): 0.72}
    assert _series(status, "driftline_model_performance_max") == {}
    assert _series(status, "driftline_feature_drift_threshold") == {}


# --------------------------------------------------------------------------- reason codes


def _spec_report(reference: pd.DataFrame, current: pd.DataFrame, spec: FeatureSpec,
                 settings: DriftSettings | None = None) -> Any:
    types = {spec.name: spec.type}
    return analyze(tabular.profile_frame(reference, types), tabular.profile_frame(current, types),
                   [spec], settings).features[0]


@pytest.mark.parametrize(("case", "code"), [
    ("same", "not_significant"),
    ("shifted", "significant_and_material"),
    ("nudged", "significant_not_material"),
    ("psi_same", "distance_under_threshold"),
    ("psi_shifted", "distance_over_threshold"),
    ("missing", "missing_share_changed"),
    ("all_missing", "all_missing"),
    ("gone", "column_missing"),
])
def test_each_reason_code_follows_from_the_decision_the_analysis_took(rng, case, code):
    n = 20_000
    ref = pd.DataFrame({"x": rng.normal(0, 1, n)})
    spec = FeatureSpec("x", "numerical", "psi" if case.startswith("psi") else None)
    shift = {"shifted": 1.0, "psi_shifted": 1.0, "nudged": 0.05}.get(case, 0.0)
    cur = pd.DataFrame({"x": rng.normal(shift, 1, n)})
    if case == "missing":
        cur.loc[: n // 5, "x"] = np.nan
    if case == "all_missing":
        cur["x"] = np.nan
    if case == "gone":
        cur = pd.DataFrame({"y": rng.normal(0, 1, n)})
    result = _spec_report(ref, cur, spec)
    assert result.reason_code == code, result.reason
    assert result.drift == (code in DRIFTING_REASON_CODES)
    assert result.to_dict()["reason_code"] == code


def test_the_quality_vocabulary_is_the_engines_less_the_column_named_by_the_data():
    table = inspect.getdoc(quality_module) or ""
    rows = [line.split()[0] for line in table.splitlines()
            if line and line[0].isalpha() and line.split()[0].islower() and "_" in line.split()[0]]
    source = inspect.getsource(quality_module) + inspect.getsource(model_state)
    emitted = {node.value for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)
               and node.value in set(rows)}
    assert set(rows) == set(QUALITY_ISSUES) | {"extra_column"}
    assert emitted == set(rows)  # every documented issue is one the code emits


# --------------------------------------------------------------------------- checkpoints


def test_a_snapshot_keeps_the_new_fields_and_an_old_checkpoint_without_them_still_restores(
        setup, evaluated):
    monitor, report = evaluated
    again = ModelMonitor(setup, clock=_clock)
    again.restore(monitor.snapshot())
    assert again.history[-1].features == report.features
    assert again.history[-1].quality == report.quality
    assert _series(_status(again), "driftline_feature_drift_reason") == _series(
        _status(monitor), "driftline_feature_drift_reason")

    # a checkpoint written before these fields existed: no feature_details, no quality
    state = msgspec.msgpack.decode(monitor.snapshot())
    for old in state["history"]:
        del old["feature_details"], old["quality"]
    older = ModelMonitor(setup, clock=_clock)
    older.restore(msgspec.msgpack.encode(state))
    restored = older.history[-1]
    assert [(f.name, f.test, f.statistic, f.p_value, f.drift) for f in restored.features] == [
        (f.name, f.test, f.statistic, f.p_value, f.drift) for f in report.features]
    assert all(f.threshold is None and f.reason_code == "" for f in restored.features)
    assert restored.quality == ()
    status = _status(older)
    assert _series(status, "driftline_feature_drift_threshold") == {}
    assert _series(status, "driftline_feature_drift_reason") == {}
    assert len(_series(status, "driftline_feature_drifted")) == len(report.features)
    # the next window fills them in again
    nxt = _feed(older, setup, pd.read_parquet(SAMPLE / "flights" / "current.parquet").iloc[ROWS:2 * ROWS])
    assert len(nxt) == 1 and all(f.reason_code in DRIFT_REASON_CODES for f in nxt[0].features)


def test_a_distance_test_with_a_nan_statistic_exports_no_effect_size():
    setup = ModelSetup(
        name="m", features=(FeatureSpec("x", "numerical"),), prediction=None,
        window=WindowSpec(size=10), settings=DriftSettings(), profile=ProfileSettings(),
        reference=tabular.profile_frame(pd.DataFrame({"x": np.arange(100.0)}), {"x": "numerical"}),
        reference_source="test")
    monitor = ModelMonitor(setup, clock=_clock)
    base = monitor.status()
    latest = WindowReport(model="m", window_start=0, window_end=10, window_kind="count", rows=10,
                          evaluated_at=1.0, duration_s=0.0, drift_detected=False, drifted_share=0.0,
                          features=(), performance={}, body={})
    feature = FeatureResult("x", "psi", math.nan, None, False, threshold=0.2, effect_size=math.nan,
                            reason_code="not_computed")
    status = ServiceStatus(models={"m": replace(base, latest=replace(latest, features=(feature,)))})
    assert _series(status, "driftline_feature_effect_size") == {}
    assert _series(status, "driftline_feature_drift_threshold") == {
        _key(model="m", feature="x", test="psi"): 0.2}
