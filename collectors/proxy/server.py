"""The sidecar's reverse proxy: every request goes to the model, unchanged.

Why asyncio protocols with httptools (llhttp, the parser of Node.js) and no
framework: the proxy sits on every inference call, so what it adds is what
the model's callers feel.  aiohttp's server and client (the first version of
this module) cost about 0.2-0.3 ms of Python per request, web.Request and
ClientResponse objects, routing, header multidicts and a task per request;
here a request is a few callbacks of the parser, one ``write`` to a pooled
upstream connection and one ``write`` back, with the bytes of the headers
passed on as they came.  uvicorn + httpx would add an ASGI layer and a
second client stack on the same path.  Responses are parsed by a small
parser of our own (:mod:`.response`), because httptools' response parser
cannot be told that an answer to ``HEAD`` has no body.

The modules: this one listens (:class:`Proxy`, and :class:`Client`, a caller's
connection); :mod:`.exchange` is one request and its answer, a state machine;
:mod:`.pool` holds the keep-alive connections to the model; :mod:`.response`
parses the model's answers; :mod:`.corks` batches the writes of one read.

What the caller sees is what the model answered: the status line, the
end-to-end headers in their order and spelling, and the body, for every path
and method, with keep-alive and pipelining.  The framing fields are the
proxy's own (``Content-Length``, ``Transfer-Encoding``, ``Connection``: spelled
so, after the end-to-end headers, whatever the model's spelling).  Bodies stream in both
directions with back-pressure (a slow caller pauses the read from the
model, a slow model pauses the read from the caller); a chunked body stays
chunked (or is delimited by closing the connection, to an HTTP/1.0 caller).
Two things are added: the ``X-Request-Id`` header (taken from the request,
or generated) on the upstream request and on the response, so labels can be
joined later; and, when the model cannot be reached, closes the connection
before answering, or does not answer within ``upstream_timeout_s``, a 502 or
504 whose one-line JSON body says so (there is no model answer to pass on).
A keep-alive connection that the model closed just as it was reused is
retried once on a new connection, before any byte of an answer came back.

Capture happens after the response has been written to the caller: the
request/response pair goes through the capture pipeline
(:mod:`collectors.capture`): extracted (:mod:`collectors.extractors`), fields
dropped or hashed, and offered to the bounded delivery queue, which never
blocks.  Bodies over ``max_payload_bytes`` stream through and are counted as
``oversize``, never buffered.  A payload that cannot be parsed is counted,
never an error for the caller.  ``X-Driftline-Skip: 1`` opts a request out;
``sample_rate`` keeps a random share; non-2xx answers are captured only with
``capture_errors``.  A call that gets no whole answer from the model (the 502 or
504 above, a 400 for a request that is not HTTP, an answer cut mid-body, a caller
that leaves first) is never captured and is counted
``responses_uncaptured{class="error"}``.  While the process uses more than ``max_cpu`` cores
(smoothed), captures are shed and counted ``overload``: proxying comes first
(``shed_overload=False`` captures everything, at the cost of the callers'
latency and the proxy's throughput when the CPU runs out).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

from collectors import defaults
from collectors.capture import Capturer, CaptureSettings
from collectors.events import Capture
from collectors.extractors import FieldPolicy, GenericSpec
from collectors.proxy.corks import Corks, Writer
from collectors.proxy.exchange import (
    ANSWERED,
    CANCELLED,
    CUT,
    FINISHED,
    REPLACED,
    STREAMING,
    WAITING,
    Exchange,
)
from collectors.proxy.framing import REQUEST_ID, new_request_id
from collectors.proxy.pool import Pool

log = logging.getLogger("driftline.collector")

_TICK_S = 0.05  # how often the process's CPU use is measured


class Queue(Protocol):
    def offer(self, capture: Capture) -> bool: ...


class ProxyMetrics(Protocol):
    """The proxy's latency and the capture's counts (:class:`collectors.capture.DropCounter`)."""

    def observe_proxy(self, status: int | None, seconds: float, model: str | None = None) -> None: ...

    def dropped(self, reason: str, events: int, model: str | None = None) -> None: ...

    def unparsed(self, reason: str, model: str | None = None) -> None: ...

    def uncaptured(self, status: int | None, model: str | None = None) -> None: ...


@dataclass(frozen=True)
class ProxySettings:
    upstream: str  # http://127.0.0.1:8080
    model: str | None  # None: each call's model comes from its path (collectors.routing)
    model_version: str | None = None
    model_map: Mapping[str, str] | None = None  # served name -> model (--model-map)
    sample_rate: float = 1.0
    max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES
    capture_errors: bool = False
    protocol: str = "auto"
    generic: GenericSpec | None = None
    feature_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    policy: FieldPolicy | None = None
    upstream_timeout_s: float = defaults.UPSTREAM_TIMEOUT_S
    pool_size: int = 256
    upstream_idle_s: float = 30.0  # a pooled connection idle this long is closed
    shed_overload: bool = True  # skip captures (counted "overload") while over the CPU budget
    max_cpu: float = defaults.MAX_CPU  # cores the whole collector process may use (smoothed) before it sheds
    client_idle_s: float = 75.0  # a caller's keep-alive connection idle this long is closed

    @property
    def capture(self) -> CaptureSettings:
        """What is captured of the calls, and how."""
        return CaptureSettings(model=self.model, model_version=self.model_version, model_map=self.model_map,
                               sample_rate=self.sample_rate, capture_errors=self.capture_errors,
                               protocol=self.protocol, generic=self.generic,
                               feature_names=self.feature_names, output_names=self.output_names,
                               policy=self.policy)


class Client(Writer, asyncio.Protocol):
    """A caller's connection: requests parsed by llhttp, answered in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport = None
        self.corks = proxy.corks
        self.wbuf = []
        self.parser = httptools.HttpRequestParser(self)
        self.exchanges: deque[Exchange] = deque()
        self.current: Exchange | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.pauses: set[str] = set()
        self.write_paused = False
        self.discard = False
        self.idle_since = time.monotonic()

    # -- asyncio ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.proxy.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.clients.discard(self)
        for exchange in self.exchanges:
            if exchange.state is WAITING or exchange.state is STREAMING or exchange.state is ANSWERED:
                self.proxy.unanswered(exchange)  # the caller left before the exchange was over
            exchange.state = CANCELLED
            if exchange.timer is not None:
                exchange.timer.cancel()
            if exchange.conn is not None:
                exchange.conn.abandon()
        self.exchanges.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.discard:
            return
        with self.corks:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # the request was passed on as a plain one; the bytes after it are not HTTP
            self.discard = True
            if self.current is not None:
                self.current.close_after = True
        except httptools.HttpParserError as exc:
            self.discard = True
            message = f"the request is not valid HTTP/1.1: {exc}"
            if not self.exchanges:
                self.proxy.reply_error(self, 400, message, None)
                return
            last = self.exchanges[-1]
            last.close_after = True
            if last.request_done:
                return  # the bytes after it are broken: answer it, then close
            if last is self.exchanges[0] and last.state is WAITING:
                if last.conn is not None:  # the model got part of a broken request: drop that
                    last.conn.abandon()
                    last.conn = None
                self.proxy.reply_error(self, 400, message, last)
            else:
                self._close()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchanges and (conn := self.exchanges[0].conn) is not None and conn.transport:
            conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchanges and (conn := self.exchanges[0].conn) is not None and conn.transport:
            conn.transport.resume_reading()

    # -- llhttp callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = Exchange(self, self.parser.get_method(), self.url, self.parser.get_http_version(),
                             self.headers, self.proxy.settings.max_payload_bytes)
        if not self.parser.should_keep_alive():
            exchange.close_after = True
        if self.parser.should_upgrade():
            exchange.close_after = True
        self.current = exchange
        self.exchanges.append(exchange)
        if len(self.exchanges) == 1:
            self.proxy.dispatch(exchange)
        else:
            self.pause("pipeline")  # answered in order: the next waits for the one before

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.body(body, self.proxy.settings.max_payload_bytes)

    def on_message_complete(self) -> None:
        exchange, self.current = self.current, None
        if exchange is not None:
            exchange.end()
            if exchange.state is ANSWERED or exchange.state is REPLACED:  # the answer came first
                self.proxy.finished(exchange)

    # -- used by the proxy ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.send(data)

    def pause(self, reason: str) -> None:
        if not self.pauses and self.transport is not None:
            self.transport.pause_reading()
        self.pauses.add(reason)

    def unpause(self, reason: str) -> None:
        if reason in self.pauses:
            self.pauses.discard(reason)
            if not self.pauses and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _close(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def next(self) -> None:
        """The first exchange is over: close, or go on with the next request."""
        done = self.exchanges.popleft()
        self.unpause("upstream")
        self.unpause("pending")
        if done.close_after:
            self._close()
            return
        self.idle_since = time.monotonic()
        if self.exchanges:
            self.proxy.dispatch(self.exchanges[0])
            if len(self.exchanges) == 1:
                self.unpause("pipeline")
        else:
            self.unpause("pipeline")


class Proxy:
    """The proxy: :meth:`start` listens, every connection is served by asyncio protocols."""

    def __init__(self, settings: ProxySettings, queue: Queue, metrics: ProxyMetrics, *,
                 clock: Callable[[], float] = time.time,
                 sample: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.queue = queue
        self.metrics = metrics
        self.capturer = Capturer(settings.capture, metrics, queue.offer, clock=clock, sample=sample)
        url = urlsplit(settings.upstream)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"the upstream must be an http:// or https:// URL, not {settings.upstream!r}")
        self.upstream_host = url.hostname
        self.upstream_authority = url.netloc.rpartition("@")[2].encode("idna")
        tls = ssl.create_default_context() if url.scheme == "https" else None
        self.pool = Pool(self, url.hostname, url.port or (443 if tls else 80), tls, settings.pool_size)
        self.clients: set[Client] = set()
        self.corks = Corks()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._cpu = 0.0  # smoothed cores used by this process (every thread)

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Client(self), host, port, backlog=1024)
        self._sweeper = loop.call_later(1.0, self._sweep)
        if self.settings.shed_overload:
            self._ticker = loop.call_later(_TICK_S, self._tick, loop.time(), time.process_time())
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening; answers in progress finish, idle connections close."""
        for timer in (self._sweeper, self._ticker):
            if timer is not None:
                timer.cancel()
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            if not client.exchanges and client.transport is not None:
                client.transport.close()
        deadline = time.monotonic() + 5.0
        while any(c.exchanges for c in self.clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.close()
        self.pool.close()
        await asyncio.sleep(0)

    def _tick(self, wall: float, cpu: float) -> None:
        """The process's CPU use (every thread, smoothed over about 0.2 s) against its budget.

        Over ``max_cpu`` cores, captures are shed (counted ``overload``) until it is
        back under nine tenths of it: the capture's own CPU (extraction here,
        encoding and sending in the delivery thread) must not take from proxying,
        which is bound to one core by the GIL, nor push the sidecar into its
        container's CPU limit, where throttling would stall the model's callers.
        """
        loop = asyncio.get_running_loop()
        now, used = loop.time(), time.process_time()
        if now > wall:
            self._cpu += 0.5 * ((used - cpu) / (now - wall) - self._cpu)
        limit = self.settings.max_cpu
        capturer = self.capturer
        capturer.overloaded = self._cpu > (0.9 * limit if capturer.overloaded else limit)
        self._ticker = loop.call_later(_TICK_S, self._tick, now, used)

    def _sweep(self) -> None:
        now = time.monotonic()
        self.pool.sweep(now, self.settings.upstream_idle_s)
        for client in [c for c in self.clients if not c.exchanges and not c.current
                       and now - c.idle_since > self.settings.client_idle_s]:
            if client.transport is not None:
                client.transport.close()
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    # -- the life of an exchange ------------------------------------------------------------------
    def dispatch(self, exchange: Exchange) -> None:
        loop = asyncio.get_running_loop()
        exchange.timer = loop.call_later(self.settings.upstream_timeout_s, self._timeout, exchange)
        self.pool.acquire(exchange)

    def _timeout(self, exchange: Exchange) -> None:
        if exchange.state is not WAITING and exchange.state is not STREAMING:
            return
        if exchange.conn is not None:
            exchange.conn.abandon()
        if exchange.state is STREAMING:  # half an answer: the caller must see it was cut
            log.warning("the model stopped answering mid-body (request %s)", exchange.request_id)
            self.metrics.observe_proxy(None, time.perf_counter() - exchange.started)
            exchange.state = CUT
            self.unanswered(exchange)
            exchange.client._close()
            return
        self.upstream_failed(exchange, 504, "the model did not answer in time")

    def upstream_failed(self, exchange: Exchange, status: int, message: str) -> None:
        if exchange.state is not WAITING and exchange.state is not STREAMING:
            return
        if exchange.state is STREAMING:  # cut in the middle of the body: pass the cut on
            log.warning("%s (request %s)", message, exchange.request_id)
            exchange.state = CUT
            if exchange.timer is not None:
                exchange.timer.cancel()
            self.metrics.observe_proxy(None, time.perf_counter() - exchange.started)
            self.unanswered(exchange)
            exchange.client._close()
            return
        exchange.conn = None
        self.reply_error(exchange.client, status, message, exchange)

    def reply_error(self, client: Client, status: int, message: str,
                    exchange: Exchange | None) -> None:
        request_id = exchange.request_id if exchange is not None else new_request_id()
        log.warning("%s (request %s)", message, request_id)
        body = b'{"error":%s,"proxy":"driftline-collector"}' % _json_string(message)
        close = exchange is None or exchange.close_after or not exchange.request_done
        reason = {400: b"Bad Request", 502: b"Bad Gateway", 504: b"Gateway Timeout"}[status]
        client.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"%s: %s\r\n%s\r\n%s"
                     % (status, reason, len(body), REQUEST_ID, request_id.encode("latin-1"),
                        b"Connection: close\r\n" if close else b"", body))
        if exchange is None:
            client._close()
            return
        exchange.close_after = close
        exchange.state = REPLACED
        if exchange.timer is not None:
            exchange.timer.cancel()
        self.metrics.observe_proxy(None, time.perf_counter() - exchange.started)
        self.unanswered(exchange)
        if exchange.request_done or close:
            exchange.state = FINISHED
            client.next()

    def unanswered(self, exchange: Exchange) -> None:
        """A call that gets no whole answer from the model (the proxy answered 400, 502 or 504, the
        answer was cut, the caller left): never captured, counted ``responses_uncaptured{class="error"}``."""
        resolved = self.capturer.model_of(exchange.path)
        self.metrics.uncaptured(None, resolved.model if resolved is not None else None)

    def answered(self, exchange: Exchange) -> None:
        """The whole answer went to the caller: time it, capture it, go on."""
        exchange.state = ANSWERED
        if exchange.timer is not None:
            exchange.timer.cancel()
        exchange.elapsed = time.perf_counter() - exchange.started
        self.corks.later(self._observe, exchange)  # after the answer has left
        if exchange.request_done:
            self.finished(exchange)

    def finished(self, exchange: Exchange) -> None:
        """Request and answer are both complete (in either order)."""
        answered = exchange.state is ANSWERED  # the model's answer, not the proxy's error
        exchange.state = FINISHED
        exchange.client.next()
        if answered:
            self.corks.later(self.capturer.exchange, exchange)

    def _observe(self, exchange: Exchange) -> None:
        if self.settings.model:
            self.metrics.observe_proxy(exchange.status, exchange.elapsed)
        else:  # a multi-model server: labelled by the path's model
            resolved = self.capturer.model_of(exchange.path)
            self.metrics.observe_proxy(exchange.status, exchange.elapsed,
                                       resolved.model if resolved is not None else None)


def _json_string(text: str) -> bytes:
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    out = "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in out)
    return f'"{out}"'.encode()
