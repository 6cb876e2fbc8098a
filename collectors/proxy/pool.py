"""Keep-alive connections to the model: the pool, and one pooled connection (:class:`Upstream`)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from collectors.proxy.corks import Writer
from collectors.proxy.exchange import CANCELLED, STREAMING, WAITING, Exchange
from collectors.proxy.response import BadResponse, Response

if TYPE_CHECKING:
    from collectors.proxy.server import Proxy


class Pool:
    """Keep-alive connections to the model, most recently used first, at most ``size`` open."""

    def __init__(self, proxy: Proxy, host: str, port: int, tls: ssl.SSLContext | None,
                 size: int) -> None:
        self.proxy = proxy
        self.host, self.port, self.tls, self.size = host, port, tls, size
        self.idle: list[Upstream] = []
        self.open = 0
        self.waiting: deque[Exchange] = deque()

    def acquire(self, exchange: Exchange) -> None:
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

    async def _connect(self, exchange: Exchange) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: Upstream(self), self.host, self.port,
                                                   ssl=self.tls)
        except OSError as exc:
            self.open -= 1
            if exchange.state is not CANCELLED:
                self.proxy.upstream_failed(exchange, 502, f"the model cannot be reached: {exc}")
            self._serve_waiting()
            return
        if exchange.state is WAITING or exchange.state is STREAMING:
            conn.start(exchange, reused=False)
        else:  # answered meanwhile (a timeout), or its caller is gone
            self.release(conn)

    def release(self, conn: Upstream) -> None:
        while self.waiting:
            exchange = self.waiting.popleft()
            if exchange.state is WAITING or exchange.state is STREAMING:
                conn.start(exchange, reused=True)
                return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def lost(self, conn: Upstream) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        self._serve_waiting()

    def _serve_waiting(self) -> None:
        while self.waiting and self.waiting[0].state is CANCELLED:
            self.waiting.popleft()
        if self.waiting and self.open < self.size:
            self.acquire(self.waiting.popleft())

    def sweep(self, now: float, idle_s: float) -> None:
        for conn in [c for c in self.idle if now - c.idle_since > idle_s]:
            conn.abandon()

    def close(self) -> None:
        for conn in list(self.idle):
            conn.abandon()


class Upstream(Writer, asyncio.Protocol):
    """A pooled connection to the model; parses one answer at a time (:class:`Response`)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport = None
        self.corks = pool.proxy.corks
        self.wbuf = []
        self.exchange: Exchange | None = None
        self.response: Response | None = None
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
            except BadResponse as exc:
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

    def start(self, exchange: Exchange, reused: bool) -> None:
        self.exchange = exchange
        self.response = Response(self, exchange)
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
