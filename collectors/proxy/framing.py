"""HTTP/1.1 framing that both sides of the proxy share: hop-by-hop fields, header blocks, chunks."""

from __future__ import annotations

import os

from collectors import defaults

REQUEST_ID = defaults.REQUEST_ID_HEADER.encode()  # as the proxy spells it when it adds it
REQUEST_ID_LOWER = REQUEST_ID.lower()
SKIP_LOWER = defaults.SKIP_HEADER.lower().encode()
HEADER_LENGTH_LOWER = defaults.HEADER_LENGTH_HEADER.lower().encode()  # OIP binary tensors
# RFC 9110 7.6.1 hop-by-hop fields, and the framing the proxy sets itself
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
                        b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
                        b"content-length"})
CRLF = b"\r\n"


def listed(value: bytes) -> set[bytes]:
    """The tokens of a comma-separated field value (``Connection: close, x-a``), lower case."""
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def header_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % pair for pair in headers)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def new_request_id() -> str:
    return os.urandom(16).hex()
