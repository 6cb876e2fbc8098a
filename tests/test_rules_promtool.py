"""``promtool test rules`` on the rules generated from the sample config: every alert fires when
it should and stays quiet when it should not.

The input series are written as the monitor exports them: each minute of a scenario is a
:class:`~monitor.streaming.status.ServiceStatus` rendered by ``monitor.service.export`` (the
collector's series by its real :class:`~collectors.delivery.metrics.CollectorMetrics`), parsed
back with ``prometheus_client``'s parser, and given the ``job``/``instance`` labels a scrape adds.
A minute without a status is a minute with no scrape (the monitor is gone).  The expected
annotations are written out here, from the sample config's literal thresholds.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from alerts import promtool_tests as pt
from alerts import rules
from collectors.delivery.metrics import CollectorMetrics
from monitor.config import load_config
from monitor.runtime import exposition
from monitor.service.export import make_registry
from monitor.streaming.status import FeatureResult, ModelStatus, ServiceStatus, WindowReport
from tests.conftest import SAMPLE

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
pytestmark = pytest.mark.skipif(
    not Path(PROMTOOL).exists(),
    reason="promtool is not installed (apt-get install prometheus gives /usr/bin/promtool)")

MODEL = "flight-delay"
CONFIG = load_config(SAMPLE / "driftline.yaml")
FEATURES = list(CONFIG.model(MODEL).features)
MINUTES = 90
MONITOR = {"job": "driftline", "instance": "driftline-0:8000"}
COLLECTOR = {"job": "driftline-collector", "instance": "flight-delay-7d9f:9091"}
LINKS = {
    "dashboard_url": "http://localhost:3000/d/driftline-model/driftline-model?var-model=flight-delay",
    "report_url": "http://localhost:8000/models/flight-delay/report",
}
RUNBOOK = "https://github.com/driftline/driftline/blob/main/README.md#"

Series = dict[tuple[str, tuple[tuple[str, str], ...]], list[float | None]]


# ---- the monitor, minute by minute


def status_at(minute: int, *, drift_streak: int = 0, feature_streak: int = 0, evaluated: float | None = None,
              accuracy: float = 0.77, roc_auc: float = 0.65, lag: int = 3,
              windowed: bool = True) -> ServiceStatus:
    """The monitor as it stands at ``minute``: one window evaluated per minute (at
    ``evaluated`` seconds, default now), ``dep_delay`` drifting ``feature_streak`` windows in
    a row and the whole dataset ``drift_streak``; ``windowed=False``: no window closed yet."""
    now = minute * 60.0
    latest = None
    if windowed:
        features = tuple(
            FeatureResult(name, "psi" if name == "dest" else "ks", 0.01, 0.5, False) for name in FEATURES)
        if feature_streak:
            features = tuple(replace(f, statistic=0.3, p_value=1e-9, drift=True) if f.name == "dep_delay"
                             else f for f in features)
        latest = WindowReport(
            model=MODEL, window_start=minute * 1000, window_end=(minute + 1) * 1000, window_kind="count",
            rows=1000, evaluated_at=now if evaluated is None else evaluated, duration_s=0.02,
            drift_detected=drift_streak > 0, drifted_share=1 / 13 if drift_streak else 0.0,
            features=features, performance={}, body={})
    model = ModelStatus(
        name=MODEL, latest=latest, window_rows=500, window_fill=0.5, events_total=1000 * minute + 500,
        unknown_fields={}, labels_joined=100 * minute, labels_unmatched=0, join_evictions=0,
        join_buffer_size=10, performance={"accuracy": accuracy, "roc_auc": roc_auc} if windowed else {},
        reference="flights/reference.parquet", dataset_drift_streak=drift_streak,
        feature_drift_streaks={"dep_delay": feature_streak} if windowed else {})
    return ServiceStatus(
        models={MODEL: model}, configured_models=(MODEL,), events_total={MODEL: 1000 * minute + 500},
        lag={("driftline.predictions", 0): lag}, ready=True, now=now, model_lag={MODEL: lag})


def samples_of(text: str, extra: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape body parsed back, each sample with the scrape's own labels added."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted({**sample.labels, **extra}.items()))
            found[(sample.name, labels)] = float(sample.value)
    return found


def timeline(statuses: Sequence[ServiceStatus | None],
             collector: Callable[[int, CollectorMetrics], None] | None = None) -> Series:
    """Each minute's scrape of serve (none where the status is None) and of a collector
    (driven by ``collector(minute, metrics)``; sampling drops every minute, which never alert)."""
    out: Series = {}
    metrics = CollectorMetrics([MODEL])
    for minute, status in enumerate(statuses):
        scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        if status is not None:
            body, _ = exposition(make_registry(lambda status=status: status), None)
            scraped.update(samples_of(body.decode(), MONITOR))
        metrics.dropped(MODEL, "sampled_out", 50)
        if collector is not None:
            collector(minute, metrics)
        body, _ = metrics.exposition(None)
        scraped.update(samples_of(body.decode(), COLLECTOR))
        for key, value in scraped.items():
            out.setdefault(key, [None] * minute).append(value)
        for samples in out.values():
            if len(samples) == minute:
                samples.append(None)
    return out


def healthy(minute: int) -> ServiceStatus:
    return status_at(minute)


# ---- running promtool


def promtool_test(tmp_path: Path, name: str, series: Series, checks: list[dict[str, Any]]) -> None:
    (tmp_path / "rules.yaml").write_text(rules.to_yaml(rules.rules_file(CONFIG)))
    group = pt.test_group(name, "1m", pt.input_series(series), checks)
    test_path = tmp_path / "tests.yaml"
    test_path.write_text(yaml.safe_dump(pt.test_file(["rules.yaml"], [group]), sort_keys=False))
    done = subprocess.run([PROMTOOL, "test", "rules", str(test_path)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def quiet(at: str, *alertnames: str) -> list[dict[str, Any]]:
    return [pt.alert_check(at, name, []) for name in alertnames]


def fires(at: str, alertname: str, labels: dict[str, str], summary: str, description: str
          ) -> dict[str, Any]:
    annotations = {"summary": summary, "description": description,
                   "runbook_url": RUNBOOK + alertname.lower(), **LINKS}
    return pt.alert_check(at, alertname, [pt.expected({"model": MODEL, **labels}, annotations)])


DRIFT_NOTE = ("alert at 3 windows in a row; a window drifts when any feature drifts at alpha 0.05, "
              "bh correction).")


# ---- the tests: one per alert, firing and not


def test_a_healthy_model_fires_nothing_though_sampling_drops_events_all_along(tmp_path):
    series = timeline([healthy(m) for m in range(MINUTES)])
    assert any(name == "driftline_collector_events_dropped_total" and ("reason", "sampled_out") in labels
               and samples[-1] == 50 * MINUTES for (name, labels), samples in series.items())
    checks = [c for at in ("10m", "70m", "89m") for c in quiet(at, *sorted(set(rules.ALERT_NAMES)))]
    promtool_test(tmp_path, "healthy", series, checks)


def test_sustained_dataset_drift_fires_after_3_windows_in_a_row_then_for(tmp_path):
    # windows 1, 2, 3, ... in a row from minute 1: the streak reaches 3 at minute 3, for 5m -> 8m
    series = timeline([status_at(m, drift_streak=m, feature_streak=m) for m in range(30)])
    promtool_test(tmp_path, "dataset drift", series, [
        *quiet("2m", "DriftlineDatasetDrift"),
        *quiet("7m", "DriftlineDatasetDrift"),     # pending: the streak is 3..7, for 5m not over
        fires("10m", "DriftlineDatasetDrift", {"severity": "warning"},
              "flight-delay: sustained dataset drift",
              f"flight-delay drifted in 10 evaluated windows in a row ({DRIFT_NOTE}"),
    ])


def test_drift_that_never_lasts_3_windows_never_fires(tmp_path):
    # drifted, drifted, clean, drifted, drifted, clean, ...: a raw alarm 2 minutes in 3
    streak = [(1, 2, 0)[m % 3] for m in range(40)]
    series = timeline([status_at(m, drift_streak=s, feature_streak=s) for m, s in enumerate(streak)])
    checks = [c for at in ("10m", "20m", "39m") for c in quiet(at, "DriftlineDatasetDrift",
                                                                "DriftlineFeatureDrift")]
    promtool_test(tmp_path, "flapping", series, checks)


def test_sustained_feature_drift_fires_with_the_feature_label(tmp_path):
    series = timeline([status_at(m, feature_streak=m) for m in range(30)])
    promtool_test(tmp_path, "feature drift", series, [
        *quiet("7m", "DriftlineFeatureDrift"),
        fires("12m", "DriftlineFeatureDrift", {"feature": "dep_delay", "severity": "warning"},
              "flight-delay: feature dep_delay drifts",
              "Feature dep_delay of flight-delay drifted in 12 evaluated windows in a row (alert at 3 "
              "windows in a row; automatic test at alpha 0.05, bh correction)."),
        *quiet("12m", "DriftlineDatasetDrift"),
    ])


def test_accuracy_below_its_min_fires_critical_and_roc_auc_above_its_min_does_not(tmp_path):
    series = timeline([status_at(m, accuracy=0.69 if m >= 10 else 0.77, roc_auc=0.65) for m in range(30)])
    promtool_test(tmp_path, "performance", series, [
        *quiet("9m", "DriftlinePerformanceBelowMin"),
        *quiet("14m", "DriftlinePerformanceBelowMin"),   # below since 10m: for 5m not over
        fires("16m", "DriftlinePerformanceBelowMin", {"metric": "accuracy", "severity": "critical"},
              "flight-delay: accuracy below its min",
              "accuracy of flight-delay is 0.69 (configured min 0.72)."),
    ])


def test_an_evaluation_older_than_stale_after_fires_stale(tmp_path):
    # the last window was evaluated at minute 0 and none since: older than 1h from 61m, for 5m
    series = timeline([status_at(m, evaluated=0.0) for m in range(MINUTES)])
    promtool_test(tmp_path, "late", series, [
        *quiet("60m", "DriftlineEvaluationStale"),
        *quiet("65m", "DriftlineEvaluationStale"),
        fires("70m", "DriftlineEvaluationStale", {"stale": "late", "severity": "warning"},
              "flight-delay: no window evaluated for over 1h",
              "The latest window of flight-delay was evaluated 1h 10m 0s ago (limit 1h). No data is "
              "not \"no drift\": check the model's traffic, the collector and the monitor."),
    ])


ABSENT = ("No monitor has exported an evaluated window of flight-delay for 1h (the series is absent: "
          "the monitor is down, not scraped, or owns no partition of the model, or no window has "
          "closed yet).")


def test_a_monitor_with_no_window_yet_waits_stale_after_before_firing_absent(tmp_path):
    series = timeline([status_at(m, windowed=False) for m in range(MINUTES)])
    promtool_test(tmp_path, "fresh start", series, [
        *quiet("30m", "DriftlineEvaluationStale"),       # a fresh monitor does not page at once
        *quiet("59m", "DriftlineEvaluationStale"),
        fires("61m", "DriftlineEvaluationStale", {"stale": "absent", "severity": "warning"},
              "flight-delay: no window evaluated for over 1h", ABSENT),
    ])


def test_a_monitor_that_disappears_is_never_taken_for_no_drift(tmp_path):
    # scraped for 10 minutes, then gone: its last samples stay visible 5m (lookback), then absent
    series = timeline([healthy(m) if m < 10 else None for m in range(MINUTES)])
    promtool_test(tmp_path, "monitor gone", series, [
        *quiet("73m", "DriftlineEvaluationStale"),
        fires("76m", "DriftlineEvaluationStale", {"stale": "absent", "severity": "warning"},
              "flight-delay: no window evaluated for over 1h", ABSENT),
        *quiet("76m", "DriftlineDatasetDrift", "DriftlineFeatureDrift"),
    ])


def test_a_collector_leaving_requests_unread_fires_with_the_reason_but_sampling_does_not(tmp_path):
    """Issue 15: requests left out before their rows were read are counted per request, in
    requests_unparsed; the drop alert watches them too (sampled_out and skipped never alert)."""
    def unparseable_from_10m(minute: int, metrics: CollectorMetrics) -> None:
        metrics.add_model(MODEL)
        metrics.unparsed(MODEL, "sampled_out")
        if minute >= 10:
            metrics.unparsed(MODEL, "unparseable")

    series = timeline([healthy(m) for m in range(30)], unparseable_from_10m)
    promtool_test(tmp_path, "collector unparsed", series, [
        *quiet("9m", "DriftlineCollectorDropping"),
        fires("20m", "DriftlineCollectorDropping", {"reason": "unparseable", "severity": "warning"},
              "flight-delay: the collector drops events (unparseable)",
              "The collectors of flight-delay dropped 5 events in the last 5m for reason unparseable "
              "(threshold: any drop; sampled_out and skipped are intended and never alert)."),
    ])


def test_a_collector_dropping_events_on_a_full_queue_fires_with_the_reason(tmp_path):
    def queue_full_from_10m(minute: int, metrics: CollectorMetrics) -> None:
        if minute >= 10:
            metrics.dropped(MODEL, "queue_full", 5)

    series = timeline([healthy(m) for m in range(30)], queue_full_from_10m)
    promtool_test(tmp_path, "collector", series, [
        *quiet("9m", "DriftlineCollectorDropping"),
        *quiet("14m", "DriftlineCollectorDropping"),
        fires("20m", "DriftlineCollectorDropping", {"reason": "queue_full", "severity": "warning"},
              "flight-delay: the collector drops events (queue_full)",
              "The collectors of flight-delay dropped 25 events in the last 5m for reason queue_full "
              "(threshold: any drop; sampled_out and skipped are intended and never alert)."),
    ])


def test_consumer_lag_above_its_bound_fires_and_below_it_does_not(tmp_path):
    series = timeline([status_at(m, lag=25_000 if m >= 10 else 9_000) for m in range(30)])
    promtool_test(tmp_path, "lag", series, [
        *quiet("9m", "DriftlineConsumerLagHigh"),       # 9,000 is under the 10,000 bound
        *quiet("14m", "DriftlineConsumerLagHigh"),
        fires("16m", "DriftlineConsumerLagHigh", {"severity": "warning"},
              "flight-delay: the monitor lags behind the predictions",
              "The partition carrying flight-delay has 25k messages not yet consumed (bound 10000)."),
    ])


def test_the_series_fed_to_promtool_are_the_names_the_rules_query():
    series = timeline([status_at(1, drift_streak=1, feature_streak=1)])
    names = {name for name, _ in series}
    text = rules.to_yaml(rules.rules_file(CONFIG))
    for queried in ("driftline_dataset_drift_streak", "driftline_feature_drift_streak",
                    "driftline_model_performance", "driftline_last_evaluation_timestamp_seconds",
                    "driftline_collector_events_dropped_total", "driftline_model_consumer_lag_messages"):
        assert queried in names and queried in text
