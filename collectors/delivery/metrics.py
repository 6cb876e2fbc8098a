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
``driftline_collector_requests_unparsed_total{model,reason}``  requests not read into rows, by reason
``driftline_collector_responses_uncaptured_total{model,class}`` calls left out for their answer
=============================================================  =====================================

Rows and requests.  ``captured``, ``sent``, ``failed`` and ``dropped`` count events (rows):
an event is counted ``captured`` once, when its row is known, and then exactly once more, as
sent, failed or dropped.  So, once the queue is empty and nothing is in flight, the identity
is exact over every reason::

    captured = sent + failed + sum(dropped)

Drop reasons (:data:`DROP_REASONS`, every one pre-initialised at 0 per model so that
``rate()`` and alert rules see the series before the first drop): ``queue_full`` (the
bounded queue was full: broker down or slow), ``oversize`` (an event larger than one
message), ``sampled_out`` (a prediction the SDK logged, whose rows are known, left out by
sampling), ``shutdown`` (still queued when the collector stopped) and ``unparseable`` (the
rows of a request that was read, whose answer could not be: its predictions are unknown).

A request that is left out before its rows are known (the proxy skips, samples or sheds it
before parsing, its body is over the payload limit, it cannot be read, or nothing names its
model) is counted once in ``requests_unparsed{model,reason}`` (:data:`UNPARSED_REASONS`):
requests, not rows, and never part of the identity.  A call left out for its answer is counted
once in ``responses_uncaptured{model,class}`` (:data:`UNCAPTURED_CLASSES`): a model answer
outside 2xx (no ``--capture-errors``) by its status class, and ``error`` for a call that got
no whole answer from the model (the proxy answered 502 or 504, the answer stopped mid-body,
or the caller left before it was over).  Their ``model`` is the one the call would have gone
under, ``""`` when nothing named one.

The proxy's ``status`` label is a class, :func:`status_class`: ``"1xx"`` ... ``"5xx"``, or
``"error"`` when there was no HTTP answer (connection refused, timeout).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.runtime import exposition

DROP_REASONS: Final = ("queue_full", "oversize", "sampled_out", "shutdown", "unparseable")
_DROP_MEANINGS: Final = {
    "queue_full": "the delivery queue was full: broker down or slow",
    "oversize": "an event larger than one message, or a capture larger than the whole queue",
    "sampled_out": "a logged prediction left out by the SDK's sample_rate",
    "shutdown": "still queued when the collector stopped",
    "unparseable": "the rows of a request that was read, whose answer could not be",
}
_UNPARSED_MEANINGS: Final = {
    "skipped": "X-Driftline-Skip: 1",
    "sampled_out": "left out by --sample-rate",
    "overload": "over the --max-cpu budget",
    "oversize": "a body over --max-payload-bytes",
    "unparseable": "the payload could not be read as rows",
    "no_model": "neither --model nor the path named a model",
}
UNPARSED_REASONS: Final = tuple(_UNPARSED_MEANINGS)
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "error")
UNCAPTURED_CLASSES: Final = ("1xx", "3xx", "4xx", "5xx", "error")
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
            "Events (rows) taken in, each then counted once as sent, failed or dropped: once the queue is "
            "empty, captured = sent + failed + dropped (every reason).", ["model"], registry=r)
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
        self._unparsed = Counter(
            "driftline_collector_requests_unparsed",
            "Requests left out before their rows were known (counted per request, not per row), by reason: "
            + ", ".join(f"{reason} ({meaning})" for reason, meaning in _UNPARSED_MEANINGS.items()) + ".",
            ["model", "reason"], registry=r)
        self._uncaptured = Counter(
            "driftline_collector_responses_uncaptured",
            "Calls not captured because of their answer, by class: 1xx, 3xx, 4xx, 5xx (a model answer "
            "outside 2xx, without --capture-errors), error (no whole answer from the model: the proxy "
            "answered 502 or 504, the answer stopped mid-body, or the caller left before it was over).",
            ["model", "class"], registry=r)
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
        for reason in UNPARSED_REASONS:
            if reason != "no_model":  # a model that is named was not missing
                self._unparsed.labels(model, reason)
        for cls in UNCAPTURED_CLASSES:
            self._uncaptured.labels(model, cls)

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

    def unparsed(self, model: str, reason: str) -> None:
        """One request left out before its rows were known (``model`` "": nothing named one)."""
        if reason not in _UNPARSED_MEANINGS:
            raise ValueError(f"unknown reason {reason!r}; expected one of {', '.join(UNPARSED_REASONS)}")
        self._child(self._unparsed, "unparsed", model, reason).inc()

    def uncaptured(self, model: str, status: int | None) -> None:
        """One model answer outside 2xx that was not captured."""
        self._child(self._uncaptured, "uncaptured", model, status_class(status)).inc()

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

    def of_model(self, model: str | None) -> ModelMetrics:
        """The series of one model (None: each call names its own, and a call that names none is
        counted under ``model=""``), as the proxy and the capture pipeline count them."""
        if model:
            self.add_model(model)
        else:
            self._unparsed.labels("", "no_model")
        return ModelMetrics(self, model)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type.

        ``accept`` is the request's Accept header: OpenMetrics when the scraper asks for
        ``application/openmetrics-text``, else the Prometheus text format (also when the
        header is malformed, rather than failing the scrape).
        """
        return exposition(self.registry, accept)


class ModelMetrics:
    """One model's view of :class:`CollectorMetrics`: the proxy's latency and the capture's counts
    (:class:`collectors.capture.DropCounter`).  ``model`` is the default of calls that name none
    (None: the proxy's latency of such a call is labelled ``model=""``)."""

    __slots__ = ("_metrics", "_model")

    def __init__(self, metrics: CollectorMetrics, model: str | None) -> None:
        self._metrics, self._model = metrics, model

    def observe_proxy(self, status: int | None, seconds: float, model: str | None = None) -> None:
        self._metrics.observe_proxy_latency(model or self._model or "", status, seconds)

    def dropped(self, reason: str, events: int, model: str | None = None) -> None:
        """Rows read and then left out: counted captured, then dropped (the identity holds)."""
        name = model or self._model or ""
        self._metrics.add_model(name)
        self._metrics.captured(name, events)
        self._metrics.dropped(name, reason, events)

    def unparsed(self, reason: str, model: str | None = None) -> None:
        self._metrics.unparsed(model or self._model or "", reason)

    def uncaptured(self, status: int | None, model: str | None = None) -> None:
        self._metrics.uncaptured(model or self._model or "", status)
