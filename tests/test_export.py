"""Prometheus export: hand-built statuses rendered, then read back with an independent parser.

The text is parsed with ``prometheus_client.parser`` (and checked with
``promtool`` where it is installed), so the tests see what a scraper sees.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from monitor.runtime import exposition
from monitor.service.export import StatusCollector, make_registry
from monitor.streaming.status import (
    INVALID_REASONS,
    FeatureResult,
    Histogram,
    ModelStatus,
    ServiceStatus,
    WindowReport,
)

PROMTOOL = Path("/usr/bin/promtool")


def report(model: str, features: Iterable[FeatureResult], *, drift: bool = True, share: float = 0.5,
           evaluated_at: float = 1_700_000_000.5) -> WindowReport:
    return WindowReport(
        model=model, window_start=0, window_end=500, window_kind="count", rows=500,
        evaluated_at=evaluated_at, duration_s=0.03, drift_detected=drift, drifted_share=share,
        features=tuple(features), performance={}, body={},
    )


def model(name: str, latest: WindowReport | None, **overrides: object) -> ModelStatus:
    values: dict[str, object] = dict(
        name=name, latest=latest, window_rows=120, window_fill=0.24, events_total=620,
        unknown_fields={}, labels_joined=0, labels_unmatched=0, join_evictions=0, join_buffer_size=0,
        performance={}, reference="reference.parquet",
    )
    values.update(overrides)
    return ModelStatus(**values)  # type: ignore[arg-type]


def full_status() -> ServiceStatus:
    """credit: evaluated, with labels; churn: owned, no window yet; fraud: configured, not owned."""
    credit = model(
        "credit",
        report("credit", [FeatureResult("income", "ks", 0.21, 0.0001, True),
                          FeatureResult("region", "psi", 0.05, None, False),
                          FeatureResult("age", "wasserstein", None, None, False)]),
        unknown_fields={"debug_flag": 3, "session_token": 1},
        labels_joined=40, labels_unmatched=2, join_evictions=5, join_buffer_size=17,
        performance={"roc_auc": 0.81, "accuracy": 0.9},
        dataset_drift_streak=4, feature_drift_streaks={"income": 4, "region": 0, "age": 0},
    )
    churn = model("churn", None, window_rows=12, window_fill=0.012, events_total=12)
    evaluation = Histogram().observe(0.004).observe(0.004).observe(0.3).observe(42.0)
    return ServiceStatus(
        models={"credit": credit, "churn": churn},
        configured_models=("credit", "churn", "fraud"),
        events_total={"credit": 620, "churn": 12},
        invalid={("credit", "wrong_types"): 4, ("", "bad_json"): 7},
        lag={("driftline.predictions", 0): 3, ("driftline.predictions", 2): 0},
        last_checkpoint=1_700_000_090.0,
        evaluation=evaluation,
        ready=True,
        now=1_700_000_100.0,
        model_lag={"credit": 3},
    )


def render(status: ServiceStatus, accept: str | None = None) -> str:
    body, _ = exposition(make_registry(lambda: status), accept)
    return body.decode("utf-8")


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``{sorted label pairs: value}`` of every sample called ``name``."""
    return {tuple(sorted(s.labels.items())): s.value for s in samples(text) if s.name == name}


def by(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs))


# --------------------------------------------------------------------------- drift


def test_feature_scores_p_values_and_flags_come_from_the_latest_window() -> None:
    text = render(full_status())
    assert series(text, "driftline_feature_drift_score") == {
        by(("model", "credit"), ("feature", "income"), ("test", "ks")): 0.21,
        by(("model", "credit"), ("feature", "region"), ("test", "psi")): 0.05,
    }
    assert series(text, "driftline_feature_drift_p_value") == {
        by(("model", "credit"), ("feature", "income"), ("test", "ks")): 0.0001,
    }
    assert series(text, "driftline_feature_drifted") == {
        by(("model", "credit"), ("feature", "income"), ("test", "ks")): 1.0,
        by(("model", "credit"), ("feature", "region"), ("test", "psi")): 0.0,
        by(("model", "credit"), ("feature", "age"), ("test", "wasserstein")): 0.0,
    }


def test_dataset_drift_share_and_flag_are_shown_for_evaluated_models_only() -> None:
    text = render(full_status())
    assert series(text, "driftline_dataset_drifted_share") == {by(("model", "credit")): 0.5}
    assert series(text, "driftline_dataset_drift") == {by(("model", "credit")): 1.0}
    assert series(text, "driftline_last_evaluation_timestamp_seconds") == {
        by(("model", "credit")): 1_700_000_000.5}


def test_model_performance_is_labelled_by_metric() -> None:
    assert series(render(full_status()), "driftline_model_performance") == {
        by(("model", "credit"), ("metric", "roc_auc")): 0.81,
        by(("model", "credit"), ("metric", "accuracy")): 0.9,
    }


# --------------------------------------------------------------------------- throughput and windows


def test_events_are_counted_for_every_configured_model() -> None:
    assert series(render(full_status()), "driftline_events_total") == {
        by(("model", "credit")): 620.0, by(("model", "churn")): 12.0, by(("model", "fraud")): 0.0,
    }


def test_events_consumed_repeat_events_total_and_the_windowed_count_is_shown_for_owned_models_only(
        ) -> None:
    text = render(full_status())
    assert series(text, "driftline_events_consumed_total") == series(text, "driftline_events_total")
    assert series(text, "driftline_events_windowed_total") == {
        by(("model", "credit")): 620.0, by(("model", "churn")): 12.0}


def test_every_configured_model_and_reason_has_an_invalid_counter_from_zero() -> None:
    got = series(render(full_status()), "driftline_events_invalid_total")
    expected = {by(("model", m), ("reason", r)): 0.0
                for m in ("credit", "churn", "fraud") for r in INVALID_REASONS}
    expected[by(("model", "credit"), ("reason", "wrong_types"))] = 4.0
    expected[by(("model", ""), ("reason", "bad_json"))] = 7.0  # a message naming no readable model
    assert got == expected


def test_window_rows_and_fill_are_shown_for_owned_models() -> None:
    text = render(full_status())
    assert series(text, "driftline_window_rows") == {
        by(("model", "credit")): 120.0, by(("model", "churn")): 12.0}
    assert series(text, "driftline_window_fill_ratio") == {
        by(("model", "credit")): 0.24, by(("model", "churn")): 0.012}


def test_label_join_counters_and_buffer_are_per_owned_model() -> None:
    text = render(full_status())
    assert series(text, "driftline_labels_joined_total") == {
        by(("model", "credit")): 40.0, by(("model", "churn")): 0.0}
    assert series(text, "driftline_labels_unmatched_total")[by(("model", "credit"))] == 2.0
    assert series(text, "driftline_label_join_evictions_total")[by(("model", "credit"))] == 5.0
    assert series(text, "driftline_label_join_buffer_size")[by(("model", "credit"))] == 17.0


def test_unknown_fields_are_counted_and_their_names_never_exported() -> None:
    text = render(full_status())
    assert series(text, "driftline_schema_unknown_fields") == {
        by(("model", "credit")): 2.0, by(("model", "churn")): 0.0}
    assert "debug_flag" not in text and "session_token" not in text


# --------------------------------------------------------------------------- consumer and service


def test_consumer_lag_is_labelled_by_topic_and_partition() -> None:
    assert series(render(full_status()), "driftline_consumer_lag_messages") == {
        by(("topic", "driftline.predictions"), ("partition", "0")): 3.0,
        by(("topic", "driftline.predictions"), ("partition", "2")): 0.0,
    }


def test_checkpoint_age_is_now_minus_the_last_checkpoint() -> None:
    assert series(render(full_status()), "driftline_checkpoint_age_seconds") == {(): 10.0}


def test_checkpoint_age_is_absent_before_the_first_checkpoint() -> None:
    assert series(render(ServiceStatus(now=5.0)), "driftline_checkpoint_age_seconds") == {}


@pytest.mark.parametrize(("ready", "value"), [(True, 1.0), (False, 0.0)])
def test_ready_is_one_or_zero(ready: bool, value: float) -> None:
    assert series(render(ServiceStatus(ready=ready)), "driftline_ready") == {(): value}


def test_evaluation_duration_histogram_buckets_are_cumulative() -> None:
    text = render(full_status())
    buckets = {dict(labels)["le"]: value
               for labels, value in series(text, "driftline_evaluation_duration_seconds_bucket").items()}
    assert buckets["0.0025"] == 0.0
    assert buckets["0.005"] == 2.0
    assert buckets["0.25"] == 2.0
    assert buckets["0.5"] == 3.0
    assert buckets["10.0"] == 3.0
    assert buckets["+Inf"] == 4.0
    ordered = [buckets[le] for le in sorted(buckets, key=float)]
    assert ordered == sorted(ordered)
    assert len(buckets) == len(full_status().evaluation.buckets) + 1
    assert series(text, "driftline_evaluation_duration_seconds_count") == {(): 4.0}
    assert series(text, "driftline_evaluation_duration_seconds_sum")[()] == pytest.approx(42.308)


# --------------------------------------------------------------------------- the contract


def allowed_label_values(status: ServiceStatus) -> set[str]:
    values = set(status.configured_models) | set(status.models) | set(INVALID_REASONS) | {""}
    values |= {name for name, _ in status.invalid} | {reason for _, reason in status.invalid}
    values |= {topic for topic, _ in status.lag} | {str(partition) for _, partition in status.lag}
    for owned in status.models.values():
        values |= set(owned.performance)
        if owned.latest is not None:
            values |= {f.name for f in owned.latest.features} | {f.test for f in owned.latest.features}
    return values


def test_no_label_value_comes_from_outside_the_status() -> None:
    status = full_status()
    allowed = allowed_label_values(status)
    for sample in samples(render(status)):
        names = set(sample.labels) - {"le"}
        assert names <= {"model", "feature", "test", "metric", "reason", "topic", "partition"}, sample
        assert {sample.labels[name] for name in names} <= allowed, sample


def test_every_counter_ends_in_total_in_both_formats() -> None:
    text = render(full_status())
    counters = re.findall(r"^# TYPE (\S+) counter$", text, flags=re.MULTILINE)
    assert len(counters) == 7
    assert all(name.endswith("_total") for name in counters)
    openmetrics = render(full_status(), "application/openmetrics-text; version=1.0.0")
    for family in openmetrics_families(openmetrics):  # type: ignore[no-untyped-call]
        if family.type == "counter":
            assert {s.name for s in family.samples} == {family.name + "_total"}


def test_every_metric_has_the_driftline_prefix_and_a_help_text() -> None:
    families = list(text_string_to_metric_families(render(full_status())))
    assert {family.name for family in families} == {
        "driftline_" + name for name in (
            "feature_drift_score", "feature_drift_p_value", "feature_drifted", "dataset_drifted_share",
            "dataset_drift", "model_performance", "events", "events_consumed", "events_windowed",
            "events_invalid", "window_rows",
            "window_fill_ratio", "last_evaluation_timestamp_seconds", "consumer_lag_messages",
            "checkpoint_age_seconds", "evaluation_duration_seconds", "labels_joined", "labels_unmatched",
            "label_join_evictions", "label_join_buffer_size", "schema_unknown_fields", "ready",
            "dataset_drift_streak", "feature_drift_streak", "model_consumer_lag_messages",
            "feature_drift_threshold", "feature_effect_size", "feature_materiality",
            "feature_missing_share", "feature_reference_missing_share", "feature_new_categories",
            "quality_issue", "feature_drift_reason", "model_performance_min",
            "model_performance_max")}
    for family in families:
        assert family.name.startswith("driftline_")
        assert len(family.documentation.split()) >= 5, family.name


def test_label_values_from_the_config_are_escaped_and_read_back_exactly() -> None:
    odd = 'a "quoted"\\ name\nwith ünïcode'
    status = ServiceStatus(models={odd: model(odd, report(odd, [FeatureResult(odd, "ks", 0.5, 0.5, False)]))},
                           configured_models=(odd,))
    got = series(render(status), "driftline_feature_drift_score")
    assert got == {by(("model", odd), ("feature", odd), ("test", "ks")): 0.5}


def test_the_status_is_read_at_each_scrape() -> None:
    current = [ServiceStatus(ready=False)]
    registry = make_registry(lambda: current[0])
    assert series(exposition(registry, None)[0].decode(), "driftline_ready") == {(): 0.0}
    current[0] = ServiceStatus(ready=True)
    assert series(exposition(registry, None)[0].decode(), "driftline_ready") == {(): 1.0}


def test_make_registry_builds_a_fresh_registry_and_leaves_the_global_one_alone() -> None:
    first, second = make_registry(ServiceStatus), make_registry(ServiceStatus)
    assert first is not REGISTRY and first is not second
    assert REGISTRY.get_sample_value("driftline_ready") is None
    assert first.get_sample_value("driftline_ready") == 0.0


def test_describe_names_the_families_without_reading_the_status() -> None:
    def unreadable() -> ServiceStatus:
        raise AssertionError("describe must not read the status")

    names = {family.name for family in StatusCollector(unreadable).describe()}
    assert {"driftline_events", "driftline_ready", "driftline_evaluation_duration_seconds"} <= names


# --------------------------------------------------------------------------- exposition


def test_exposition_defaults_to_the_prometheus_text_format() -> None:
    _, content_type = exposition(make_registry(ServiceStatus), None)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


def test_exposition_speaks_openmetrics_when_asked() -> None:
    accept = "application/openmetrics-text; version=1.0.0"
    body, content_type = exposition(make_registry(ServiceStatus), accept)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")


@pytest.mark.parametrize("accept", ["application/openmetrics-text; version=abc", "text/plain; version=1.x"])
def test_a_malformed_accept_version_falls_back_to_the_text_format(accept: str) -> None:
    body, content_type = exposition(make_registry(ServiceStatus), accept)
    assert content_type.startswith("text/plain")
    assert b"driftline_ready 0.0" in body


@pytest.mark.skipif(shutil.which("promtool") is None and not PROMTOOL.exists(),
                    reason="promtool is not installed")
@pytest.mark.parametrize("status", [full_status(), ServiceStatus()], ids=["full", "empty"])
def test_promtool_finds_no_problem_in_the_exposition(status: ServiceStatus) -> None:
    promtool = str(PROMTOOL) if PROMTOOL.exists() else str(shutil.which("promtool"))
    result = subprocess.run([promtool, "check", "metrics"], input=render(status).encode(),
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_drift_streaks_and_model_lag_are_exported_only_for_models_with_an_evaluated_window() -> None:
    text = render(full_status())
    assert series(text, "driftline_dataset_drift_streak") == {by(("model", "credit")): 4.0}
    assert series(text, "driftline_feature_drift_streak") == {
        by(("feature", "income"), ("model", "credit"), ("test", "ks")): 4.0,
        by(("feature", "region"), ("model", "credit"), ("test", "psi")): 0.0,
        by(("feature", "age"), ("model", "credit"), ("test", "wasserstein")): 0.0}
    assert series(text, "driftline_model_consumer_lag_messages") == {by(("model", "credit")): 3.0}


# --------------------------------------------------------------------------- dashboard series


def test_the_dashboard_series_carry_only_config_names_and_fixed_vocabularies() -> None:
    features = [FeatureResult("income", "ks", 0.21, 0.0001, True, threshold=0.05, effect_size=0.3,
                              materiality=0.1, missing_share=0.02, reference_missing_share=0.0,
                              reason_code="significant_and_material"),
                FeatureResult("region", "psi", 0.05, None, False, threshold=0.2, effect_size=0.05,
                              missing_share=None, reference_missing_share=0.01, new_categories=2,
                              reason_code="a reason in words, not a code")]
    latest = WindowReport(
        model="credit", window_start=0, window_end=500, window_kind="count", rows=500,
        evaluated_at=1.0, duration_s=0.01, drift_detected=True, drifted_share=0.5,
        features=tuple(features), performance={}, body={},
        quality=(("income", "missing_share"), ("region", "new_categories"), ("region", "made_up")))
    credit = model("credit", latest, performance_bounds={"roc_auc": (0.6, None), "mae": (None, 3.5)})
    churn = model("churn", None, performance_bounds={"accuracy": (0.7, 0.99)})
    text = render(ServiceStatus(models={"credit": credit, "churn": churn},
                                configured_models=("credit", "churn")))
    income = (("model", "credit"), ("feature", "income"), ("test", "ks"))
    region = (("model", "credit"), ("feature", "region"), ("test", "psi"))
    assert series(text, "driftline_feature_drift_threshold") == {by(*income): 0.05, by(*region): 0.2}
    assert series(text, "driftline_feature_effect_size") == {by(*income): 0.3, by(*region): 0.05}
    assert series(text, "driftline_feature_materiality") == {by(*income): 0.1}
    assert series(text, "driftline_feature_missing_share") == {
        by(("model", "credit"), ("feature", "income")): 0.02}
    assert series(text, "driftline_feature_reference_missing_share") == {
        by(("model", "credit"), ("feature", "income")): 0.0,
        by(("model", "credit"), ("feature", "region")): 0.01}
    assert series(text, "driftline_feature_new_categories") == {
        by(("model", "credit"), ("feature", "region")): 2.0}
    # an issue outside the vocabulary and a reason that is not a code are never label values
    assert series(text, "driftline_quality_issue") == {
        by(("model", "credit"), ("feature", "income"), ("issue", "missing_share")): 1.0,
        by(("model", "credit"), ("feature", "region"), ("issue", "new_categories")): 1.0}
    assert series(text, "driftline_feature_drift_reason") == {
        by(*income, ("reason", "significant_and_material")): 1.0}
    # the bounds come from the config: churn has no window yet and still draws its lines
    assert series(text, "driftline_model_performance_min") == {
        by(("model", "credit"), ("metric", "roc_auc")): 0.6,
        by(("model", "churn"), ("metric", "accuracy")): 0.7}
    assert series(text, "driftline_model_performance_max") == {
        by(("model", "credit"), ("metric", "mae")): 3.5,
        by(("model", "churn"), ("metric", "accuracy")): 0.99}
