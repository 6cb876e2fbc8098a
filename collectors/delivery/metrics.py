"""The collector's own Prometheus metrics: the collectors' only ``prometheus_client`` import.

:class:`CollectorMetrics` owns a fresh :class:`~prometheus_client.CollectorRegistry` (never
the process-wide default, so a collector embedded in another process exposes only its own
series, and tests can build as many as they like).  Series (``model`` comes from config,
``reason`` and ``status`` from fixed sets; never request ids or raw values):

=============================================================  =====================================
``driftline_collector_events_captured_total{model}``           events handed to the delivery queue
``driftline_collector_events_sent_total{model}``               events the broker acknowledged
``driftline_collector_events_dropped_total{model,reason}``     events dropped on purpose, by reason
``driftline_collector_events_failed_total{model}``             events the sender could not deliver
``driftline_collector_queue_depth{model}``                     events waiting in the delivery queue
``driftline_collector_delivery_latency_seconds{model}``        capture time to broker ack, per event
``driftline_collector_proxy_latency_seconds{model,status}``    time the proxy took per request
=============================================================  =====================================

Drop reasons (:data:`DROP_REASONS`, every one pre-initialised at 0 per model so that
``rate()`` and alert rules see the series before the first drop): ``queue_full`` (the
bounded queue was full: broker down or slow), ``oversize`` (an event larger than one
message), ``sampled_out``, ``skipped``, ``unparseable`` and ``overload`` (decided by the
proxy before delivery; ``overload``: the collector was over its CPU budget, so the
capture was shed to keep answering the model's callers at full speed) and ``shutdown`` (still
queued when the collector stopped).

The delivery accounting identity, once the queue is empty and nothing is in flight:
``captured = sent + failed + dropped{queue_full, oversize, shutdown}``.  The proxy-side
reasons count events that were never captured.

The proxy's ``status`` label is a class, :func:`status_class`: ``"1xx"`` ... ``"5xx"``, or
``"error"`` when there was no HTTP answer (connection refused, timeout).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.runtime import exposition

DROP_REASONS: Final = ("queue_full", "oversize", "sampled_out", "skipped", "unparseable", "overload",
                       "shutdown")
_DROP_MEANINGS: Final = {
    "queue_full": "the delivery queue was full: broker down or slow",
    "oversize": "larger than one message, or a payload over --max-payload-bytes",
    "sampled_out": "left out by --sample-rate",
    "skipped": "the request said X-Driftline-Skip: 1",
    "unparseable": "the payload could not be read as events",
    "overload": "the collector was over its --max-cpu budget",
    "shutdown": "still queued when the collector stopped",
}
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "error")
DELIVERY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PROXY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def status_class(status: int | None) -> str:
    """``"2xx"`` for 200..299 and so on; ``"error"`` for no status or one outside 100..599."""
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


class CollectorMetrics:
    """The collector's counters, gauge and histograms, on their own registry.

    Thread-safe (``prometheus_client`` metrics are): the request path, the delivery
    thread and the Kafka client's callback thread all update them.
    """

    def __init__(self, models: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._captured = Counter(
            "driftline_collector_events_captured",
            "Events handed to the delivery queue; once the queue is empty, captured = sent + failed + "
            "dropped (reasons queue_full, oversize and shutdown).", ["model"], registry=r)
        self._sent = Counter("driftline_collector_events_sent",
                             "Events acknowledged by the broker (acks=all).", ["model"], registry=r)
        self._dropped = Counter(
            "driftline_collector_events_dropped",
            "Events dropped on purpose, by reason: "
            + ", ".join(f"{reason} ({_DROP_MEANINGS[reason]})" for reason in DROP_REASONS) + ".",
            ["model", "reason"], registry=r)
        self._failed = Counter(
            "driftline_collector_events_failed",
            "Events handed to the sender that were not delivered (no retries: at most once).",
            ["model"], registry=r)
        self._queue_depth = Gauge("driftline_collector_queue_depth", "Events waiting in the delivery queue.",
                                  ["model"], registry=r)
        self._delivery_latency = Histogram(
            "driftline_collector_delivery_latency_seconds",
            "Time from capture to the broker's acknowledgement, per event.",
            ["model"], buckets=DELIVERY_BUCKETS, registry=r)
        self._proxy_latency = Histogram(
            "driftline_collector_proxy_latency_seconds",
            "Time the proxy took per request, by status class of the model's answer: 1xx..5xx, or "
            "error when there was no HTTP answer (refused, timed out).",
            ["model", "status"], buckets=PROXY_BUCKETS, registry=r)
        self._models: set[str] = set()
        # labelled children by label values: labels() takes a lock and builds a key per call
        self._children: dict[tuple[str, ...], Any] = {}
        for model in models:
            self.add_model(model)

    def add_model(self, model: str) -> None:
        """Create every per-model series at 0 (idempotent)."""
        if model in self._models:
            return
        self._models.add(model)
        self._captured.labels(model)
        self._sent.labels(model)
        self._failed.labels(model)
        for reason in DROP_REASONS:
            self._dropped.labels(model, reason)
        self._queue_depth.labels(model).set(0)
        self._delivery_latency.labels(model)

    def captured(self, model: str, n: int = 1) -> None:
        self._child(self._captured, "captured", model).inc(n)

    def sent(self, model: str, n: int) -> None:
        self._child(self._sent, "sent", model).inc(n)

    def failed(self, model: str, n: int) -> None:
        self._child(self._failed, "failed", model).inc(n)

    def dropped(self, model: str, reason: str, n: int = 1) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}; expected one of {', '.join(DROP_REASONS)}")
        self._child(self._dropped, "dropped", model, reason).inc(n)

    def set_queue_depth(self, model: str, depth: int) -> None:
        self._child(self._queue_depth, "queue_depth", model).set(depth)

    def observe_delivery_latency(self, model: str, seconds: float) -> None:
        self._child(self._delivery_latency, "delivery", model).observe(max(0.0, seconds))

    def observe_proxy_latency(self, model: str, status: int | None, seconds: float) -> None:
        self._child(self._proxy_latency, "proxy", model, status_class(status)).observe(max(0.0, seconds))

    def _child(self, metric: Any, name: str, *labels: str) -> Any:
        key = (name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def of_model(self, model: str) -> ModelMetrics:
        """The series of one model, as the proxy and the capture pipeline count them."""
        return ModelMetrics(self, model)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type.

        ``accept`` is the request's Accept header: OpenMetrics when the scraper asks for
        ``application/openmetrics-text``, else the Prometheus text format (also when the
        header is malformed, rather than failing the scrape).
        """
        return exposition(self.registry, accept)


class ModelMetrics:
    """One model's view of :class:`CollectorMetrics`: the proxy's latency and the capture's drops."""

    __slots__ = ("_metrics", "_model")

    def __init__(self, metrics: CollectorMetrics, model: str) -> None:
        self._metrics, self._model = metrics, model

    def observe_proxy(self, status: int | None, seconds: float) -> None:
        self._metrics.observe_proxy_latency(self._model, status, seconds)

    def dropped(self, reason: str, events: int) -> None:
        self._metrics.dropped(self._model, reason, events)
