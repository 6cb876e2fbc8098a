"""The in-process collector: for Python model servers that log their predictions themselves.

Same events, same bounded non-blocking delivery and same metrics as the sidecar
(:mod:`collectors.sidecar`), without a proxy in front of the model.  Two ways in:

* :class:`Collector` and its :meth:`~Collector.log_prediction`, called by the model code;
* :class:`DriftlineMiddleware`, a plain ASGI middleware (FastAPI, Starlette, any ASGI app)
  that captures every prediction call as the sidecar would, from the request and
  response bodies.

Usage, logging explicitly (one row, or a batch)::

    from collectors.sdk.collector import Collector

    collector = Collector("fraud", "kafka:9092", model_version="v7")
    rid = collector.log_prediction({"age": 41, "income": 52_000.0}, {"score": 0.83}, latency_ms=3.2)
    collector.log_prediction([{"age": 41}, {"age": 19}], [0.83, 0.12], request_id="req-17")
    ...
    collector.close()  # at shutdown: delivers what is queued (5 s at most)

or capturing a KServe v1 / OIP v2 / MLflow endpoint of a FastAPI app as the sidecar would::

    from contextlib import asynccontextmanager
    from fastapi import FastAPI, Request, Response
    from collectors.sdk.collector import Collector, DriftlineMiddleware

    collector = Collector("fraud", "kafka:9092", model_version="v7")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        with collector:  # starts the delivery thread; drains the queue on the way out
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(DriftlineMiddleware, collector=collector)

    @app.get("/metrics")  # the collector's own series, for Prometheus
    def metrics(request: Request) -> Response:
        body, content_type = collector.metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

What it promises (see :mod:`collectors.delivery.queue` for the details):

* **Never in the model's way.**  :meth:`Collector.log_prediction` converts the values,
  appends to a bounded in-memory queue and returns: no I/O, no waiting on Kafka, and
  it never raises on what it is given.  A background thread (started by
  :meth:`~Collector.start`, or by the first capture) ships the events; the Kafka producer
  is built lazily on that thread, so constructing a :class:`Collector` never touches the
  network, and a broker that is down only costs events, each one counted.
* **Same events.**  One event per row, request ids ``<id>`` for one row and ``<id>/<i>``
  within a batch (:meth:`collectors.events.Capture.events`).  Values that are JSON scalars
  are kept; NumPy scalars become Python ones, dates and times their ISO 8601 text, pandas'
  ``NA``/``NaT`` null; anything else (lists, dicts, arrays) becomes its compact key-sorted
  JSON text, as the extractors do.  A :class:`FieldPolicy` drops or hashes personal fields
  before anything is queued.
* **Same metrics** (:class:`~collectors.delivery.metrics.CollectorMetrics`, on its own registry:
  expose ``collector.metrics.exposition()``).  Calls that are not captured are counted as
  dropped: ``unparseable`` (values that cannot become a capture; logged at debug),
  ``sampled_out``, and for the middleware ``skipped`` (``X-Driftline-Skip: 1``) and
  ``oversize`` (a body over ``max_payload_bytes``).
* **Thread-safe**: call it from any number of threads (and from async code).

Fork-based servers (gunicorn ``--preload``): threads do not survive ``fork``, so start
the collector in each worker; a collector that was only constructed before the fork
starts its thread on the first call in the worker.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Self, cast

import msgspec

from collectors.delivery.kafka import KafkaSender, SenderClosed
from collectors.delivery.metrics import CollectorMetrics
from collectors.delivery.queue import Delivery, DropPolicy, Sender
from collectors.events import Capture, Instance, Scalar
from collectors.extractors import PROTOCOLS, ExtractError, FieldPolicy, GenericSpec, apply, extract
from collectors.extractors.base import PREDICTION
from collectors.extractors.generic import compile_spec

if TYPE_CHECKING:  # accepted as a batch; only for the annotation: pandas is never imported here
    from pandas import DataFrame

log = logging.getLogger("driftline.collector.sdk")

BOOTSTRAP = "localhost:9092"
DEFAULT_TOPIC = "driftline.predictions"
MIB = 1024 * 1024
REQUEST_ID = "X-Request-Id"
SKIP = "X-Driftline-Skip"

# -- values ------------------------------------------------------------------------------------

_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_TEXT = (str, bytes, bytearray, memoryview)


def _numpy_like(value: Any) -> bool:
    """A NumPy value (or a pandas Series): converted with ``tolist()``, without importing NumPy."""
    module = type(value).__module__
    return (module == "numpy" or module.startswith(("numpy.", "pandas."))) and hasattr(value, "tolist")


def _frame_like(value: Any) -> bool:
    """A pandas DataFrame: rows (or columns) through ``to_dict``, without importing pandas."""
    return type(value).__module__.startswith("pandas.") and hasattr(value, "columns") and hasattr(
        value, "to_dict")


def _missing(value: Any) -> bool:
    """pandas' missing markers ``NA`` and ``NaT``, which are no JSON value: null."""
    return type(value).__name__ in ("NAType", "NaTType") and type(value).__module__.startswith("pandas.")


def _enc_hook(value: Any) -> Any:
    if _numpy_like(value):
        return value.tolist()
    if _missing(value):
        return None
    if hasattr(value, "isoformat"):  # datetime subclasses msgspec does not take, e.g. pandas.Timestamp
        return value.isoformat()
    raise NotImplementedError(f"cannot write a {type(value).__name__} as JSON")


def _value(value: Any) -> Scalar:
    """A JSON scalar as it is (subclasses as their base type); anything else as JSON text."""
    if type(value) in _SCALAR_TYPES:
        return cast(Scalar, value)
    if _numpy_like(value):
        value = value.tolist()  # NumPy scalar -> Python scalar, array -> nested lists
        if type(value) in _SCALAR_TYPES:
            return cast(Scalar, value)
    if isinstance(value, bool):  # before int: bool is an int
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if _missing(value):
        return None
    if hasattr(value, "isoformat"):  # datetime, date, time (and pandas.Timestamp): ISO 8601 text
        return str(value.isoformat())
    return msgspec.json.encode(value, enc_hook=_enc_hook, order="sorted").decode()


def _fields(row: Any, where: str) -> dict[str, Scalar]:
    if _numpy_like(row) and hasattr(row, "to_dict"):  # a pandas Series: one row
        row = row.to_dict()
    if not isinstance(row, Mapping):
        raise ExtractError("unknown_shape", f"{where} must be a mapping of names to values, "
                                            f"not {type(row).__name__}")
    return {str(k): _value(v) for k, v in row.items()}


def _prediction(value: Any) -> dict[str, Scalar]:
    """One row's outputs, by the extractors' rule: a mapping's keys, ``prediction_<i>`` for a
    sequence, ``prediction`` for a scalar."""
    if _numpy_like(value):
        value = value.to_dict() if hasattr(value, "to_dict") else value.tolist()
    if isinstance(value, Mapping):
        return _fields(value, "outputs")
    if isinstance(value, list | tuple):
        return {f"{PREDICTION}_{i}": _value(v) for i, v in enumerate(value)}
    return {PREDICTION: _value(value)}


def _rows(inputs: Any) -> tuple[list[Any], bool]:
    """The rows of ``inputs`` and whether it was a single row (a mapping, a pandas Series)."""
    if isinstance(inputs, Mapping):
        return [inputs], True
    if _frame_like(inputs):
        return list(inputs.to_dict(orient="records")), False
    if _numpy_like(inputs) and hasattr(inputs, "to_dict"):
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
    elif _numpy_like(outputs):
        outputs = outputs.tolist()
    if isinstance(outputs, Mapping):
        columns = {str(k): (v.tolist() if _numpy_like(v) else v) for k, v in outputs.items()}
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

    def __init__(self, model: str, kafka: str = BOOTSTRAP, *, topic: str = DEFAULT_TOPIC,
                 model_version: str | None = None, sample_rate: float = 1.0,
                 policy: FieldPolicy | None = None, max_queue_events: int = 10_000,
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
        self._clock = clock
        self._sample: Callable[[], float] = random.random
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
        capture is counted as dropped (``unparseable``) and logged at debug level.
        """
        rid = uuid.uuid4().hex if request_id is None or request_id == "" else str(request_id)
        try:
            rows = instances(inputs, outputs)
            latency = None if latency_ms is None else float(latency_ms)
            code = None if status is None else int(status)
        except Exception as exc:  # whatever the app hands over: count it, never raise into the model
            detail = str(exc) if isinstance(exc, ExtractError) else type(exc).__name__
            log.debug("prediction %s of %s not captured: %s", rid, self.model, detail)
            self._dropped("unparseable")
            return rid
        self._capture(rows, rid, latency, code, sampled=False)
        return rid

    def _dropped(self, reason: str, n: int = 1) -> None:
        try:
            self.metrics.dropped(self.model, reason, n)
        except Exception:  # pragma: no cover - prometheus_client does not fail on inc()
            log.exception("counting a dropped prediction failed")

    def _sampled_out(self) -> bool:
        return self.sample_rate < 1.0 and self._sample() >= self.sample_rate

    def _capture(self, rows: tuple[Instance, ...], request_id: str, latency_ms: float | None,
                 status: int | None, *, sampled: bool) -> None:
        """Offer one capture; ``sampled`` says the sampling decision was already made."""
        try:
            if not rows:
                return
            if not sampled and self._sampled_out():
                self._dropped("sampled_out", len(rows))
                return
            if self.policy is not None:
                rows = apply(rows, self.policy)
            capture = Capture(model=self.model, request_id=request_id, ts_ms=int(self._clock() * 1000),
                              instances=rows, latency_ms=latency_ms, status=status,
                              model_version=self.model_version)
            if not self._started and not self._closed:
                try:
                    self.start()
                except RuntimeError:  # closed meanwhile: the delivery counts the offer as shutdown
                    pass
            self._delivery.offer(capture)  # never blocks; counts captured and its own drops
        except Exception:  # a bug of ours must not reach the model either
            log.exception("capturing prediction %s of %s failed", request_id, self.model)


# -- the ASGI middleware ------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID = REQUEST_ID.lower().encode()
_SKIP = SKIP.lower().encode()


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


class DriftlineMiddleware:
    """Captures the prediction calls of an ASGI app into a :class:`Collector`.

    ``app.add_middleware(DriftlineMiddleware, collector=collector)`` (Starlette, FastAPI),
    or ``DriftlineMiddleware(app, collector=collector)`` around any ASGI app.

    For each HTTP request it sets ``X-Request-Id`` (the request's own, or a new uuid4 hex,
    which the app then sees in its request headers too) on the response, and for a request
    whose method is in ``methods`` (``POST``) that is not opted out with
    ``X-Driftline-Skip: 1`` (counted ``skipped``) it:

    * reads the request body, up to ``max_payload_bytes``, before calling the app, and
      hands the app the very same messages (a body beyond the limit, or declared beyond
      it by ``Content-Length``, is passed on as it comes and not captured: ``oversize``);
    * passes every response message on as it comes, the body chunks untouched and
      unbuffered (streaming responses still stream), keeping a copy up to the limit;
    * once the response is complete, with a 2xx status (any status with
      ``capture_errors``), extracts the instances with :func:`collectors.extractors.extract`
      (``protocol``, ``generic``, ``feature_names`` as for the sidecar) and queues them.
      A payload that cannot be parsed is counted (``unparseable``), never an error for the
      app or the client.

    Other requests (``GET /metrics``, health checks, websockets, lifespan) pass through
    without being counted.  Sampling (the collector's ``sample_rate``) is decided per
    request before parsing, and a sampled-out request counts as one event, as with the
    sidecar.
    """

    def __init__(self, app: ASGIApp, *, collector: Collector, protocol: str = "auto",
                 feature_names: Sequence[str] | None = None, generic: GenericSpec | None = None,
                 max_payload_bytes: int = MIB, capture_errors: bool = False,
                 methods: Iterable[str] = ("POST",)) -> None:
        if protocol != "auto" and protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected auto or one of {', '.join(PROTOCOLS)}")
        if protocol == "generic" and generic is None:
            raise ValueError("protocol 'generic' needs a generic spec")
        if isinstance(feature_names, str):
            raise ValueError("feature_names must be a sequence of names, not one string")
        if max_payload_bytes < 0:
            raise ValueError("max_payload_bytes must not be negative")
        self.app = app
        self.collector = collector
        self.protocol = protocol
        self.feature_names = None if feature_names is None else tuple(feature_names)
        self.generic = None if generic is None else compile_spec(generic)  # a bad spec fails here, once
        self.max_payload_bytes = max_payload_bytes
        self.capture_errors = capture_errors
        self.methods = frozenset(m.upper() for m in methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        request_id = _header(headers, _REQUEST_ID) or ""
        if not request_id:
            request_id = uuid.uuid4().hex
            scope = dict(scope)
            scope["headers"] = [*headers, (_REQUEST_ID, request_id.encode("latin-1"))]
        if scope.get("method", "").upper() not in self.methods:
            await self.app(scope, receive, _Response(send, request_id, 0).send)
            return
        if (_header(headers, _SKIP) or "").strip() == "1":
            self.collector._dropped("skipped")
            await self.app(scope, receive, _Response(send, request_id, 0).send)
            return
        body, replay = await self._read_body(headers, receive)
        response = _Response(send, request_id, self.max_payload_bytes if body is not None else 0)

        async def replayed() -> Message:
            return replay.popleft() if replay else await receive()

        try:
            await self.app(scope, replayed, response.send)
        finally:
            if response.complete:
                self._capture(scope, request_id, body, response, time.perf_counter() - started)

    async def _read_body(self, headers: list[tuple[bytes, bytes]], receive: Receive
                         ) -> tuple[bytes | None, deque[Message]]:
        """The request body if it fits the limit (else None), and the messages read, to replay."""
        replay: deque[Message] = deque()
        length = _content_length(headers)
        if length is not None and length > self.max_payload_bytes:
            return None, replay
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            replay.append(message)
            if message["type"] != "http.request":  # http.disconnect: the app will see it too
                return None, replay
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_payload_bytes:
                return None, replay
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts), replay

    def _capture(self, scope: Scope, request_id: str, body: bytes | None, response: _Response,
                 elapsed: float) -> None:
        collector = self.collector
        try:
            status = response.status
            if status is None or (not 200 <= status < 300 and not self.capture_errors):
                return
            answer = response.body
            if body is None or answer is None:
                collector._dropped("oversize")
                return
            if collector._sampled_out():
                collector._dropped("sampled_out")
                return
            try:
                _, rows = extract(scope.get("path", "/"), body, answer, protocol=self.protocol,
                                  generic=self.generic, feature_names=self.feature_names)
            except ExtractError as exc:
                log.debug("request %s not captured: %s", request_id, exc)
                collector._dropped("unparseable")
                return
            collector._capture(rows, request_id, round(elapsed * 1000, 3), status, sampled=True)
        except Exception:  # never into the app: the response has been sent already
            log.exception("capturing request %s failed", request_id)
            collector._dropped("unparseable")


class _Response:
    """Passes the app's response messages on, adding ``X-Request-Id`` to the headers and
    keeping a copy of the body up to ``limit`` bytes (0: no copy)."""

    __slots__ = ("_send", "_request_id", "_limit", "_kept", "_keeping", "status", "complete")

    def __init__(self, send: Send, request_id: str, limit: int) -> None:
        self._send = send
        self._request_id = request_id.encode("latin-1")
        self._limit = limit
        self._kept = bytearray()
        self._keeping = limit > 0
        self.status: int | None = None
        self.complete = False

    @property
    def body(self) -> bytes | None:
        """The whole body, or None when it was not kept (over the limit, or sent as a file)."""
        return bytes(self._kept) if self._keeping else None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _REQUEST_ID]
            headers.append((_REQUEST_ID, self._request_id))
            length = _content_length(headers)
            if length is not None and length > self._limit:
                self._keeping = False
            message = {**message, "headers": headers}
            await self._send(message)
            return
        if kind == "http.response.body":
            if self._keeping:
                chunk = message.get("body", b"")
                if len(self._kept) + len(chunk) > self._limit:
                    self._keeping, self._kept = False, bytearray()
                else:
                    self._kept += chunk
            await self._send(message)
            if not message.get("more_body", False):
                self.complete = True
            return
        if kind == "http.response.trailers":
            await self._send(message)
            return
        if kind.startswith("http.response."):  # pathsend, zerocopysend: a file, not a prediction
            self._keeping, self._kept = False, bytearray()
            await self._send(message)
            if not message.get("more_body", False):
                self.complete = True
            return
        await self._send(message)
