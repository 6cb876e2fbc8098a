"""The sidecar's reverse proxy: every request goes to the model, unchanged.

Why aiohttp: one asyncio server and one client in a single library, with a
keep-alive connection pool to the upstream, streaming of bodies in both
directions and low per-request overhead; uvicorn + httpx would put an ASGI
layer and a second event-loop integration on the hot path for nothing here.

What the caller sees is what the model answered: status, headers (minus
hop-by-hop ones) and body, for every path and method.  Bodies larger than
``max_payload_bytes`` (or of unknown length beyond it) are streamed through
and not captured.  Two things are added: the ``X-Request-Id`` header (taken
from the request, or generated) on the response and on the upstream request,
so labels can be joined later; and, when the upstream cannot be reached or
times out, a 502 or 504 whose JSON body says so (there is no model answer to
pass on).

Capture happens after the response has been written to the caller: the
request/response pair is extracted (:mod:`collectors.extractors`), fields
dropped or hashed, and offered to the bounded delivery queue, which never
blocks.  A payload that cannot be parsed is counted, never an error for the
caller.  ``X-Driftline-Skip: 1`` opts a request out; ``sample_rate`` keeps a
random share; non-2xx answers are captured only with ``capture_errors``.
"""

from __future__ import annotations

import io
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from collectors.events import Capture
from collectors.extractors import ExtractError, FieldPolicy, GenericSpec, apply, extract

log = logging.getLogger("driftline.collector")

REQUEST_ID = "X-Request-Id"
SKIP = "X-Driftline-Skip"
# RFC 9110 7.6.1 hop-by-hop fields, and what aiohttp recomputes itself
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
    "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length"))
_CHUNK = 64 * 1024


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


def _forward_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The end-to-end headers: hop-by-hop ones, and those ``Connection`` names, removed."""
    out: CIMultiDict[str] = CIMultiDict()
    items = list(headers.items())
    connection = ""
    for key, value in items:
        if key.lower() == "connection":
            connection = value.lower()
    listed = {t.strip() for t in connection.split(",") if t.strip()}
    for key, value in items:
        lower = key.lower()
        if lower not in _HOP_BY_HOP and lower not in listed:
            out.add(key, value)
    return out


def _payload(body: bytes | AsyncIterator[bytes]) -> bytes | io.BytesIO | AsyncIterator[bytes]:
    # aiohttp writes large raw bytes in one go (and warns): hand it a file-like instead
    return io.BytesIO(body) if isinstance(body, bytes) and len(body) > 256 * 1024 else body


class Proxy:
    """The proxy application; :meth:`app` is the aiohttp application to serve."""

    def __init__(self, settings: ProxySettings, queue: Queue, metrics: ProxyMetrics, *,
                 clock: Callable[[], float] = time.time,
                 sample: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.queue = queue
        self.metrics = metrics
        self._clock = clock
        self._sample = sample
        self._session: aiohttp.ClientSession | None = None
        self._upstream = settings.upstream.rstrip("/")

    def app(self) -> web.Application:
        # bodies are read by the handler itself, bounded by max_payload_bytes, or streamed
        application = web.Application(client_max_size=1 << 62)
        application.router.add_route("*", "/{tail:.*}", self.handle)
        application.on_startup.append(self._open)
        application.on_cleanup.append(self._close)
        return application

    async def _open(self, _: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=self.settings.pool_size, keepalive_timeout=30,
                                         enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=self.settings.upstream_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                              auto_decompress=False, skip_auto_headers=("User-Agent",))

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        limit = self.settings.max_payload_bytes
        body, oversize = await self._read_request(request, limit)
        headers = _forward_headers(request.headers)
        headers[REQUEST_ID] = request_id
        assert self._session is not None
        status: int | None = None
        try:
            async with self._session.request(
                    request.method, self._upstream + request.rel_url.raw_path_qs, headers=headers,
                    data=_payload(body), allow_redirects=False) as upstream:
                status = upstream.status
                response, answer = await self._respond(request, upstream, request_id, limit)
        except TimeoutError:
            self.metrics.observe_proxy(None, time.perf_counter() - started)
            return self._gateway_error(504, "the model did not answer in time", request_id)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            self.metrics.observe_proxy(None, time.perf_counter() - started)
            return self._gateway_error(502, f"the model cannot be reached: {exc}", request_id)
        elapsed = time.perf_counter() - started
        self.metrics.observe_proxy(status, elapsed)
        self._capture(request, request_id, body, answer, oversize, status, elapsed)
        return response

    async def _read_request(self, request: web.Request, limit: int
                            ) -> tuple[bytes | AsyncIterator[bytes], bool]:
        """The body, whole when it fits ``limit``; else a stream of it (not captured)."""
        length = request.content_length
        if length is not None and length <= limit:
            return await request.read(), False
        head = b""
        if length is None:
            head = await request.content.read(limit + 1)
            if len(head) <= limit and request.content.at_eof():
                return head, False

        async def rest() -> AsyncIterator[bytes]:
            if head:
                yield head
            async for chunk in request.content.iter_chunked(_CHUNK):
                yield chunk

        return rest(), True

    async def _respond(self, request: web.Request, upstream: aiohttp.ClientResponse, request_id: str,
                       limit: int) -> tuple[web.StreamResponse, bytes | None]:
        headers = _forward_headers(upstream.headers)
        headers[REQUEST_ID] = request_id
        length = upstream.content_length
        if length is not None and length <= limit:
            data = await upstream.read()
            response = web.Response(status=upstream.status, reason=upstream.reason, body=data,
                                    headers=headers)
            await response.prepare(request)
            await response.write_eof()
            return response, data
        stream = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        if length is not None:
            stream.content_length = length
        await stream.prepare(request)
        kept = bytearray()
        keeping = length is None
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            if keeping:
                kept += chunk
                if len(kept) > limit:
                    keeping, kept = False, bytearray()
            await stream.write(chunk)
        await stream.write_eof()
        return stream, bytes(kept) if keeping else None

    def _gateway_error(self, status: int, message: str, request_id: str) -> web.Response:
        log.warning("%s (request %s)", message, request_id)
        return web.json_response({"error": message, "proxy": "driftline-collector"}, status=status,
                                 headers={REQUEST_ID: request_id})

    def _capture(self, request: web.Request, request_id: str, body: object, answer: bytes | None,
                 oversize: bool, status: int | None, elapsed: float) -> None:
        settings = self.settings
        if request.headers.get(SKIP, "").strip() == "1":
            self.metrics.dropped("skipped", 1)
            return
        if status is None or (not 200 <= status < 300 and not settings.capture_errors):
            return
        if oversize or answer is None or not isinstance(body, bytes):
            self.metrics.dropped("oversize", 1)
            return
        if settings.sample_rate < 1.0 and self._sample() >= settings.sample_rate:
            self.metrics.dropped("sampled_out", 1)
            return
        try:
            _, instances = extract(request.path, body, answer, protocol=settings.protocol,
                                   generic=settings.generic, feature_names=settings.feature_names)
        except ExtractError as exc:
            log.debug("request %s not captured: %s", request_id, exc)
            self.metrics.dropped("unparseable", 1)
            return
        if not instances:
            return
        if settings.policy is not None:
            instances = apply(instances, settings.policy)
        capture = Capture(model=settings.model, request_id=request_id,
                          ts_ms=int(self._clock() * 1000), instances=instances,
                          latency_ms=round(elapsed * 1000, 3), status=status,
                          model_version=settings.model_version)
        self.queue.offer(capture)  # never blocks; the queue counts captures and its own drops
