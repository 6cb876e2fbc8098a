"""The model's answer, parsed as it comes and passed on to the caller.

A small parser of our own, because httptools' response parser cannot be told
that an answer to ``HEAD`` has no body.  The head is checked strictly (a status
line, well-formed fields, one Content-Length); the body is framed as the model
framed it (fixed length, chunked, or until the connection closes), and passed on
to the caller framed for the caller (chunked for an HTTP/1.1 caller when the
model's answer has no length; close-delimited for an HTTP/1.0 one).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from collectors.proxy.exchange import STREAMING
from collectors.proxy.framing import (
    CRLF,
    HOP_BY_HOP,
    REQUEST_ID,
    REQUEST_ID_LOWER,
    chunk,
    header_block,
    listed,
)

if TYPE_CHECKING:
    from collectors.proxy.exchange import Exchange
    from collectors.proxy.pool import Upstream

log = logging.getLogger("driftline.collector")

MAX_HEAD = 64 * 1024  # bytes of a response's status line and headers
_HEX = b"0123456789abcdefABCDEF"
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")


class BadResponse(Exception):
    """An answer that is not HTTP/1.1: the caller gets a 502 (or a cut connection)."""


class Response:
    """The model's answer to one exchange, parsed as it comes and passed on to the caller."""

    HEAD, FIXED, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE, DONE = range(8)

    # the framing of the body, from the fields of the head (set by _fields, for each head)
    length: int | None  # Content-Length
    encoded: bool  # any Transfer-Encoding field
    codings: list[bytes]  # transfer codings, in order

    def __init__(self, conn: Upstream, exchange: Exchange) -> None:
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
                    if size - pos > MAX_HEAD:
                        raise BadResponse(f"a head of over {MAX_HEAD} bytes")
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
                end = data.find(CRLF, pos)
                if end < 0:
                    if size - pos > 4096:
                        raise BadResponse("a chunk line of over 4096 bytes")
                    self.buffer = data[pos:]
                    return
                line = data[pos:end]
                pos = end + 2
                if state == self.CHUNK_END:
                    if line:
                        raise BadResponse("no CRLF after a chunk")
                    self.state = self.CHUNK_SIZE
                elif state == self.TRAILERS:
                    if not line:
                        self.state = self.DONE  # trailers are not passed on
                else:
                    digits = line.split(b";", 1)[0].rstrip(b" \t")
                    if not digits or len(digits) > 16 or digits.lstrip(_HEX):
                        raise BadResponse(f"a chunk size of {line[:40]!r}")
                    self.remaining = int(digits, 16)
                    self.state = self.CHUNK_DATA if self.remaining else self.TRAILERS
        if self.state == self.DONE:
            # bytes beyond the answer: the connection can't be trusted with another request
            self._finish(reusable=self.keep_alive and pos >= size)

    # -- the head -------------------------------------------------------------------------------
    def _head(self, block: bytes) -> None:
        """One head: an interim answer is passed on as it is; the final one, framed for the
        caller, sets how its body is read."""
        lines = block.split(CRLF)
        parts = lines[0].split(b" ", 2)  # the status line
        if len(parts) < 2 or parts[0] not in _VERSIONS or len(parts[1]) != 3 or not parts[1].isdigit():
            raise BadResponse(f"a status line of {lines[0][:60]!r}")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else b""
        out = self._fields(lines, parts[0] == b"HTTP/1.1")
        exchange = self.exchange
        if 100 <= status < 200:
            if status == 101:
                raise BadResponse("101 Switching Protocols, though no upgrade was asked for")
            if exchange.version != "1.0":  # RFC 9110 15.2: none to an HTTP/1.0 client
                exchange.client.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, header_block(out)))
            return  # an interim answer (100 Continue, 103 Early Hints); the final one follows
        exchange.status = status
        exchange.answer_fields(out)
        # how the body is delimited
        if exchange.method == b"HEAD" or status in (204, 304):
            body = "none"
        elif self.encoded:
            body = "chunked" if self.codings and self.codings[-1].lower() == b"chunked" else "close"
        else:
            body = "fixed" if self.length is not None else "close"
        self._pass_head(status, reason, out, body)
        if body == "none":
            self.state = self.DONE
        elif body == "fixed":
            self.remaining = self.length or 0
            self.state = self.FIXED if self.remaining else self.DONE
        elif body == "chunked":
            self.state = self.CHUNK_SIZE
        else:
            self.keep_alive = False
            self.state = self.UNTIL_CLOSE

    def _fields(self, lines: list[bytes], http11: bool) -> list[tuple[bytes, bytes]]:
        """The head's fields: the end-to-end ones (what the caller gets, in order), while the
        framing (length, codings) and whether the connection is kept are noted here."""
        out: list[tuple[bytes, bytes]] = []
        length: int | None = None
        self.encoded, self.codings = False, []
        close = keep_alive_token = False
        tokens: set[bytes] | None = None  # named by Connection: not passed on either
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name[-1:] in b" \t" or line[:1] in b" \t":
                raise BadResponse(f"a header line of {line[:60]!r}")
            value = value.strip()
            low = name.lower()
            if low not in HOP_BY_HOP:
                if low != REQUEST_ID_LOWER:
                    out.append((name, value))
                continue
            if low == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise BadResponse(f"a Content-Length of {value[:40]!r}")
                length = int(value)
            elif low == b"transfer-encoding":
                self.encoded = True
                self.codings += [c.strip() for c in value.split(b",") if c.strip()]
            elif low == b"connection":
                named = listed(value)
                close = close or b"close" in named
                keep_alive_token = keep_alive_token or b"keep-alive" in named
                tokens = named if tokens is None else tokens | named
        if tokens:
            out = [(n, v) for n, v in out if n.lower() not in tokens]
        self.length = length
        self.keep_alive = not close and (http11 or keep_alive_token)
        return out

    def _pass_head(self, status: int, reason: bytes, out: list[tuple[bytes, bytes]], body: str) -> None:
        """Write the final head to the caller, framed for it, and start keeping the body."""
        exchange = self.exchange
        length = self.length
        limit = exchange.client.proxy.settings.max_payload_bytes
        out.append((REQUEST_ID, exchange.request_id.encode("latin-1")))
        if body == "none":
            if length is not None and status not in (204, 304):
                out.append((b"Content-Length", b"%d" % length))
            exchange.response_body = bytearray()
        elif body == "fixed":
            assert length is not None
            out.append((b"Content-Length", b"%d" % length))
            exchange.response_body = bytearray() if length <= limit else None
        else:
            exchange.response_body = bytearray()
            if exchange.version == "1.1":
                # codings other than chunked (gzip, ...) stay; the proxy does the chunking
                codings = self.codings[:-1] if body == "chunked" else self.codings
                kept = [c for c in codings if c.lower() != b"chunked"]
                out.append((b"Transfer-Encoding", b", ".join([*kept, b"chunked"])))
                exchange.down_chunked = True
            else:
                exchange.close_after = True
        if exchange.close_after:
            out.append((b"Connection", b"close"))
        elif exchange.version == "1.0":
            out.append((b"Connection", b"keep-alive"))
        exchange.client.write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, header_block(out)))
        exchange.state = STREAMING

    # -- the body -------------------------------------------------------------------------------
    def _body(self, data: bytes) -> None:
        if not data:
            return
        exchange = self.exchange
        answer = exchange.response_body
        if answer is not None:
            if len(answer) + len(data) <= exchange.client.proxy.settings.max_payload_bytes:
                answer += data
            else:
                exchange.response_body = None
        exchange.client.write(chunk(data) if exchange.down_chunked else data)

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
