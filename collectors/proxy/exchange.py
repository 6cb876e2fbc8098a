"""One request and its answer, from the caller's first byte to the last byte back.

An :class:`Exchange` is where a request is in its life, :class:`State`::

    WAITING ──the model's answer head passed on──▶ STREAMING ──its last byte passed on──▶ ANSWERED
       │                                               │
       │ the proxy answers instead (400, 502, 504)     │ the model stops or times out mid-body:
       ▼                                               ▼ the caller's connection is cut
    REPLACED                                          CUT

    ANSWERED, REPLACED ──the request is complete too (or the connection closes after
                         the error): the caller's connection goes on to its next request──▶ FINISHED
    any state but FINISHED ──the caller's connection is lost──▶ CANCELLED

Only an exchange that went from ANSWERED to FINISHED is captured.  A retry
(:meth:`Exchange.replay`) sends the request again while it is WAITING.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import TYPE_CHECKING
from urllib.parse import unquote

from collectors.capture import skip_requested
from collectors.proxy.framing import (
    CRLF,
    HEADER_LENGTH_LOWER,
    HOP_BY_HOP,
    REQUEST_ID,
    REQUEST_ID_LOWER,
    SKIP_LOWER,
    chunk,
    header_block,
    listed,
    new_request_id,
)

if TYPE_CHECKING:
    import asyncio

    from collectors.proxy.pool import Upstream
    from collectors.proxy.server import Client

HIGH_WATER = 1024 * 1024  # request bytes held for an upstream connection not yet there
_REQUEST_ID_FIELD = REQUEST_ID + b": "


class State(Enum):
    """Where an exchange is in its life (see the module doc for the transitions)."""

    WAITING = "waiting"  # no answer yet: behind an earlier request, connecting, or with the model
    STREAMING = "streaming"  # the head of the model's answer went to the caller; its body follows
    ANSWERED = "answered"  # the model's whole answer went to the caller
    REPLACED = "replaced"  # the proxy answered in the model's stead (400, 502 or 504)
    CUT = "cut"  # the answer stopped mid-body; the caller's connection was closed
    FINISHED = "finished"  # answer and request complete: the caller's connection has gone on
    CANCELLED = "cancelled"  # the caller's connection was lost


# module names for the states: an Enum member read from its class costs ~0.2 us on CPython 3.11
WAITING, STREAMING, ANSWERED, REPLACED, CUT, FINISHED, CANCELLED = State


class Exchange:
    """One request and its answer: the request's framing, its body so far, and its :class:`State`.

    Besides the state, a few facts that do not follow the lifecycle: ``request_done`` (the
    request's last byte came: the two directions are independent, as a model may answer
    before it read the whole request, and a caller may still be sending when the answer is
    over); ``close_after`` (the caller's connection closes after this exchange, decided by
    the request, a close-delimited answer or an error); ``reused`` and ``retried`` (the
    connection it was sent on was pooled; the one retry is spent).
    """

    __slots__ = ("client", "method", "target", "version", "headers", "request_id", "request_id_given", "skip",
                 "chunked",
                 "length", "request_body", "pending", "pending_size", "request_done", "conn",
                 "reused", "retried", "started", "timer", "status", "state", "response_body",
                 "down_chunked", "close_after", "elapsed", "request_content_type", "response_content_type",
                 "request_header_length", "response_header_length")

    def __init__(self, client: Client, method: bytes, target: bytes, version: str,
                 headers: list[tuple[bytes, bytes]], limit: int) -> None:
        self.client = client
        self.method, self.target, self.version = method, target, version
        request_id = skip = content_type = header_length = None
        chunked = host = False
        length: int | None = None
        kept: list[tuple[bytes, bytes]] = []
        tokens: set[bytes] | None = None
        for name, value in headers:
            low = name.lower()
            if low not in HOP_BY_HOP:
                if low == REQUEST_ID_LOWER:
                    request_id = value
                    continue  # sent once, below
                if low == SKIP_LOWER:
                    skip = value
                elif low == b"host":
                    host = True
                elif low == b"content-type":
                    content_type = value
                elif low == HEADER_LENGTH_LOWER:
                    header_length = value
                kept.append((name, value))
            elif low == b"transfer-encoding":
                chunked = True  # llhttp refuses a request whose last coding is not chunked
            elif low == b"content-length":
                length = int(value)  # llhttp has checked it
            elif low == b"connection":
                tokens = listed(value) if tokens is None else tokens | listed(value)
        if tokens:
            kept = [(n, v) for n, v in kept if n.lower() not in tokens]
            host = host and b"host" not in tokens
        if not host:  # HTTP/1.0 needs none; 1.1 must send one
            kept.append((b"Host", client.proxy.upstream_authority))
        self.request_id: str = request_id.decode("latin-1") if request_id else new_request_id()
        self.request_id_given = bool(request_id)  # else an OIP request's own id names its events
        self.skip = skip is not None and skip_requested(skip)
        # what the extractors need of the bodies' framing: CSV, or JSON then binary tensors
        self.request_content_type = None if content_type is None else content_type.decode("latin-1")
        self.request_header_length = None if header_length is None else header_length.decode("latin-1")
        self.response_content_type: str | None = None
        self.response_header_length: str | None = None
        self.chunked = chunked
        self.length = None if chunked else length
        self.headers = kept
        # the request body, kept for the capture (and a retry) while it fits the limit
        self.request_body: bytearray | None = bytearray() if (self.length or 0) <= limit else None
        self.pending: list[bytes] = []  # what waits for the upstream connection
        self.pending_size = 0
        self.request_done = False
        self.conn: Upstream | None = None
        self.reused = False
        self.retried = False
        self.started = time.perf_counter()
        self.timer: asyncio.TimerHandle | None = None
        self.state = WAITING
        self.status: int | None = None  # the final answer's, once its head came
        self.response_body: bytearray | None = None  # kept for the capture while it fits the limit
        self.down_chunked = False  # the answer is chunked by the proxy on its way to the caller
        self.close_after = False
        self.elapsed = 0.0  # seconds from the request's head to the answer's last byte

    def answer_fields(self, fields: list[tuple[bytes, bytes]]) -> None:
        """Note what the extractors need of the final answer's end-to-end header fields."""
        for name, value in fields:
            low = name.lower()
            if low == b"content-type":
                self.response_content_type = value.decode("latin-1")
            elif low == HEADER_LENGTH_LOWER:
                self.response_header_length = value.decode("latin-1")

    @property
    def path(self) -> str:
        """The target's path, percent-decoded (what the extractors route by)."""
        return unquote(self.target.split(b"?", 1)[0].decode("latin-1"))

    # -- the request, towards the model -------------------------------------------------------
    def head(self) -> bytes:
        framing = (b"Transfer-Encoding: chunked\r\n" if self.chunked else
                   b"Content-Length: %d\r\n" % self.length if self.length is not None else b"")
        return b"".join((self.method, b" ", self.target, b" HTTP/1.1\r\n", header_block(self.headers),
                         _REQUEST_ID_FIELD, self.request_id.encode("latin-1"), CRLF, framing, CRLF))

    def body(self, data: bytes, limit: int) -> None:
        if self.request_body is not None:
            if len(self.request_body) + len(data) <= limit:
                self.request_body += data
            else:
                self.request_body = None
        if self.state is not WAITING and self.state is not STREAMING:
            return  # answered early (an error, or the model answered before reading it all)
        framed = chunk(data) if self.chunked else data
        self._send(framed)

    def end(self) -> None:
        self.request_done = True
        if self.chunked and (self.state is WAITING or self.state is STREAMING):
            self._send(b"0\r\n\r\n")

    def _send(self, data: bytes) -> None:
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.send(data)
        else:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > HIGH_WATER:
                self.client.pause("pending")

    def attach(self, conn: Upstream, reused: bool) -> None:
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
        if self.retried or self.request_body is None or self.state is not WAITING:
            return False
        self.retried = True
        self.conn = None
        data = bytes(self.request_body)
        self.pending = [chunk(data)] if self.chunked and data else [data] if data else []
        if self.chunked and self.request_done:
            self.pending.append(b"0\r\n\r\n")
        self.pending_size = len(data)
        return True
