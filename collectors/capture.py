"""The capture pipeline: one prediction call in, a :class:`~collectors.events.Capture` or a counted drop out.

Every way in (the sidecar's proxy, the SDK's ASGI middleware and
:meth:`Collector.log_prediction <collectors.sdk.Collector.log_prediction>`)
runs its calls through a :class:`Capturer`, which owns the steps and their
order.  A request/response pair (:meth:`Capturer.exchange`) goes through:

1. **skip**: ``X-Driftline-Skip: 1`` (:func:`skip_requested`) opts it out: ``skipped``;
2. **status**: a non-2xx answer is not captured unless ``capture_errors``, and not
   counted (nor is a call without an answer);
3. **size**: a body the transport did not keep (over its ``max_payload_bytes``, or not
   read whole): ``oversize``;
4. **sampling**: ``sample() >= sample_rate`` drops it: ``sampled_out``;
5. **overload**: while the transport sheds load (:attr:`Capturer.overloaded`, set by the
   proxy's CPU budget): ``overload``;
6. **extraction** (:func:`collectors.extractors.extract`): a payload that cannot be
   read is ``unparseable``; one without instances is not captured, not counted;
7. **PII**: the :class:`~collectors.extractors.FieldPolicy` drops or hashes fields;
8. **the event**: a :class:`Capture` (time from ``clock``, latency in ms), handed to
   ``offer``, which never blocks and counts what it captures and drops.

Each drop counts one event (the rows of a call are not known before it is
parsed).  The cheap checks come first, so that a call that is not captured costs
no parsing; the status filter comes before sampling, so ``sampled_out`` counts
only calls that would have been captured, and ``sample`` is drawn only for those.
A transport that must decide on the skip before the call is answered (the ASGI
middleware, which then does not keep the bodies) takes step 1 alone,
:meth:`Capturer.skipped`.

A prediction the model logs itself (:meth:`Capturer.logged`) comes already
extracted (the SDK turns its Python values into instances, and counts a call it
cannot turn as ``unparseable``), so its steps are: no instances (not counted),
sampling, counted as its number of rows, then PII and the event.

Every drop is counted through one small interface, :class:`DropCounter`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from collectors.events import Capture, Instance
from collectors.extractors import CompiledSpec, ExtractError, FieldPolicy, GenericSpec, apply, extract

log = logging.getLogger("driftline.collector")

Dropped = Literal["skipped", "sampled_out", "oversize", "overload", "unparseable"]  # counted
NotCaptured = Literal["status", "no_instances"]  # not counted: an answer left out, or no rows
Outcome = Capture | Dropped | NotCaptured


class DropCounter(Protocol):
    """Where the pipeline counts what it drops (``driftline_collector_events_dropped_total``)."""

    def dropped(self, reason: str, events: int) -> None: ...


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
    request_content_type: str | None = None
    response_content_type: str | None = None
    request_header_length: str | None = None
    response_header_length: str | None = None


@dataclass(frozen=True)
class CaptureSettings:
    """What is captured of one model's calls, and how."""

    model: str  # the model's name: the Kafka key
    model_version: str | None = None
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
            self.drops.dropped("skipped", 1)
            return True
        return False

    def exchange(self, exchange: Exchange) -> Outcome:
        """A request/response pair through every step: what was offered, or why nothing was."""
        settings = self.settings
        if exchange.skip:
            self.drops.dropped("skipped", 1)
            return "skipped"
        status = exchange.status
        if status is None or (not 200 <= status < 300 and not settings.capture_errors):
            return "status"
        request, response = exchange.request_body, exchange.response_body
        if request is None or response is None:
            self.drops.dropped("oversize", 1)
            return "oversize"
        if settings.sample_rate < 1.0 and self._sampled_out(1):
            return "sampled_out"
        if self.overloaded:
            self.drops.dropped("overload", 1)
            return "overload"
        try:
            _, instances = extract(exchange.path, bytes(request), bytes(response),
                                   protocol=settings.protocol, generic=settings.generic,
                                   feature_names=settings.feature_names,
                                   output_names=settings.output_names,
                                   request_content_type=exchange.request_content_type,
                                   request_header_length=exchange.request_header_length,
                                   response_header_length=exchange.response_header_length)
        except ExtractError as exc:
            log.debug("request %s not captured: %s", exchange.request_id, exc)
            self.drops.dropped("unparseable", 1)
            return "unparseable"
        if not instances:
            return "no_instances"
        return self._offer(instances, exchange.request_id, round(exchange.elapsed * 1000, 3), status)

    def logged(self, instances: tuple[Instance, ...], request_id: str, latency_ms: float | None,
               status: int | None) -> Outcome:
        """A prediction the model logged, already turned into instances (see the module doc)."""
        if not instances:
            return "no_instances"
        if self.settings.sample_rate < 1.0 and self._sampled_out(len(instances)):
            return "sampled_out"
        return self._offer(instances, request_id, latency_ms, status)

    def _sampled_out(self, events: int) -> bool:
        """Sampling (only drawn below a rate of 1): a draw at or above ``sample_rate`` drops the call."""
        if self.sample() >= self.settings.sample_rate:
            self.drops.dropped("sampled_out", events)
            return True
        return False

    def _offer(self, instances: tuple[Instance, ...], request_id: str, latency_ms: float | None,
               status: int | None) -> Capture:
        """The last steps: PII, then the event, offered to the queue."""
        settings = self.settings
        if settings.policy is not None:
            instances = apply(instances, settings.policy)
        capture = Capture(model=settings.model, request_id=request_id, ts_ms=int(self.clock() * 1000),
                          instances=instances, latency_ms=latency_ms, status=status,
                          model_version=settings.model_version)
        self.offer(capture)  # never blocks; the queue counts captures and its own drops
        return capture
