"""The SDK's :class:`Collector`: the model code logs its predictions with :meth:`~Collector.log_prediction`.

Usage and promises: :mod:`collectors.sdk` (import from there).  Here: turning
the Python values a model hands over (mappings, sequences, NumPy and pandas
objects, recognised without importing either) into instances, by the
extractors' value rules (:mod:`collectors.extractors.base`), and the
collector that runs them through the capture pipeline
(:mod:`collectors.capture`) into its bounded delivery queue.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Self

from collectors import defaults
from collectors.capture import Capturer, CaptureSettings
from collectors.delivery.kafka import KafkaSender, SenderClosed
from collectors.delivery.metrics import CollectorMetrics
from collectors.delivery.queue import Delivery, DropPolicy, Sender
from collectors.events import Capture, Instance, Scalar
from collectors.extractors import CompiledSpec, ExtractError, FieldPolicy, GenericSpec
from collectors.extractors.base import numpy_like, object_fields, prediction_outputs

if TYPE_CHECKING:  # accepted as a batch; only for the annotation: pandas is never imported here
    from pandas import DataFrame

log = logging.getLogger("driftline.collector.sdk")

# -- values: the shapes a model hands over; the value rules are the extractors' -------------------

_TEXT = (str, bytes, bytearray, memoryview)


def _frame_like(value: Any) -> bool:
    """A pandas DataFrame: rows (or columns) through ``to_dict``, without importing pandas."""
    return type(value).__module__.startswith("pandas.") and hasattr(value, "columns") and hasattr(
        value, "to_dict")


def _fields(row: Any, where: str) -> dict[str, Scalar]:
    if numpy_like(row) and hasattr(row, "to_dict"):  # a pandas Series: one row
        row = row.to_dict()
    if not isinstance(row, Mapping):
        raise ExtractError("unknown_shape", f"{where} must be a mapping of names to values, "
                                            f"not {type(row).__name__}")
    return object_fields(row)


def _prediction(value: Any) -> dict[str, Scalar]:
    """One row's outputs, by the extractors' rule (:func:`~collectors.extractors.base.prediction_outputs`):
    a mapping's keys, ``prediction_<i>`` for a sequence, ``prediction`` for a scalar."""
    if numpy_like(value):
        value = value.to_dict() if hasattr(value, "to_dict") else value.tolist()
    if isinstance(value, Mapping):
        return _fields(value, "outputs")
    return prediction_outputs(list(value) if isinstance(value, tuple) else value)


def _rows(inputs: Any) -> tuple[list[Any], bool]:
    """The rows of ``inputs`` and whether it was a single row (a mapping, a pandas Series)."""
    if isinstance(inputs, Mapping):
        return [inputs], True
    if _frame_like(inputs):
        return list(inputs.to_dict(orient="records")), False
    if numpy_like(inputs) and hasattr(inputs, "to_dict"):
        return [inputs.to_dict()], True
    if isinstance(inputs, Sequence) and not isinstance(inputs, _TEXT):
        return list(inputs), False
    raise ExtractError("unknown_shape", f"inputs must be a mapping (one row) or a sequence of mappings "
                                        f"(a batch), not {type(inputs).__name__}")


def _outputs(outputs: Any, n: int, single: bool) -> list[dict[str, Scalar]]:
    """One outputs mapping per row."""
    if single:
        return [_prediction(outputs)]
    if _frame_like(outputs):
        outputs = outputs.to_dict(orient="list")
    elif numpy_like(outputs):
        outputs = outputs.tolist()
    if isinstance(outputs, Mapping):
        columns = {str(k): (v.tolist() if numpy_like(v) else v) for k, v in outputs.items()}
        if columns and all(isinstance(v, list | tuple) and len(v) == n for v in columns.values()):
            return [_fields({k: v[i] for k, v in columns.items()}, "outputs") for i in range(n)]
        if n == 1:
            return [_fields(columns, "outputs")]
        raise ExtractError("mismatch", f"a batch of {n} rows needs outputs with one value per row "
                                       f"(or columns of {n} values)")
    if isinstance(outputs, Sequence) and not isinstance(outputs, _TEXT):
        if len(outputs) != n:
            raise ExtractError("mismatch", f"a batch of {n} rows has {len(outputs)} outputs")
        return [_prediction(y) for y in outputs]
    if n == 1:
        return [_prediction(outputs)]
    raise ExtractError("mismatch", f"a batch of {n} rows needs a sequence of outputs, "
                                   f"not {type(outputs).__name__}")


def instances(inputs: Any, outputs: Any = None) -> tuple[Instance, ...]:
    """The instances of one :meth:`Collector.log_prediction` call; :class:`ExtractError` when
    they cannot be made (the message names types and counts, never values)."""
    rows, single = _rows(inputs)
    features = [_fields(row, f"row {i} of the inputs") for i, row in enumerate(rows)]
    if outputs is None:
        return tuple(Instance(inputs=x) for x in features)
    predictions = _outputs(outputs, len(rows), single)
    return tuple(Instance(inputs=x, outputs=y) for x, y in zip(features, predictions, strict=True))


# -- the collector -------------------------------------------------------------------------------


class _LazyKafkaSender:
    """A :class:`KafkaSender` made on the first ``send`` (on the delivery thread)."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self.bootstrap, self.client_id = bootstrap, client_id
        self._lock = threading.Lock()
        self._sender: KafkaSender | None = None
        self._closed = False

    def send(self, topic: str, key: bytes, value: bytes, on_done: Callable[[Exception | None], None]) -> None:
        with self._lock:
            if self._closed:
                sender = None
            else:
                if self._sender is None:
                    self._sender = KafkaSender(self.bootstrap, client_id=self.client_id)
                sender = self._sender
        if sender is None:
            on_done(SenderClosed("the sender is closed"))
        else:
            sender.send(topic, key, value, on_done)

    def flush(self, timeout_s: float) -> None:
        with self._lock:
            sender = self._sender
        if sender is not None:
            sender.flush(timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sender = self._sender
        if sender is not None:
            sender.close()


class Collector:
    """Logs predictions of the model ``model`` to the Kafka topic ``topic`` at ``kafka``.

    ``sample_rate`` keeps that share of the calls (the rest are counted ``sampled_out``);
    ``policy`` drops or hashes fields; ``max_queue_events`` and ``drop`` bound the queue
    (:class:`~collectors.delivery.queue.Delivery`); ``sender`` replaces Kafka (tests); ``clock``
    gives the event time in seconds since the epoch.  Constructing one does no I/O and
    starts no thread: :meth:`start` (or the first captured prediction) starts the
    delivery thread; :meth:`close` drains it.  Also a context manager.
    """

    def __init__(self, model: str, kafka: str = defaults.KAFKA_LOCAL, *, topic: str = defaults.TOPIC,
                 model_version: str | None = None, sample_rate: float = 1.0,
                 policy: FieldPolicy | None = None, max_queue_events: int = defaults.QUEUE_EVENTS,
                 drop: DropPolicy = "oldest", sender: Sender | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, not {sample_rate!r}")
        self.model = model
        self.model_version = model_version
        self.topic = topic
        self.sample_rate = sample_rate
        self.policy = None if policy is None or policy.empty else policy
        self.metrics = CollectorMetrics([model])
        self._capturer = Capturer(
            CaptureSettings(model=model, model_version=model_version, sample_rate=sample_rate,
                            policy=self.policy),
            self.metrics.of_model(model), self._offer, clock=clock, sample=random.random)
        self._sender: Sender = sender if sender is not None else _LazyKafkaSender(
            kafka, client_id=f"driftline-sdk-{model}")
        self._delivery = Delivery(self._sender, topic, model, model_version,
                                  max_queue_events=max_queue_events, drop=drop, metrics=self.metrics,
                                  clock=clock)
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the delivery thread (idempotent); a closed collector cannot be restarted."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Collector was closed; make a new one")
            if not self._started:
                self._delivery.start()
                self._started = True
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking predictions, deliver what is queued within ``timeout_s`` (the rest is
        counted as dropped, ``shutdown``) and close the Kafka connection.  Idempotent; later
        calls of :meth:`log_prediction` are counted as ``shutdown`` too."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._delivery.stop(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def queued_events(self) -> int:
        """Events waiting in the delivery queue right now."""
        return self._delivery.queued_events

    # -- the request path ----------------------------------------------------------------------

    def log_prediction(self, inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | DataFrame,
                       outputs: Any = None, *,
                       request_id: str | None = None, latency_ms: float | None = None,
                       status: int | None = 200) -> str:
        """Queue one prediction (``inputs`` a mapping) or a batch (a sequence of mappings,
        or a pandas DataFrame) and return the request id used (``request_id``, or a new
        uuid4 hex).

        ``outputs``: for one row, a mapping of outputs, or a value (the output
        ``prediction``) or a list of values (``prediction_0``, ...); for a batch, one such
        item per row, or a mapping of columns with one value per row.  ``None`` leaves the
        outputs empty.  Never blocks and never raises: a call that cannot be turned into a
        capture is counted (``requests_unparsed{reason="unparseable"}``) and logged at debug level.
        """
        rid = uuid.uuid4().hex if request_id is None or request_id == "" else str(request_id)
        try:
            rows = instances(inputs, outputs)
            latency = None if latency_ms is None else float(latency_ms)
            code = None if status is None else int(status)
        except Exception as exc:  # whatever the app hands over: count it, never raise into the model
            detail = str(exc) if isinstance(exc, ExtractError) else type(exc).__name__
            log.debug("prediction %s of %s not captured: %s", rid, self.model, detail)
            self._capturer.drops.unparsed("unparseable")
            return rid
        try:
            self._capturer.logged(rows, rid, latency, code)
        except Exception:  # a bug of ours must not reach the model either
            log.exception("capturing prediction %s of %s failed", rid, self.model)
        return rid

    def capturer(self, *, protocol: str = "auto", generic: GenericSpec | CompiledSpec | None = None,
                 feature_names: tuple[str, ...] | None = None, output_names: tuple[str, ...] | None = None,
                 capture_errors: bool = False) -> Capturer:
        """A capture pipeline (:mod:`collectors.capture`) of request/response pairs of this
        collector's model, with its sampling, field policy, metrics and queue: what
        :class:`~collectors.sdk.DriftlineMiddleware` captures with.  ``protocol``, ``generic``,
        ``feature_names``, ``output_names`` and ``capture_errors`` say how the pairs are read, as
        for the sidecar."""
        own = self._capturer
        settings = replace(own.settings, protocol=protocol, generic=generic, feature_names=feature_names,
                           output_names=output_names, capture_errors=capture_errors)
        return Capturer(settings, own.drops, own.offer, clock=own.clock, sample=own.sample)

    def _offer(self, capture: Capture) -> None:
        """Into the delivery queue, starting the delivery thread on the first capture."""
        try:
            if not self._started and not self._closed:
                try:
                    self.start()
                except RuntimeError:  # closed meanwhile: the delivery counts the offer as shutdown
                    pass
            self._delivery.offer(capture)  # never blocks; counts captured and its own drops
        except Exception:  # a bug of ours must not reach the model either
            log.exception("capturing prediction %s of %s failed", capture.request_id, self.model)
