"""The SDK's ASGI middleware: captures the prediction calls of an app as the sidecar would.

Usage: :mod:`collectors.sdk` (``app.add_middleware(DriftlineMiddleware, collector=collector)``).
The request and response pass through untouched (the response gains ``X-Request-Id``);
what is captured goes through the collector's capture pipeline
(:meth:`Collector.capturer <collectors.sdk.Collector.capturer>`, :mod:`collectors.capture`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any

from collectors import defaults
from collectors.capture import RecordedExchange
from collectors.extractors import PROTOCOLS, GenericSpec, compile_spec
from collectors.sdk.collector import Collector

log = logging.getLogger("driftline.collector.sdk")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID = defaults.REQUEST_ID_HEADER.lower().encode()
_SKIP = defaults.SKIP_HEADER.lower().encode()
_HEADER_LENGTH = defaults.HEADER_LENGTH_HEADER.lower().encode()  # the OIP binary tensor extension


def _raw_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    value = _raw_header(headers, name)
    return None if value is None else value.decode("latin-1")


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


class DriftlineMiddleware:
    """Captures the prediction calls of an ASGI app into a :class:`~collectors.sdk.Collector`.

    ``app.add_middleware(DriftlineMiddleware, collector=collector)`` (Starlette, FastAPI),
    or ``DriftlineMiddleware(app, collector=collector)`` around any ASGI app.

    For each HTTP request it sets ``X-Request-Id`` (the request's own, or a new uuid4 hex,
    which the app then sees in its request headers too) on the response, and for a request
    whose method is in ``methods`` (``POST``) that is not opted out with
    ``X-Driftline-Skip: 1`` (counted ``skipped``, before the app is called) it:

    * reads the request body, up to ``max_payload_bytes``, before calling the app, and
      hands the app the very same messages (a body beyond the limit, or declared beyond
      it by ``Content-Length``, is passed on as it comes and not captured: ``oversize``);
    * passes every response message on as it comes, the body chunks untouched and
      unbuffered (streaming responses still stream), keeping a copy up to the limit;
    * once the response is complete, runs the pair through the capture pipeline
      (:meth:`collectors.capture.Capturer.exchange`): with a 2xx status (any status with
      ``capture_errors``), sampled, extracted with :func:`collectors.extractors.extract`
      (``protocol``, ``generic``, ``feature_names``, ``output_names`` as for the sidecar) and queued.
      A payload that cannot be parsed is counted (``unparseable``), never an error for the
      app or the client.

    Other requests (``GET /metrics``, health checks, websockets, lifespan) pass through
    without being counted.  Sampling (the collector's ``sample_rate``) is decided per
    request before parsing, and a sampled-out request counts as one event, as with the
    sidecar.
    """

    def __init__(self, app: ASGIApp, *, collector: Collector, protocol: str = "auto",
                 feature_names: Sequence[str] | None = None, generic: GenericSpec | None = None,
                 output_names: Sequence[str] | None = None,
                 max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES, capture_errors: bool = False,
                 methods: Iterable[str] = ("POST",)) -> None:
        if protocol != "auto" and protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; expected auto or one of {', '.join(PROTOCOLS)}")
        if protocol == "generic" and generic is None:
            raise ValueError("protocol 'generic' needs a generic spec")
        for what, given in (("feature_names", feature_names), ("output_names", output_names)):
            if isinstance(given, str):
                raise ValueError(f"{what} must be a sequence of names, not one string")
        if max_payload_bytes < 0:
            raise ValueError("max_payload_bytes must not be negative")
        self.app = app
        self.collector = collector
        self.capturer = collector.capturer(
            protocol=protocol, feature_names=None if feature_names is None else tuple(feature_names),
            output_names=None if output_names is None else tuple(output_names),
            generic=None if generic is None else compile_spec(generic),  # a bad spec fails here, once
            capture_errors=capture_errors)
        self.max_payload_bytes = max_payload_bytes
        self.methods = frozenset(m.upper() for m in methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
        request_id = _header(headers, _REQUEST_ID) or ""
        given = bool(request_id)  # else an OIP request's own id names its events (the capture's rule)
        if not request_id:
            request_id = uuid.uuid4().hex
            scope = dict(scope)
            scope["headers"] = [*headers, (_REQUEST_ID, request_id.encode("latin-1"))]
        if scope.get("method", "").upper() not in self.methods:
            await self.app(scope, receive, _Response(send, request_id, 0).send)
            return
        if self.capturer.skipped(_raw_header(headers, _SKIP)):  # decided now: its body is not kept
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
                self._capture(scope, request_id, body, response, time.perf_counter() - started, given)

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
                 elapsed: float, given: bool = True) -> None:
        try:
            headers = scope.get("headers") or ()
            self.capturer.exchange(RecordedExchange(
                status=response.status, path=scope.get("path", "/"), request_body=body,
                response_body=response.body, request_id=request_id, elapsed=elapsed, request_id_given=given,
                request_content_type=_header(headers, b"content-type"),
                response_content_type=response.content_type,
                request_header_length=_header(headers, _HEADER_LENGTH),
                response_header_length=response.header_length))
        except Exception:  # never into the app: the response has been sent already
            log.exception("capturing request %s failed", request_id)
            self.capturer.drops.unparsed("unparseable")


class _Response:
    """Passes the app's response messages on, adding ``X-Request-Id`` to the headers and
    keeping a copy of the body up to ``limit`` bytes (0: no copy)."""

    __slots__ = ("_send", "_request_id", "_limit", "_kept", "_keeping", "status", "complete", "content_type",
                 "header_length")

    def __init__(self, send: Send, request_id: str, limit: int) -> None:
        self._send = send
        self._request_id = request_id.encode("latin-1")
        self._limit = limit
        self._kept = bytearray()
        self._keeping = limit > 0
        self.status: int | None = None
        self.complete = False
        self.content_type: str | None = None  # the answer's Content-Type
        self.header_length: str | None = None  # its Inference-Header-Content-Length

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
            self.content_type = _header(headers, b"content-type")
            self.header_length = _header(headers, _HEADER_LENGTH)
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
