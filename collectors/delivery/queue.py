"""Delivery of captured predictions: a bounded queue and one background producer thread.

The request path calls :meth:`Delivery.offer`, which encodes the capture's events (one
short msgspec call each), appends them to an in-memory queue under a lock (no I/O, no
waiting on Kafka, O(1) amortised in the queue) and returns.  A background thread takes
the queued captures, joins their encoded events into batch envelopes of the wire contract
(:func:`monitor.wire.decode.encode_predictions`, byte for byte: one message per run of
events of the same model and model version, at most ``batch_events`` events and
``max_message_bytes`` bytes each, split by the events' encoded sizes) and hands them to a
:class:`Sender` keyed by model, so all of a model's events land on one partition.
Callbacks from the sender count what was sent or failed and observe the delivery latency
(capture time to acknowledgement) per event.

Why encode on the request path: the collector is one Python process, and every thread of
it runs under one interpreter lock.  A proxied request that arrives while the delivery
thread encodes waits for the lock (up to the switch interval each time, see
:mod:`collectors.sidecar`).  Encoding right after the answer has left costs the proxy the
same CPU without that wait, and leaves the thread only joins of bytes and the send.

Guarantees
----------
* **At most once.**  An event is handed to the sender at most once and is never retried
  by the delivery (the Kafka sender does not retry either, see
  :mod:`collectors.delivery.kafka`).  Events can be lost, and every loss is counted; none is
  duplicated by the collector.
* **Never in the model's way.**  :meth:`~Delivery.offer` never blocks on the sender or
  the broker: when the thread is stuck in a slow ``send``, offers still take
  microseconds and the queue simply fills up.
* **Bounded memory.**  At most ``max_queue_events`` events wait in the queue; the thread
  holds at most one batch (``batch_events`` events plus the rest of the last capture it
  took); the sender holds what its own bound allows (``KafkaSender(buffer_bytes=...)``).
* **Resumes by itself.**  Nothing is torn down when the broker goes away: after a
  failure the thread backs off (50 ms doubling to ``max_backoff_s``) and tries again
  with the same sender, so delivery resumes within about ``max_backoff_s`` of the broker
  coming back.

When events are lost, and how they are counted (``model`` label = the capture's model)
-------------------------------------------------------------------------------------
* ``dropped{reason="queue_full"}``: the queue was full (broker down or slower than the
  traffic).  ``drop="newest"`` refuses the new capture; ``drop="oldest"`` (default)
  evicts the oldest queued captures to make room, keeping the freshest data.
* ``dropped{reason="oversize"}``: a capture with more instances than the whole queue
  holds, or one event that alone encodes to more than ``max_message_bytes``.
* ``dropped{reason="shutdown"}``: still queued (or not yet handed over) when
  :meth:`~Delivery.stop` ran out of time, or offered after it.
* ``failed``: handed to the sender but not acknowledged: refused at once (sender
  buffer full, no connection), rejected by the broker, or unacknowledged within the
  sender's delivery timeout.  With ``acks`` lost in transit an event counted as failed
  may in fact have been written; an event counted as sent was acknowledged.

Every offered event is counted once in ``captured``; when the queue is empty and nothing
is in flight, ``captured = sent + failed + dropped{queue_full, oversize, shutdown}``; with the
rows the capture pipeline counts as captured and dropped itself, the identity holds over every
reason (:mod:`collectors.delivery.metrics`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, Self

from collectors import defaults
from collectors.delivery.metrics import CollectorMetrics
from collectors.events import Capture
from monitor.errors import named
from monitor.wire.encode import JSON, EncodedEvent, encode_encoded_predictions, encode_event, envelope_size

log = logging.getLogger("driftline.collector.delivery")

DropPolicy = Literal["newest", "oldest"]
#: below the 1 MiB that consumers accept per message (codec.DEFAULT_MAX_BYTES) and that
#: Kafka brokers accept by default, leaving room for the record's own overhead
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
_MIN_BACKOFF_S = 0.05
_WARN_EVERY_S = 30.0


@dataclass(frozen=True, slots=True)
class _Queued:
    """A capture in the queue: its model and version (the delivery's defaults filled in), its
    time, and its events already encoded."""

    model: str
    version: str | None
    ts_ms: int
    events: tuple[EncodedEvent, ...]


class Sender(Protocol):
    """Where envelopes go (Kafka in production, a fake in tests)."""

    def send(self, topic: str, key: bytes, value: bytes, on_done: Callable[[Exception | None], None]) -> None:
        """Hand over one message without blocking (or blocking briefly and boundedly).

        ``on_done`` must be called exactly once, from any thread: with ``None`` once the
        broker acknowledged the message, with the exception when it will not be
        delivered (possibly before ``send`` returns, e.g. when a buffer is full).
        """
        ...

    def flush(self, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` for the messages handed over to complete."""
        ...

    def close(self) -> None:
        """Release the connection, promptly; messages still pending fail via ``on_done``."""
        ...


class Delivery:
    """A bounded queue of captures and the thread that ships them (see the module doc).

    ``model``/``model_version`` fill in for captures that do not name their own; metrics
    are labelled with the envelope's model.  ``clock`` gives the wall-clock time in
    seconds since the epoch (what ``Capture.ts_ms`` counts in) for the latency.
    """

    def __init__(self, sender: Sender, topic: str, model: str, model_version: str | None = None, *,
                 max_queue_events: int = defaults.QUEUE_EVENTS, drop: DropPolicy = "oldest",
                 batch_events: int = 100, linger_s: float = defaults.LINGER_S,
                 metrics: CollectorMetrics | None = None,
                 clock: Callable[[], float] = time.time, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 encoding: str = JSON, max_backoff_s: float = 1.0) -> None:
        if max_queue_events < 1 or batch_events < 1:
            raise ValueError("max_queue_events and batch_events must be at least 1")
        if drop not in ("newest", "oldest"):
            raise ValueError(f"drop must be 'newest' or 'oldest', not {drop!r}")
        self.sender = sender
        self.topic = topic
        self.model = model
        self.model_version = model_version
        self.max_queue_events = max_queue_events
        self.drop: DropPolicy = drop
        self.batch_events = batch_events
        self.linger_s = linger_s
        self.metrics = metrics if metrics is not None else CollectorMetrics()
        if model:  # "": every capture names its own model (a multi-model server)
            self.metrics.add_model(model)
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.encoding = encoding
        self.max_backoff_s = max_backoff_s

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Queued] = deque()
        self._events = 0  # events in _queue
        self._oldest_at: float | None = None  # monotonic time the queue last became non-empty
        self._closed = False  # no more offers
        self._stopping = False  # drain without lingering, then exit
        self._abandon = False  # stop ran out of time: hand nothing more to the sender
        self._thread: threading.Thread | None = None
        self._last_warning = -_WARN_EVERY_S

    # -- the request path ----------------------------------------------------------------------

    def offer(self, capture: Capture) -> bool:
        """Queue ``capture`` for delivery; never blocks.  False if it was dropped.

        Its events are encoded here, on the caller's thread (for the sidecar: the event loop,
        after the answer has left), so that the delivery thread only joins bytes and hands
        them over: the less the thread runs Python, the less the proxy waits for the
        interpreter lock (see the module doc)."""
        n = len(capture.instances)
        if n == 0:
            return True
        model = capture.model or self.model
        if model != self.model:
            self.metrics.add_model(model)  # idempotent: every series of a new model starts at 0
        version = capture.model_version if capture.model_version is not None else self.model_version
        queued = _Queued(model, version, capture.ts_ms,
                         tuple(encode_event(event, encoding=self.encoding) for event in capture.events()))
        evicted: list[_Queued] = []
        reason: str | None = None
        with self._lock:
            if self._closed:
                reason = "shutdown"
            elif n > self.max_queue_events:
                reason = "oversize"
            elif self._events + n > self.max_queue_events:
                if self.drop == "newest":
                    reason = "queue_full"
                else:
                    while self._events + n > self.max_queue_events:
                        old = self._queue.popleft()
                        self._events -= len(old.events)
                        evicted.append(old)
            if reason is None:
                if not self._queue:
                    self._oldest_at = time.monotonic()
                self._queue.append(queued)
                self._events += n
                # wake the thread only to start lingering, or when a batch is full
                if len(self._queue) == 1 or self._events - n < self.batch_events <= self._events:
                    self._wake.notify()
            self.metrics.set_queue_depth(self.model, self._events)
        self.metrics.captured(model, n)
        for old in evicted:
            self.metrics.dropped(old.model, "queue_full", len(old.events))
        if reason is not None:
            self.metrics.dropped(model, reason, n)
            return False
        return True

    @property
    def queued_events(self) -> int:
        """Events waiting in the queue right now."""
        with self._lock:
            return self._events

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the delivery thread (once)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Delivery was stopped; make a new one")
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name=f"driftline-delivery-{self.model}",
                                            daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop taking offers, deliver what can be delivered within ``timeout_s``, then
        count what is left as dropped (``shutdown``) and close the sender.

        Events already handed to the sender when the time runs out complete through its
        callbacks: acknowledged ones count as sent, the rest as failed when it closes.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            self._closed = self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandon = True
            left = list(self._queue)
            self._queue.clear()
            self._events = 0
            self._oldest_at = None
            self.metrics.set_queue_depth(self.model, 0)
        self._count_dropped(left, "shutdown")
        if thread is not None and thread.is_alive():
            log.warning("delivery thread of %s did not finish within %g s (the sender is stuck)",
                        self.model, timeout_s)
        try:
            self.sender.flush(max(0.0, deadline - time.monotonic()))
        finally:
            self.sender.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the delivery thread -------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                failed_at_once = self._ship(batch)
            except Exception:  # never let the thread die: the model must not notice
                log.exception("shipping a batch of %s failed", self.model)
                failed_at_once = True
            if failed_at_once:
                backoff = min(self.max_backoff_s, max(_MIN_BACKOFF_S, backoff * 2))
                with self._lock:  # back off, but wake up at once to stop
                    self._wake.wait_for(lambda: self._stopping, backoff)
            else:
                backoff = 0.0

    def _take(self) -> list[_Queued] | None:
        """The next batch of captures (after lingering for more), or None to exit."""
        with self._lock:
            while True:
                if self._abandon:
                    return None
                if self._queue:
                    if self._events >= self.batch_events or self._stopping:
                        break
                    oldest = self._oldest_at if self._oldest_at is not None else time.monotonic()
                    remaining = oldest + self.linger_s - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                elif self._stopping:
                    return None
                else:
                    self._wake.wait()
            batch: list[_Queued] = []
            taken = 0
            while self._queue and taken < self.batch_events:
                queued = self._queue.popleft()
                taken += len(queued.events)
                batch.append(queued)
            self._events -= taken
            self._oldest_at = time.monotonic() if self._queue else None
            self.metrics.set_queue_depth(self.model, self._events)
            return batch

    def _ship(self, batch: Sequence[_Queued]) -> bool:
        """Join and hand over ``batch``; True if the sender refused a message at once."""
        refused = False
        for model, version, events, ts in self._envelopes(batch):
            if self._abandon:
                self.metrics.dropped(model, "shutdown", len(events))
                continue
            for value, sent_ts in self._messages(model, version, events, ts):
                refused = self._send(model, value, sent_ts) or refused
        return refused

    def _envelopes(self, batch: Sequence[_Queued]
                   ) -> Iterator[tuple[str, str | None, list[EncodedEvent], list[int]]]:
        """Runs of events of one (model, version), in order, at most batch_events each, with
        each event's capture time."""
        run: list[EncodedEvent] = []
        ts: list[int] = []
        key: tuple[str, str | None] | None = None
        for queued in batch:
            this = (queued.model, queued.version)
            if this != key:
                if run and key is not None:
                    yield key[0], key[1], run, ts
                key, run, ts = this, [], []
            for event in queued.events:
                run.append(event)
                ts.append(queued.ts_ms)
                if len(run) == self.batch_events:
                    yield this[0], this[1], run, ts
                    run, ts = [], []
        if run and key is not None:
            yield key[0], key[1], run, ts

    def _messages(self, model: str, version: str | None, events: list[EncodedEvent], ts_ms: list[int]
                  ) -> Iterator[tuple[bytes, list[int]]]:
        """Messages of at most max_message_bytes, split by the encoded events' sizes (nothing is
        encoded twice), and their events' capture times; an event too large for any message
        is dropped (``oversize``)."""
        room = self.max_message_bytes - envelope_size(model, model_version=version, encoding=self.encoding)
        parts: list[EncodedEvent] = []
        ts: list[int] = []
        size = 0
        for event, at in zip(events, ts_ms, strict=True):
            n = len(event) + 1
            if n > room:
                log.warning("dropped an event of %s: %d bytes encoded, over the %d-byte message limit",
                            model, n, self.max_message_bytes)
                self.metrics.dropped(model, "oversize", 1)
                continue
            if size + n > room:
                yield self._join(model, version, parts), ts
                parts, ts, size = [], [], 0
            parts.append(event)
            ts.append(at)
            size += n
        if parts:
            yield self._join(model, version, parts), ts

    def _join(self, model: str, version: str | None, parts: list[EncodedEvent]) -> bytes:
        return encode_encoded_predictions(model, parts, model_version=version, encoding=self.encoding)

    def _send(self, model: str, value: bytes, ts_ms: list[int]) -> bool:
        """Hand one message over; True if the sender failed it before returning."""
        n = len(ts_ms)
        sending = True
        refused: list[Exception] = []

        def on_done(exc: Exception | None) -> None:
            if exc is None:
                self.metrics.sent(model, n)
                now = self.clock()
                for ts in ts_ms:
                    self.metrics.observe_delivery_latency(model, now - ts / 1000.0)
            else:
                self.metrics.failed(model, n)
                log.debug("%d events of %s not delivered: %s", n, model, named(exc))
                self._warn_failure(model, exc)
                if sending:
                    refused.append(exc)

        try:
            self.sender.send(self.topic, model.encode(), value, on_done)
        except Exception as exc:  # a sender breaking its contract: count, do not die
            on_done(exc)
        sending = False
        return bool(refused)

    def _warn_failure(self, model: str, exc: Exception) -> None:
        """One warning per ``_WARN_EVERY_S`` while deliveries fail (the counters have the rest)."""
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning("events of %s are not being delivered (%s); see "
                        "driftline_collector_events_failed_total", model, named(exc))

    def _count_dropped(self, queued: Sequence[_Queued], reason: str) -> None:
        counts: dict[str, int] = {}
        for q in queued:
            counts[q.model] = counts.get(q.model, 0) + len(q.events)
        for model, n in counts.items():
            self.metrics.dropped(model, reason, n)
