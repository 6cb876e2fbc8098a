"""The capture pipeline: one prediction call in, a :class:`~collectors.events.Capture` or a counted drop out.

Every way in (the sidecar's proxy, the SDK's ASGI middleware and
:meth:`Collector.log_prediction <collectors.sdk.Collector.log_prediction>`)
runs its calls through a :class:`Capturer`, which owns the steps and their
order.  A request/response pair (:meth:`Capturer.exchange`) goes through:

1. **skip**: ``X-Driftline-Skip: 1`` (:func:`skip_requested`) opts it out: ``skipped``;
2. **status**: a non-2xx answer is not captured unless ``capture_errors``: counted by
   its class (``uncaptured``); a call without an answer is not counted here;
3. **model**: the event's model, from ``--model``, ``--model-map`` and the path
   (:func:`collectors.routing.resolve`); nothing names one: ``no_model``;
4. **size**: a body the transport did not keep (over its ``max_payload_bytes``, or not
   read whole): ``oversize``;
5. **sampling**: ``sample() >= sample_rate`` drops it: ``sampled_out``;
6. **overload**: while the transport sheds load (:attr:`Capturer.overloaded`, set by the
   proxy's CPU budget): ``overload``;
7. **extraction** (:func:`collectors.extractors.extract`): a payload that cannot be
   read is ``unparseable``, counted per row (captured, then dropped) when the request
   was read and only its answer was not, else per request; one without instances is
   not captured, not counted;
8. **PII**: the :class:`~collectors.extractors.FieldPolicy` drops or hashes fields;
9. **the event**: a :class:`Capture` (time from ``clock``, latency in ms, the served
   model of the path, and the request id: the caller's ``X-Request-Id``, else an Open
   Inference Protocol request's own ``id``, else the one the transport made up), handed
   to ``offer``, which never blocks and counts what it captures and drops.

Steps 1 to 7 leave a call out before its rows are known (but for an answer that cannot be
read, above): each counts one *request*
(:meth:`DropCounter.unparsed`), never rows, so that the rows' counters keep their
identity ``captured = sent + failed + dropped``.  The cheap checks come first, so that a
call that is not captured costs no parsing; the status filter comes before sampling, so ``sampled_out`` counts
only calls that would have been captured, and ``sample`` is drawn only for those.
A transport that must decide on the skip before the call is answered (the ASGI
middleware, which then does not keep the bodies) takes step 1 alone,
:meth:`Capturer.skipped`.

A prediction the model logs itself (:meth:`Capturer.logged`) comes already
extracted (the SDK turns its Python values into instances, and counts a call it
cannot turn as ``unparseable``), so its steps are: no instances (not counted),
sampling, counted as its number of rows (captured, then dropped ``sampled_out``), then PII
and the event.

Every drop is counted through one small interface, :class:`DropCounter`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from collectors.events import Capture, Instance
from collectors.extractors import CompiledSpec, ExtractError, FieldPolicy, GenericSpec, apply, extract
from collectors.routing import Resolved, resolve

log = logging.getLogger("driftline.collector")
_JSON = json.JSONDecoder()

Dropped = Literal["skipped", "sampled_out", "oversize", "overload", "unparseable", "no_model"]  # counted
NotCaptured = Literal["status", "no_instances"]  # an answer left out (counted by class), or no rows
Outcome = Capture | Dropped | NotCaptured


class DropCounter(Protocol):
    """Where the pipeline counts what it leaves out (:mod:`collectors.delivery.metrics`)."""

    def dropped(self, reason: str, events: int, model: str | None = None) -> None:
        """Rows that were known and left out: counted captured, then dropped (``model``: the
        event's, None for the counter's own)."""
        ...

    def unparsed(self, reason: str, model: str | None = None) -> None:
        """A request left out before its rows were known (``requests_unparsed``; ``model``: the
        one it would have gone under, None when nothing names one or for the counter's own)."""
        ...

    def uncaptured(self, status: int | None, model: str | None = None) -> None:
        """A model answer outside 2xx, not captured (``responses_uncaptured``)."""
        ...


class Exchange(Protocol):
    """What the pipeline reads of one request/response pair, once the answer was passed on."""

    @property
    def skip(self) -> bool:
        """The caller opted out (:func:`skip_requested`)."""
        ...

    @property
    def status(self) -> int | None:
        """The answer's status; None when there was no answer."""
        ...

    @property
    def path(self) -> str:
        """The URL path, percent-decoded, without the query."""
        ...

    @property
    def request_body(self) -> bytes | bytearray | None:
        """The whole request body, or None when it was not kept (over the limit)."""
        ...

    @property
    def response_body(self) -> bytes | bytearray | None:
        """The whole response body, or None when it was not kept (over the limit)."""
        ...

    @property
    def request_content_type(self) -> str | None:
        """The request's ``Content-Type`` (None: none sent); CSV is read as MLflow reads it."""
        ...

    @property
    def response_content_type(self) -> str | None:
        """The answer's ``Content-Type`` (None: none sent)."""
        ...

    @property
    def request_header_length(self) -> str | None:
        """The request's ``Inference-Header-Content-Length``: its body is a JSON header of that
        many bytes, then binary tensors (the Open Inference Protocol's binary extension)."""
        ...

    @property
    def response_header_length(self) -> str | None:
        """The answer's ``Inference-Header-Content-Length`` (see ``request_header_length``)."""
        ...

    @property
    def request_id(self) -> str: ...

    @property
    def request_id_given(self) -> bool:
        """The caller sent the request id (``X-Request-Id``); False when the transport made it up."""
        ...

    @property
    def elapsed(self) -> float:
        """Seconds from the request's head to the answer's last byte."""
        ...


@dataclass(frozen=True, slots=True)
class RecordedExchange:
    """An :class:`Exchange` for a transport that keeps no object of its own per request."""

    status: int | None
    path: str
    request_body: bytes | None
    response_body: bytes | None
    request_id: str
    elapsed: float
    skip: bool = False
    request_id_given: bool = True
    request_content_type: str | None = None
    response_content_type: str | None = None
    request_header_length: str | None = None
    response_header_length: str | None = None


@dataclass(frozen=True)
class CaptureSettings:
    """What is captured of one model's calls, and how."""

    model: str | None  # the model's name, the Kafka key; None: from the path (collectors.routing)
    model_version: str | None = None
    model_map: Mapping[str, str] | None = None  # served name -> the event's model (--model-map)
    sample_rate: float = 1.0  # share of the calls kept, 0 to 1
    capture_errors: bool = False  # also capture answers outside 2xx
    protocol: str = "auto"  # the extractor: auto (by path, then shape) or one of PROTOCOLS
    generic: GenericSpec | CompiledSpec | None = None  # the JSONPath spec of protocol "generic"
    feature_names: tuple[str, ...] | None = None  # names of features given as lists
    output_names: tuple[str, ...] | None = None  # names of positional predictions (prediction_<i>)
    policy: FieldPolicy | None = None  # fields dropped or hashed before anything is queued


def skip_requested(header: bytes | None) -> bool:
    """The opt-out rule: the value of ``X-Driftline-Skip`` is ``1`` (blanks around it allowed)."""
    return header is not None and header.strip() == b"1"


class Capturer:
    """Runs the steps of the module doc for one model: settings, counters, the queue's ``offer``.

    ``clock`` gives the event time in seconds since the epoch; ``sample`` a number in
    [0, 1) per sampling decision (injectable, for tests).
    """

    __slots__ = ("settings", "drops", "offer", "clock", "sample", "overloaded")

    def __init__(self, settings: CaptureSettings, drops: DropCounter, offer: Callable[[Capture], object], *,
                 clock: Callable[[], float] = time.time,
                 sample: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.drops = drops
        self.offer = offer
        self.clock = clock
        self.sample = sample
        # set by a transport that measures its own CPU (the proxy) while it is over its budget
        self.overloaded = False

    def skipped(self, header: bytes | None) -> bool:
        """Step 1 alone, for a transport that decides before the call is answered (and then
        does not keep its bodies): True, counted ``skipped``, when the header opts out."""
        if skip_requested(header):
            self.drops.unparsed("skipped")
            return True
        return False

    def exchange(self, exchange: Exchange) -> Outcome:
        """A request/response pair through every step: what was offered, or why nothing was."""
        settings = self.settings
        drops = self.drops
        resolved = self.model_of(exchange.path)
        model = resolved.model if resolved is not None else None
        if exchange.skip:
            drops.unparsed("skipped", model)
            return "skipped"
        status = exchange.status
        if status is None:
            return "status"
        if not 200 <= status < 300 and not settings.capture_errors:
            drops.uncaptured(status, model)
            return "status"
        if resolved is None:
            drops.unparsed("no_model")
            return "no_model"
        request, response = exchange.request_body, exchange.response_body
        if request is None or response is None:
            drops.unparsed("oversize", model)
            return "oversize"
        if settings.sample_rate < 1.0 and self.sample() >= settings.sample_rate:
            drops.unparsed("sampled_out", model)
            return "sampled_out"
        if self.overloaded:
            drops.unparsed("overload", model)
            return "overload"
        try:
            protocol, instances = extract(exchange.path, bytes(request), bytes(response),
                                   protocol=settings.protocol, generic=settings.generic,
                                   feature_names=settings.feature_names,
                                   output_names=settings.output_names,
                                   request_content_type=exchange.request_content_type,
                                   request_header_length=exchange.request_header_length,
                                   response_header_length=exchange.response_header_length)
        except ExtractError as exc:
            log.debug("request %s not captured: %s", exchange.request_id, exc)
            if exc.rows:  # the request was read, its answer was not: its rows are known
                drops.dropped("unparseable", exc.rows, model)
            else:
                drops.unparsed("unparseable", model)
            return "unparseable"
        if not instances:
            return "no_instances"
        request_id = exchange.request_id
        if not exchange.request_id_given and protocol == "oip_v2":  # as the extractor read it
            request_id = oip_request_id(request, exchange.request_header_length) or request_id
        return self._offer(instances, request_id, round(exchange.elapsed * 1000, 3), status, resolved)

    def model_of(self, path: str) -> Resolved | None:
        """The event's model, version and served model for a call to ``path`` (None: no model)."""
        settings = self.settings
        return resolve(path, settings.model, settings.model_version, settings.model_map)

    def logged(self, instances: tuple[Instance, ...], request_id: str, latency_ms: float | None,
               status: int | None) -> Outcome:
        """A prediction the model logged, already turned into instances (see the module doc)."""
        if not instances:
            return "no_instances"
        settings = self.settings
        model = settings.model or ""
        if settings.sample_rate < 1.0 and self.sample() >= settings.sample_rate:
            self.drops.dropped("sampled_out", len(instances), model or None)
            return "sampled_out"
        return self._offer(instances, request_id, latency_ms, status,
                           Resolved(model, settings.model_version, None))

    def _offer(self, instances: tuple[Instance, ...], request_id: str, latency_ms: float | None,
               status: int | None, resolved: Resolved) -> Capture:
        """The last steps: PII, then the event, offered to the queue."""
        settings = self.settings
        if settings.policy is not None:
            instances = apply(instances, settings.policy)
        capture = Capture(model=resolved.model, request_id=request_id, ts_ms=int(self.clock() * 1000),
                          instances=instances, latency_ms=latency_ms, status=status,
                          model_version=resolved.version, served_model=resolved.served)
        self.offer(capture)  # never blocks; the queue counts captures and its own drops
        return capture


def oip_request_id(body: bytes | bytearray, header_length: str | None = None) -> str | None:
    """The ``id`` of an Open Inference Protocol request body (a JSON object, possibly followed by
    binary tensor data: only the ``header_length`` bytes of its JSON header are read, when given),
    or None: the request id of a call that brought no ``X-Request-Id``."""
    if header_length is not None and header_length.isdigit():
        body = body[:int(header_length)]
    try:
        head, _ = _JSON.raw_decode(bytes(body).decode("utf-8", "replace").lstrip())
    except ValueError:
        return None
    rid = head.get("id") if isinstance(head, dict) else None
    return rid if isinstance(rid, str) and rid and "inputs" in head else None
