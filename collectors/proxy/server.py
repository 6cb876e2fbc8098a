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
parser of our own (:class:`_Response`), because httptools' response parser
cannot be told that an answer to ``HEAD`` has no body.

What the caller sees is what the model answered: the status line, the
end-to-end headers in their order and spelling, and the body, for every path
and method, with keep-alive and pipelining.  Bodies stream in both
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
request/response pair is extracted (:mod:`collectors.extractors`), fields
dropped or hashed, and offered to the bounded delivery queue, which never
blocks.  Bodies over ``max_payload_bytes`` stream through and are counted as
``oversize``, never buffered.  A payload that cannot be parsed is counted,
never an error for the caller.  ``X-Driftline-Skip: 1`` opts a request out;
``sample_rate`` keeps a random share; non-2xx answers are captured only with
``capture_errors``.  While the process uses more than ``max_cpu`` cores
(smoothed), captures are shed and counted ``overload``: proxying comes first
(``shed_overload=False`` captures everything, at the cost of the callers'
latency and the proxy's throughput when the CPU runs out).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import unquote, urlsplit

import httptools

from collectors.events import Capture
from collectors.extractors import ExtractError, FieldPolicy, GenericSpec, apply, extract

log = logging.getLogger("driftline.collector")

REQUEST_ID = "X-Request-Id"
SKIP = "X-Driftline-Skip"
_REQUEST_ID = b"x-request-id"
_SKIP = b"x-driftline-skip"
# RFC 9110 7.6.1 hop-by-hop fields, and the framing the proxy sets itself
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                         b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
                         b"content-length"})
_IDEMPOTENT_BODYLESS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"DELETE"})
_MAX_HEAD = 64 * 1024  # bytes of a response's status line and headers
_HIGH_WATER = 1024 * 1024  # request bytes held for an upstream connection not yet there
_TICK_S = 0.05  # how often the process's CPU use is measured
_CRLF = b"\r\n"
_HEX = b"0123456789abcdefABCDEF"


class Queue(Protocol):
    def offer(self, capture: Capture) -> bool: ...


class ProxyMetrics(Protocol):
    def observe_proxy(self, status: int | None, seconds: float) -> None: ...

    def dropped(self, reason: str, events: int) -> None: ...


@dataclass(frozen=True)
class ProxySettings:
    upstream: str  # http://127.0.0.1:8080
    model: str
    model_version: str | None = None
    sample_rate: float = 1.0
    max_payload_bytes: int = 1024 * 1024
    capture_errors: bool = False
    protocol: str = "auto"
    generic: GenericSpec | None = None
    feature_names: tuple[str, ...] | None = None
    policy: FieldPolicy | None = None
    upstream_timeout_s: float = 300.0
    pool_size: int = 256
    upstream_idle_s: float = 30.0  # a pooled connection idle this long is closed
    shed_overload: bool = True  # skip captures (counted "overload") while over the CPU budget
    max_cpu: float = 0.8  # cores the whole collector process may use (smoothed) before it sheds
    client_idle_s: float = 75.0  # a caller's keep-alive connection idle this long is closed


class _BadResponse(Exception):
    pass


def _listed(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def _header_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _request_id() -> str:
    return os.urandom(16).hex()


class _Corks:
    """Writes made while one read is handled, sent at its end: one system call per connection.

    A response head and its body (or a request head and its body) then leave in one
    segment, so the peer wakes once for them, not twice.
    """

    __slots__ = ("active", "dirty", "after")

    def __init__(self) -> None:
        self.active = False
        self.dirty: list[_Writer] = []
        self.after: list[tuple[Callable[[_Exchange], None], _Exchange]] = []

    def later(self, work: Callable[[_Exchange], None], exchange: _Exchange) -> None:
        """Run ``work`` once the writes are out (now, when nothing is corked)."""
        if self.active:
            self.after.append((work, exchange))
        else:
            _safely(work, exchange)

    def __enter__(self) -> None:
        self.active = True

    def __exit__(self, *exc: object) -> None:
        self.active = False
        dirty, self.dirty = self.dirty, []
        for writer in dirty:
            writer.flush()
        after, self.after = self.after, []
        for work, exchange in after:
            _safely(work, exchange)


def _safely(work: Callable[[_Exchange], None], exchange: _Exchange) -> None:
    """Capture and metrics never break the proxy: a failure there is logged, nothing more."""
    try:
        work(exchange)
    except Exception:
        log.exception("after request %s: %s failed", exchange.request_id, work.__name__)


class _Writer:
    """A connection's writing side, corked by :class:`_Corks`."""

    transport: asyncio.Transport | None
    corks: _Corks
    wbuf: list[bytes]

    def send(self, data: bytes) -> None:
        if self.corks.active:
            if not self.wbuf:
                self.corks.dirty.append(self)
            self.wbuf.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def flush(self) -> None:
        buf, self.wbuf = self.wbuf, []
        if buf and self.transport is not None and not self.transport.is_closing():
            self.transport.write(buf[0] if len(buf) == 1 else b"".join(buf))


class _Exchange:
    """One request and its answer, from the caller's first byte to the last byte back."""

    __slots__ = ("client", "method", "target", "version", "headers", "request_id", "skip", "chunked",
                 "length", "kept", "sent", "pending", "pending_size", "request_done", "conn",
                 "reused", "retried", "started", "timer", "status", "head_sent", "response_done",
                 "answer", "down_chunked", "close_after", "cancelled", "upgrade", "finished",
                 "elapsed")

    def __init__(self, client: _Client, method: bytes, target: bytes, version: str,
                 headers: list[tuple[bytes, bytes]], limit: int) -> None:
        self.client = client
        self.method, self.target, self.version = method, target, version
        request_id = skip = None
        chunked = False
        length: int | None = None
        kept: list[tuple[bytes, bytes]] = []
        listed: set[bytes] | None = None
        for name, value in headers:
            low = name.lower()
            if low not in _HOP_BY_HOP:
                if low == _REQUEST_ID:
                    request_id = value
                    continue  # sent once, below
                if low == _SKIP:
                    skip = value
                kept.append((name, value))
            elif low == b"transfer-encoding":
                chunked = True  # llhttp refuses a request whose last coding is not chunked
            elif low == b"content-length":
                length = int(value)  # llhttp has checked it
            elif low == b"connection":
                listed = _listed(value) if listed is None else listed | _listed(value)
        if listed:
            kept = [(n, v) for n, v in kept if n.lower() not in listed]
        if not any(n.lower() == b"host" for n, _ in kept):  # HTTP/1.0 needs none; 1.1 must send one
            kept.append((b"Host", client.proxy.upstream_authority))
        self.request_id: str = request_id.decode("latin-1") if request_id else _request_id()
        self.skip = skip is not None and skip.strip() == b"1"
        self.chunked = chunked
        self.length = None if chunked else length
        self.headers = kept
        # the request body, kept for the capture (and a retry) while it fits the limit
        self.kept: bytearray | None = bytearray() if (self.length or 0) <= limit else None
        self.sent = 0  # body bytes passed on (or held in pending)
        self.pending: list[bytes] = []  # what waits for the upstream connection
        self.pending_size = 0
        self.request_done = False
        self.conn: _Upstream | None = None
        self.reused = False
        self.retried = False
        self.started = time.perf_counter()
        self.timer: asyncio.TimerHandle | None = None
        self.status: int | None = None
        self.head_sent = False
        self.response_done = False
        self.answer: bytearray | None = None
        self.down_chunked = False
        self.close_after = False
        self.cancelled = False
        self.upgrade = False
        self.finished = False
        self.elapsed = 0.0  # seconds from the request's head to the answer's last byte

    # -- the request, towards the model -------------------------------------------------------
    def head(self) -> bytes:
        framing = (b"Transfer-Encoding: chunked\r\n" if self.chunked else
                   b"Content-Length: %d\r\n" % self.length if self.length is not None else b"")
        return b"".join((self.method, b" ", self.target, b" HTTP/1.1\r\n", _header_block(self.headers),
                         b"X-Request-Id: ", self.request_id.encode("latin-1"), _CRLF, framing, _CRLF))

    def body(self, data: bytes, limit: int) -> None:
        if self.kept is not None:
            if len(self.kept) + len(data) <= limit:
                self.kept += data
            else:
                self.kept = None
        if self.response_done:
            return  # answered early (an error, or the model answered before reading it all)
        framed = _chunk(data) if self.chunked else data
        self._send(framed)

    def end(self) -> None:
        self.request_done = True
        if self.chunked and not self.response_done:
            self._send(b"0\r\n\r\n")

    def _send(self, data: bytes) -> None:
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.send(data)
        else:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > _HIGH_WATER:
                self.client.pause("pending")

    def attach(self, conn: _Upstream, reused: bool) -> None:
        """Send the head and what is pending on ``conn``; what follows goes straight to it."""
        self.conn, self.reused = conn, reused
        assert conn.transport is not None
        conn.send(self.head() + b"".join(self.pending) if self.pending else self.head())
        self.pending, self.pending_size = [], 0
        self.client.unpause("pending")
        if self.client.write_paused:
            conn.transport.pause_reading()

    def replay(self) -> bool:
        """Prepare to send the request again on a new connection (what has passed is all kept)."""
        if self.retried or self.kept is None or self.head_sent:
            return False
        self.retried = True
        self.conn = None
        data = bytes(self.kept)
        self.pending = [_chunk(data)] if self.chunked and data else [data] if data else []
        if self.chunked and self.request_done:
            self.pending.append(b"0\r\n\r\n")
        self.pending_size = len(data)
        return True


class _Client(_Writer, asyncio.Protocol):
    """A caller's connection: requests parsed by llhttp, answered in order."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.transport = None
        self.corks = proxy.corks
        self.wbuf = []
        self.parser = httptools.HttpRequestParser(self)
        self.exchanges: deque[_Exchange] = deque()
        self.current: _Exchange | None = None
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
            exchange.cancelled = True
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
            if last is self.exchanges[0] and not last.head_sent and not last.response_done:
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
        exchange = _Exchange(self, self.parser.get_method(), self.url, self.parser.get_http_version(),
                             self.headers, self.proxy.settings.max_payload_bytes)
        if not self.parser.should_keep_alive():
            exchange.close_after = True
        if self.parser.should_upgrade():
            exchange.upgrade = exchange.close_after = True
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
            if exchange.response_done and not exchange.finished:
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


class _Upstream(_Writer, asyncio.Protocol):
    """A pooled connection to the model; parses one answer at a time (:class:`_Response`)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport = None
        self.corks = pool.proxy.corks
        self.wbuf = []
        self.exchange: _Exchange | None = None
        self.response: _Response | None = None
        self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.response is None:
            self.abandon()  # bytes from an idle connection: it can no longer be trusted
            return
        with self.corks:
            try:
                self.response.feed(data)
            except _BadResponse as exc:
                if self.response is not None:
                    self.response.fail(f"the model's answer is not valid HTTP/1.1: {exc}")

    def eof_received(self) -> bool | None:
        if self.response is not None:
            self.response.eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)
        self.transport = None
        if self.response is not None:
            self.response.eof(exc)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.pause("upstream")

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.unpause("upstream")

    def start(self, exchange: _Exchange, reused: bool) -> None:
        self.exchange = exchange
        self.response = _Response(self, exchange)
        exchange.attach(self, reused)

    def release(self) -> None:
        """The answer is complete: back to the pool, or closed when it can't be reused."""
        exchange, self.exchange, self.response = self.exchange, None, None
        if exchange is not None and not exchange.request_done:
            self.abandon()  # the rest of the request would go to nobody
            return
        if self.transport is not None and not self.transport.is_reading():
            self.transport.resume_reading()  # paused for a slow caller
        self.pool.release(self)

    def abandon(self) -> None:
        self.exchange, self.response = None, None
        self.wbuf = []
        if self.transport is not None:
            self.transport.close()


class _Response:
    """The model's answer, parsed as it comes and passed on to the caller."""

    HEAD, FIXED, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE, DONE = range(8)

    def __init__(self, conn: _Upstream, exchange: _Exchange) -> None:
        self.conn, self.exchange = conn, exchange
        self.state = self.HEAD
        self.buffer = b""
        self.remaining = 0
        self.received = False  # any byte of an answer
        self.keep_alive = True

    def feed(self, data: bytes) -> None:
        self.received = True
        if self.buffer:
            data, self.buffer = self.buffer + data, b""
        pos = 0
        size = len(data)
        while pos < size and self.state != self.DONE:
            state = self.state
            if state == self.HEAD:
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    if size - pos > _MAX_HEAD:
                        raise _BadResponse(f"a head of over {_MAX_HEAD} bytes")
                    self.buffer = data[pos:]
                    return
                self._head(data[pos:end])
                pos = end + 4
            elif state == self.FIXED or state == self.CHUNK_DATA:
                take = min(self.remaining, size - pos)
                self._body(data[pos:pos + take])
                pos += take
                self.remaining -= take
                if not self.remaining:
                    self.state = self.DONE if state == self.FIXED else self.CHUNK_END
            elif state == self.UNTIL_CLOSE:
                self._body(data[pos:] if pos else data)
                pos = size
            elif state == self.CHUNK_SIZE or state == self.CHUNK_END or state == self.TRAILERS:
                end = data.find(_CRLF, pos)
                if end < 0:
                    if size - pos > 4096:
                        raise _BadResponse("a chunk line of over 4096 bytes")
                    self.buffer = data[pos:]
                    return
                line = data[pos:end]
                pos = end + 2
                if state == self.CHUNK_END:
                    if line:
                        raise _BadResponse("no CRLF after a chunk")
                    self.state = self.CHUNK_SIZE
                elif state == self.TRAILERS:
                    if not line:
                        self.state = self.DONE  # trailers are not passed on
                else:
                    digits = line.split(b";", 1)[0].rstrip(b" \t")
                    if not digits or len(digits) > 16 or digits.lstrip(_HEX):
                        raise _BadResponse(f"a chunk size of {line[:40]!r}")
                    self.remaining = int(digits, 16)
                    self.state = self.CHUNK_DATA if self.remaining else self.TRAILERS
        if self.state == self.DONE:
            # bytes beyond the answer: the connection can't be trusted with another request
            self._finish(reusable=self.keep_alive and pos >= size)

    def _head(self, block: bytes) -> None:
        lines = block.split(_CRLF)
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or len(parts[1]) != 3 \
                or not parts[1].isdigit():
            raise _BadResponse(f"a status line of {lines[0][:60]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else b""
        out: list[tuple[bytes, bytes]] = []  # what the caller gets, the framing aside
        length: int | None = None
        chunked = encoded = close = False
        keep_alive_token = False
        listed: set[bytes] | None = None
        codings: list[bytes] = []  # transfer codings, in order
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in b" \t" or line[:1] in b" \t":
                raise _BadResponse(f"a header line of {line[:60]!r}")
            value = value.strip()
            low = name.lower()
            if low not in _HOP_BY_HOP:
                if low != _REQUEST_ID:
                    out.append((name, value))
                continue
            if low == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise _BadResponse(f"a Content-Length of {value[:40]!r}")
                length = int(value)
            elif low == b"transfer-encoding":
                encoded = True
                codings += [c.strip() for c in value.split(b",") if c.strip()]
                chunked = bool(codings) and codings[-1].lower() == b"chunked"
            elif low == b"connection":
                tokens = _listed(value)
                close = close or b"close" in tokens
                keep_alive_token = keep_alive_token or b"keep-alive" in tokens
                listed = tokens if listed is None else listed | tokens
        if listed:
            out = [(n, v) for n, v in out if n.lower() not in listed]
        exchange = self.exchange
        self.keep_alive = not close and (parts[0] == b"HTTP/1.1" or keep_alive_token)
        if 100 <= status < 200:
            if status == 101:
                raise _BadResponse("101 Switching Protocols, though no upgrade was asked for")
            if exchange.version != "1.0":  # RFC 9110 15.2: none to an HTTP/1.0 client
                exchange.client.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, _header_block(out)))
            return  # an interim answer (100 Continue, 103 Early Hints); the final one follows
        exchange.status = status
        if exchange.method == b"HEAD" or status in (204, 304):
            body = "none"
        elif encoded:
            body = "chunked" if chunked else "close"
        elif length is not None:
            body = "fixed"
        else:
            body = "close"
        limit = exchange.client.proxy.settings.max_payload_bytes
        out.append((b"X-Request-Id", exchange.request_id.encode("latin-1")))
        if body == "none":
            if length is not None and status not in (204, 304):
                out.append((b"Content-Length", b"%d" % length))
            exchange.answer = bytearray()
        elif body == "fixed":
            assert length is not None
            out.append((b"Content-Length", b"%d" % length))
            exchange.answer = bytearray() if length <= limit else None
        else:
            exchange.answer = bytearray()
            if exchange.version == "1.1":
                # codings other than chunked (gzip, ...) stay; the proxy does the chunking
                kept = [c for c in (codings[:-1] if chunked else codings) if c.lower() != b"chunked"]
                out.append((b"Transfer-Encoding", b", ".join([*kept, b"chunked"])))
                exchange.down_chunked = True
            else:
                exchange.close_after = True
        if exchange.close_after:
            out.append((b"Connection", b"close"))
        elif exchange.version == "1.0":
            out.append((b"Connection", b"keep-alive"))
        exchange.client.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, _header_block(out)))
        exchange.head_sent = True
        if body == "none":
            self.state = self.DONE
        elif body == "fixed":
            self.remaining = length or 0
            self.state = self.FIXED if self.remaining else self.DONE
        elif body == "chunked":
            self.state = self.CHUNK_SIZE
        else:
            self.keep_alive = False
            self.state = self.UNTIL_CLOSE

    def _body(self, data: bytes) -> None:
        if not data:
            return
        exchange = self.exchange
        answer = exchange.answer
        if answer is not None:
            if len(answer) + len(data) <= exchange.client.proxy.settings.max_payload_bytes:
                answer += data
            else:
                exchange.answer = None
        exchange.client.write(_chunk(data) if exchange.down_chunked else data)

    def _finish(self, reusable: bool) -> None:
        exchange = self.exchange
        if exchange.down_chunked:
            exchange.client.write(b"0\r\n\r\n")
        if reusable:
            self.conn.release()
        else:
            self.conn.abandon()
        exchange.client.proxy.answered(exchange)

    def eof(self, exc: Exception | None = None) -> None:
        if self.state == self.DONE:
            return
        if self.state == self.UNTIL_CLOSE:
            self.state = self.DONE
            self._finish(reusable=False)
            return
        exchange = self.exchange
        self.state = self.DONE
        proxy = exchange.client.proxy
        if not self.received and exchange.reused and exchange.replay():
            log.debug("request %s: a reused connection was closed; sending again", exchange.request_id)
            self.conn.exchange = self.conn.response = None
            proxy.pool.acquire(exchange)
            return
        reason = f": {exc}" if exc is not None else ""
        self.fail(f"the model closed the connection before it answered{reason}")

    def fail(self, message: str) -> None:
        self.state = self.DONE
        self.conn.abandon()
        self.exchange.client.proxy.upstream_failed(self.exchange, 502, message)


class _Pool:
    """Keep-alive connections to the model, most recently used first, at most ``size`` open."""

    def __init__(self, proxy: Proxy, host: str, port: int, tls: ssl.SSLContext | None,
                 size: int) -> None:
        self.proxy = proxy
        self.host, self.port, self.tls, self.size = host, port, tls, size
        self.idle: list[_Upstream] = []
        self.open = 0
        self.waiting: deque[_Exchange] = deque()

    def acquire(self, exchange: _Exchange) -> None:
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                conn.start(exchange, reused=True)
                return
        if self.open < self.size:
            self.open += 1
            asyncio.get_running_loop().create_task(self._connect(exchange))
        else:
            self.waiting.append(exchange)

    async def _connect(self, exchange: _Exchange) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Upstream(self), self.host, self.port,
                                                   ssl=self.tls)
        except OSError as exc:
            self.open -= 1
            if not exchange.cancelled:
                self.proxy.upstream_failed(exchange, 502, f"the model cannot be reached: {exc}")
            self._serve_waiting()
            return
        if exchange.cancelled or exchange.response_done:
            self.release(conn)
        else:
            conn.start(exchange, reused=False)

    def release(self, conn: _Upstream) -> None:
        while self.waiting:
            exchange = self.waiting.popleft()
            if not exchange.cancelled and not exchange.response_done:
                conn.start(exchange, reused=True)
                return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def lost(self, conn: _Upstream) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        self._serve_waiting()

    def _serve_waiting(self) -> None:
        while self.waiting and self.waiting[0].cancelled:
            self.waiting.popleft()
        if self.waiting and self.open < self.size:
            self.acquire(self.waiting.popleft())

    def sweep(self, now: float, idle_s: float) -> None:
        for conn in [c for c in self.idle if now - c.idle_since > idle_s]:
            conn.abandon()

    def close(self) -> None:
        for conn in list(self.idle):
            conn.abandon()


class Proxy:
    """The proxy: :meth:`start` listens, every connection is served by asyncio protocols."""

    def __init__(self, settings: ProxySettings, queue: Queue, metrics: ProxyMetrics, *,
                 clock: Callable[[], float] = time.time,
                 sample: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.queue = queue
        self.metrics = metrics
        self._clock = clock
        self._sample = sample
        url = urlsplit(settings.upstream)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"the upstream must be an http:// or https:// URL, not {settings.upstream!r}")
        self.upstream_host = url.hostname
        self.upstream_authority = url.netloc.rpartition("@")[2].encode("idna")
        tls = ssl.create_default_context() if url.scheme == "https" else None
        self.pool = _Pool(self, url.hostname, url.port or (443 if tls else 80), tls, settings.pool_size)
        self.clients: set[_Client] = set()
        self.corks = _Corks()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._cpu = 0.0  # smoothed cores used by this process (every thread)
        self.overloaded = False

    async def start(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), host, port, backlog=1024)
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
        self.overloaded = self._cpu > (0.9 * limit if self.overloaded else limit)
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
    def dispatch(self, exchange: _Exchange) -> None:
        loop = asyncio.get_running_loop()
        exchange.timer = loop.call_later(self.settings.upstream_timeout_s, self._timeout, exchange)
        self.pool.acquire(exchange)

    def _timeout(self, exchange: _Exchange) -> None:
        if exchange.response_done or exchange.cancelled:
            return
        if exchange.conn is not None:
            exchange.conn.abandon()
        if exchange.head_sent:  # half an answer: the caller must see it was cut
            log.warning("the model stopped answering mid-body (request %s)", exchange.request_id)
            self.metrics.observe_proxy(None, time.perf_counter() - exchange.started)
            exchange.response_done = True
            exchange.client._close()
            return
        self.upstream_failed(exchange, 504, "the model did not answer in time")

    def upstream_failed(self, exchange: _Exchange, status: int, message: str) -> None:
        if exchange.response_done or exchange.cancelled:
            return
        if exchange.head_sent:  # cut in the middle of the body: pass the cut on
            log.warning("%s (request %s)", message, exchange.request_id)
            exchange.response_done = True
            if exchange.timer is not None:
                exchange.timer.cancel()
            self.metrics.observe_proxy(None, time.perf_counter() - exchange.started)
            exchange.client._close()
            return
        exchange.conn = None
        self.reply_error(exchange.client, status, message, exchange)

    def reply_error(self, client: _Client, status: int, message: str,
                    exchange: _Exchange | None) -> None:
        request_id = exchange.request_id if exchange is not None else _request_id()
        log.warning("%s (request %s)", message, request_id)
        body = b'{"error":%s,"proxy":"driftline-collector"}' % _json_string(message)
        close = exchange is None or exchange.close_after or not exchange.request_done
        reason = {400: b"Bad Request", 502: b"Bad Gateway", 504: b"Gateway Timeout"}[status]
        client.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"X-Request-Id: %s\r\n%s\r\n%s"
                     % (status, reason, len(body), request_id.encode("latin-1"),
                        b"Connection: close\r\n" if close else b"", body))
        if exchange is None:
            client._close()
            return
        exchange.close_after = close
        exchange.response_done = True
        if exchange.timer is not None:
            exchange.timer.cancel()
        self.metrics.observe_proxy(None, time.perf_counter() - exchange.started)
        if exchange.request_done or close:
            exchange.finished = True
            client.next()

    def answered(self, exchange: _Exchange) -> None:
        """The whole answer went to the caller: time it, capture it, go on."""
        exchange.response_done = True
        if exchange.timer is not None:
            exchange.timer.cancel()
        exchange.elapsed = time.perf_counter() - exchange.started
        self.corks.later(self._observe, exchange)  # after the answer has left
        if exchange.request_done:
            self.finished(exchange)

    def finished(self, exchange: _Exchange) -> None:
        """Request and answer are both complete (in either order)."""
        exchange.finished = True
        exchange.client.next()
        if exchange.status is not None and exchange.head_sent:
            self.corks.later(self._capture, exchange)

    def _observe(self, exchange: _Exchange) -> None:
        self.metrics.observe_proxy(exchange.status, exchange.elapsed)

    def _capture(self, exchange: _Exchange) -> None:
        settings = self.settings
        if exchange.skip:
            self.metrics.dropped("skipped", 1)
            return
        status = exchange.status
        if status is None or (not 200 <= status < 300 and not settings.capture_errors):
            return
        if exchange.kept is None or exchange.answer is None:
            self.metrics.dropped("oversize", 1)
            return
        if settings.sample_rate < 1.0 and self._sample() >= settings.sample_rate:
            self.metrics.dropped("sampled_out", 1)
            return
        if self.overloaded:
            self.metrics.dropped("overload", 1)
            return
        path = unquote(exchange.target.split(b"?", 1)[0].decode("latin-1"))
        try:
            _, instances = extract(path, bytes(exchange.kept), bytes(exchange.answer),
                                   protocol=settings.protocol, generic=settings.generic,
                                   feature_names=settings.feature_names)
        except ExtractError as exc:
            log.debug("request %s not captured: %s", exchange.request_id, exc)
            self.metrics.dropped("unparseable", 1)
            return
        if not instances:
            return
        if settings.policy is not None:
            instances = apply(instances, settings.policy)
        capture = Capture(model=settings.model, request_id=exchange.request_id,
                          ts_ms=int(self._clock() * 1000), instances=instances,
                          latency_ms=round(exchange.elapsed * 1000, 3), status=status,
                          model_version=settings.model_version)
        self.queue.offer(capture)  # never blocks; the queue counts captures and its own drops


def _json_string(text: str) -> bytes:
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    out = "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in out)
    return f'"{out}"'.encode()
