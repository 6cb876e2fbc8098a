"""Prometheus metrics of the monitor, read from the current status at scrape time.

:class:`StatusCollector` is a custom ``prometheus_client`` collector: each
scrape calls the ``status`` callable once and turns that one immutable
:class:`~monitor.streaming.status.ServiceStatus` into metric families, so
every sample of a scrape describes the same moment.  Nothing is stored here,
and no metric object outlives a scrape.

Every label value comes from the status, which takes them only from the
config (model, feature, test and metric names), from the fixed set of
:data:`~monitor.streaming.status.INVALID_REASONS`, or from the consumer's
topic assignment; never from event payloads.  Unknown fields are exported as
a count, never as label values, because their names come from the senders.

:func:`make_registry` builds a registry holding only this collector (not the
process-wide default one), and :func:`exposition` renders a registry in the
format the scraper asked for (Prometheus text, or OpenMetrics).

This module and the collector's own metrics are the only places that import
``prometheus_client``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from monitor.engine.analysis import DRIFT_REASON_CODES, DRIFTING_REASON_CODES
from monitor.streaming.status import INVALID_REASONS, QUALITY_ISSUES, ServiceStatus

# CollectorRegistry is re-exported so that callers (the API) need not import prometheus_client.
__all__ = ["CollectorRegistry", "StatusCollector", "make_registry"]

PREFIX = "driftline_"

_M = ["model"]
_MF = ["model", "feature"]
_MFT = ["model", "feature", "test"]


def _gauge(name: str, help_text: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, help_text, labels=labels if labels is not None else [])


def _counter(name: str, help_text: str, labels: list[str]) -> CounterMetricFamily:
    # CounterMetricFamily drops the "_total" suffix from the family name and adds it back to
    # the sample, so that both exposition formats end the sample name in "_total".
    return CounterMetricFamily(PREFIX + name, help_text, labels=labels)


def _number(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None or NaN (no sample then)."""
    return None if value is None or math.isnan(value) else float(value)


def _le(upper: float) -> str:
    """A bucket bound as Prometheus writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if math.isinf(upper) else repr(float(upper))


# two names, one value: driftline_events_total is the contract name
_CONSUMED_HELP = {
    "events_total":
        "Prediction events this process took into the model's windows since it started, "
        "every configured model from 0; events replayed after a crash or a rebalance (those "
        "after the last checkpoint) count again, so use it for rates "
        "(driftline_events_windowed_total is the exact count).",
    "events_consumed_total":
        "The same value as driftline_events_total, under another name: prediction events "
        "this process took into the model's windows since it started.",
}


class StatusCollector:
    """Metric families built from ``status()`` at each scrape."""

    def __init__(self, status: Callable[[], ServiceStatus]) -> None:
        self._status = status

    def describe(self) -> Iterator[Metric]:
        """The families, without samples, so a registry can detect name clashes."""
        yield from self._families(ServiceStatus())

    def collect(self) -> Iterator[Metric]:
        """Read the status once and yield every metric family."""
        yield from self._families(self._status())

    def _families(self, status: ServiceStatus) -> Iterator[Metric]:
        yield from self._drift(status)
        yield from self._details(status)
        yield from self._throughput(status)
        yield from self._windows(status)
        yield from self._consumer(status)
        yield from self._labels(status)

        unknown = _gauge(
            "schema_unknown_fields",
            "Distinct field names in received events that the model does not configure: input fields "
            "that are not features, plus outputs other than the prediction (as outputs.<name>); the "
            "names themselves are shown by the API (unknown_fields), not here.",
            _M)
        for name, model in status.models.items():
            unknown.add_metric([name], float(len(model.unknown_fields)))
        yield unknown

        ready = _gauge(
            "ready",
            "1 once this replica has restored the state of its partitions and is ready (see /readyz), "
            "else 0.")
        ready.add_metric([], 1.0 if status.ready else 0.0)
        yield ready

    def _drift(self, status: ServiceStatus) -> Iterator[Metric]:
        score = _gauge(
            "feature_drift_score",
            "Drift test statistic of a feature in the latest evaluated window, or the distance "
            "for distance tests (psi, wasserstein, jensen-shannon, ...).",
            _MFT)
        p_value = _gauge(
            "feature_drift_p_value",
            "p-value of a feature's drift test in the latest evaluated window; absent for distance tests.",
            _MFT)
        drifted = _gauge(
            "feature_drifted",
            "1 when the feature drifted in the latest evaluated window, else 0.",
            _MFT)
        share = _gauge(
            "dataset_drifted_share",
            "Share (0..1) of the model's features that drifted in the latest evaluated window.",
            _M)
        dataset = _gauge(
            "dataset_drift",
            "1 when the latest evaluated window of the model drifted as a whole "
            "(by the configured dataset-drift rule), else 0.",
            _M)
        performance = _gauge(
            "model_performance",
            "Value of a model performance metric over the latest performance window of predictions "
            "joined with their labels.",
            ["model", "metric"])
        for name, model in status.models.items():
            latest = model.latest
            if latest is not None:
                for feature in latest.features:
                    labels = [name, feature.name, feature.test]
                    if feature.statistic is not None:
                        score.add_metric(labels, float(feature.statistic))
                    if feature.p_value is not None:
                        p_value.add_metric(labels, float(feature.p_value))
                    drifted.add_metric(labels, 1.0 if feature.drift else 0.0)
                share.add_metric([name], float(latest.drifted_share))
                dataset.add_metric([name], 1.0 if latest.drift_detected else 0.0)
            for metric, value in model.performance.items():
                performance.add_metric([name, metric], float(value))
        yield from (score, p_value, drifted, share, dataset, performance)
        yield from self._streaks(status)

    def _details(self, status: ServiceStatus) -> Iterator[Metric]:
        """What a dashboard draws beside the drift scores: thresholds, effect sizes, missing
        shares, new categories, data-quality findings, the reason codes and the bounds."""
        threshold = _gauge(
            "feature_drift_threshold",
            "What the feature's test is compared against in the latest evaluated window: alpha "
            "(or the feature's threshold) for the adjusted p-value of p-value tests, the "
            "distance threshold for distance tests.",
            _MFT)
        effect = _gauge(
            "feature_effect_size",
            "Effect size of the feature in the latest evaluated window (normed Wasserstein or "
            "total variation for p-value tests, the distance for distance tests); absent when none.",
            _MFT)
        materiality = _gauge(
            "feature_materiality",
            "Materiality floor (the configured effect-size minimum) the effect size must reach for a "
            "significant p-value test to count as drift; absent for distance tests.",
            _MFT)
        missing = _gauge(
            "feature_missing_share",
            "Share (0..1) of missing values of the feature in the latest evaluated window; "
            "absent when the column is missing.",
            _MF)
        ref_missing = _gauge(
            "feature_reference_missing_share",
            "Share (0..1) of missing values of the feature in the reference.",
            _MF)
        new = _gauge(
            "feature_new_categories",
            "Number of categories of the latest evaluated window that the reference does not "
            "have; categorical and boolean features only (0 when the reference folded rare "
            "categories into 'other', which makes new ones unknowable).",
            _MF)
        quality = _gauge(
            "quality_issue",
            "1 for each data-quality finding of the latest evaluated window, by issue "
            f"({', '.join(QUALITY_ISSUES)}); extra_column is not exported, as its name comes from "
            "the data.",
            ["model", "feature", "issue"])
        reason = _gauge(
            "feature_drift_reason",
            "1 for the reason code of the feature's verdict in the latest evaluated window; drifted: "
            f"{', '.join(c for c in DRIFT_REASON_CODES if c in DRIFTING_REASON_CODES)}; not drifted: "
            f"{', '.join(c for c in DRIFT_REASON_CODES if c not in DRIFTING_REASON_CODES)}.",
            ["model", "feature", "test", "reason"])
        for name, model in status.models.items():
            latest = model.latest
            if latest is None:
                continue
            for f in latest.features:
                labels = [name, f.name, f.test]
                for family, value in ((threshold, f.threshold), (effect, f.effect_size),
                                      (materiality, f.materiality)):
                    number = _number(value)
                    if number is not None:
                        family.add_metric(labels, number)
                for family, value in ((missing, f.missing_share),
                                      (ref_missing, f.reference_missing_share)):
                    number = _number(value)
                    if number is not None:
                        family.add_metric([name, f.name], number)
                if f.new_categories is not None:
                    new.add_metric([name, f.name], float(f.new_categories))
                if f.reason_code in DRIFT_REASON_CODES:
                    reason.add_metric([*labels, f.reason_code], 1.0)
            for feature, issue in latest.quality:
                if issue in QUALITY_ISSUES:
                    quality.add_metric([name, feature, issue], 1.0)
        yield from (threshold, effect, materiality, missing, ref_missing, new, quality, reason)

        low = _gauge(
            "model_performance_min",
            "Configured lower bound of a model performance metric (performance: {metric: {min}}), "
            "the line it must stay above; from the replica that owns the model, before any window.",
            ["model", "metric"])
        high = _gauge(
            "model_performance_max",
            "Configured upper bound of a model performance metric (performance: {metric: {max}}), "
            "the line it must stay below; from the replica that owns the model, before any window.",
            ["model", "metric"])
        for name, model in status.models.items():
            for metric, (minimum, maximum) in model.performance_bounds.items():
                if minimum is not None:
                    low.add_metric([name, metric], float(minimum))
                if maximum is not None:
                    high.add_metric([name, metric], float(maximum))
        yield from (low, high)

    def _streaks(self, status: ServiceStatus) -> Iterator[Metric]:
        dataset = _gauge(
            "dataset_drift_streak",
            "Windows in a row, up to and including the latest evaluated one, in which the model "
            "drifted as a whole; 0 when the latest did not drift; checkpointed.  The drift alerts "
            "fire on this streak, not on one window (each window is a fresh test that alarms by "
            "chance at rate alpha).",
            _M)
        feature = _gauge(
            "feature_drift_streak",
            "Windows in a row, up to and including the latest evaluated one, in which the feature "
            "drifted; 0 when it did not drift in the latest.",
            _MFT)
        for name, model in status.models.items():
            latest = model.latest
            if latest is None:
                continue
            dataset.add_metric([name], float(model.dataset_drift_streak))
            for result in latest.features:
                feature.add_metric([name, result.name, result.test],
                                   float(model.feature_drift_streaks.get(result.name, 0)))
        yield from (dataset, feature)

    def _throughput(self, status: ServiceStatus) -> Iterator[Metric]:
        counts = dict.fromkeys(status.configured_models, 0)
        counts.update(status.events_total)
        # two names, one value: driftline_events_total is the contract name
        for metric in ("events_total", "events_consumed_total"):
            consumed = _counter(metric, _CONSUMED_HELP[metric], _M)
            for name, count in counts.items():
                consumed.add_metric([name], float(count))
            yield consumed
        windowed = _counter(
            "events_windowed_total",
            "Distinct prediction events in the model's windowed state, each counted once: restored "
            "from the checkpoint, so a replay after a crash or a rebalance does not count again; "
            "shown only by the replica that owns the model, so it moves with the model (take "
            "max by (model) across replicas).",
            _M)
        for name, model in status.models.items():
            windowed.add_metric([name], float(model.events_total))
        yield windowed

        invalid_counts = {(model, reason): 0
                          for model in status.configured_models for reason in INVALID_REASONS}
        invalid_counts.update(status.invalid)
        invalid = _counter(
            "events_invalid_total",
            "Messages or events rejected by validation, by reason "
            f"({', '.join(INVALID_REASONS)}); model is empty when the message is unreadable or names "
            "a model that is not configured.",
            ["model", "reason"])
        for (name, reason), count in invalid_counts.items():
            invalid.add_metric([name, reason], float(count))
        yield invalid

        duration = HistogramMetricFamily(
            PREFIX + "evaluation_duration_seconds",
            "Time taken to evaluate one closed window (drift tests, quality and performance), in seconds.",
            labels=[])
        histogram = status.evaluation
        cumulative = list(accumulate(histogram.counts))
        bounds = [_le(upper) for upper in histogram.buckets] + ["+Inf"]
        buckets = [(bound, float(count)) for bound, count in zip(bounds, cumulative, strict=True)]
        duration.add_metric([], buckets, float(histogram.total))
        yield duration

    def _windows(self, status: ServiceStatus) -> Iterator[Metric]:
        rows = _gauge(
            "window_rows",
            "Rows collected so far in the model's window that closes next.",
            _M)
        fill = _gauge(
            "window_fill_ratio",
            "How full (0..1) the model's window that closes next is.",
            _M)
        last = _gauge(
            "last_evaluation_timestamp_seconds",
            "Unix time (seconds) at which the model's latest window was evaluated.",
            _M)
        for name, model in status.models.items():
            rows.add_metric([name], float(model.window_rows))
            fill.add_metric([name], float(model.window_fill))
            if model.latest is not None:
                last.add_metric([name], float(model.latest.evaluated_at))
        yield from (rows, fill, last)

    def _consumer(self, status: ServiceStatus) -> Iterator[Metric]:
        lag = _gauge(
            "consumer_lag_messages",
            "Messages in the partition not yet consumed by this replica (high watermark minus position).",
            ["topic", "partition"])
        for (topic, partition), messages in sorted(status.lag.items()):
            lag.add_metric([topic, str(partition)], float(messages))
        yield lag

        model_lag = _gauge(
            "model_consumer_lag_messages",
            "Prediction messages not yet consumed in the partition that carries the model "
            "(its key hashes there; other models on that partition share the figure).",
            _M)
        for name, messages in sorted(status.model_lag.items()):
            model_lag.add_metric([name], float(messages))
        yield model_lag

        age = _gauge(
            "checkpoint_age_seconds",
            "Seconds since this replica last saved its window state and committed offsets; "
            "absent before the first checkpoint.")
        if status.last_checkpoint is not None:
            age.add_metric([], max(0.0, status.now - status.last_checkpoint))
        yield age

    def _labels(self, status: ServiceStatus) -> Iterator[Metric]:
        joined = _counter(
            "labels_joined_total",
            "Ground-truth labels matched to a buffered prediction by request id.",
            _M)
        unmatched = _counter(
            "labels_unmatched_total",
            "Ground-truth labels dropped without a prediction: their request id never "
            "arrived, or came after the label waited its TTL or was pushed out by the cap.",
            _M)
        evictions = _counter(
            "label_join_evictions_total",
            "Predictions dropped from the label-join buffer unlabelled, because they aged out "
            "or the buffer was full.",
            _M)
        buffer = _gauge(
            "label_join_buffer_size",
            "Predictions waiting in the label-join buffer for their label.",
            _M)
        for name, model in status.models.items():
            joined.add_metric([name], float(model.labels_joined))
            unmatched.add_metric([name], float(model.labels_unmatched))
            evictions.add_metric([name], float(model.join_evictions))
            buffer.add_metric([name], float(model.join_buffer_size))
        yield from (joined, unmatched, evictions, buffer)


def make_registry(status: Callable[[], ServiceStatus]) -> CollectorRegistry:
    """A fresh registry (not the process-wide default) holding one :class:`StatusCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(status))
    return registry
