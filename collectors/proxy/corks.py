"""Corked writes: what one read causes leaves in one system call per connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collectors.proxy.exchange import Exchange

log = logging.getLogger("driftline.collector")

Work = Callable[["Exchange"], object]


class Corks:
    """Writes made while one read is handled, sent at its end: one system call per connection.

    A response head and its body (or a request head and its body) then leave in one
    segment, so the peer wakes once for them, not twice.
    """

    __slots__ = ("active", "dirty", "after")

    def __init__(self) -> None:
        self.active = False
        self.dirty: list[Writer] = []
        self.after: list[tuple[Work, Exchange]] = []

    def later(self, work: Work, exchange: Exchange) -> None:
        """Run ``work`` once the writes are out (now, when nothing is corked)."""
        if self.active:
            self.after.append((work, exchange))
        else:
            safely(work, exchange)

    def __enter__(self) -> None:
        self.active = True

    def __exit__(self, *exc: object) -> None:
        self.active = False
        dirty, self.dirty = self.dirty, []
        for writer in dirty:
            writer.flush()
        after, self.after = self.after, []
        for work, exchange in after:
            safely(work, exchange)


def safely(work: Work, exchange: Exchange) -> None:
    """Capture and metrics never break the proxy: a failure there is logged, nothing more."""
    try:
        work(exchange)
    except Exception:
        log.exception("after request %s: %s failed", exchange.request_id, work.__name__)


class Writer:
    """A connection's writing side, corked by :class:`Corks`."""

    transport: asyncio.Transport | None
    corks: Corks
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
