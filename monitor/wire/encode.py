"""The wire contract's producer side: encoding messages, without numpy.

Producers (the sidecar, the SDK, tools) only encode; importing this module
costs msgspec and nothing else, which keeps the sidecar's memory small.
Decoding and validation live in :mod:`monitor.wire.decode`, which re-exports
everything here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 1_048_576
CONTENT_TYPE_HEADER = "content-type"
MSGPACK = "application/msgpack"
JSON = "application/json"
MSGPACK_TYPES = frozenset({MSGPACK, "application/x-msgpack"})


def _enc_hook(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars, without importing numpy
    if callable(item) and type(obj).__module__ == "numpy":
        return item()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_ENCODERS: dict[str, msgspec.json.Encoder | msgspec.msgpack.Encoder] = {
    JSON: msgspec.json.Encoder(enc_hook=_enc_hook),
    MSGPACK: msgspec.msgpack.Encoder(enc_hook=_enc_hook),
}


def encoding(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """MSGPACK when a ``content-type`` header says msgpack, else JSON (the default)."""
    for name, value in headers or ():
        if name.lower() == CONTENT_TYPE_HEADER:
            media_type = (value or b"").decode("latin-1").split(";")[0].strip().lower()
            return MSGPACK if media_type in MSGPACK_TYPES else JSON
    return JSON


def encode_predictions(model: str, events: Sequence[Mapping[str, Any]], *, model_version: str | None = None,
                       encoding: str = JSON) -> bytes:
    """One batch message holding ``events`` (mappings with the wire field names)."""
    msg: dict[str, Any] = {"schema": SCHEMA_VERSION, "model": model}
    if model_version is not None:
        msg["model_version"] = model_version
    msg["events"] = [dict(e) for e in events]
    return _ENCODERS[encoding].encode(msg)


#: one event encoded alone (:func:`encode_event`), to be joined into a message as it is
EncodedEvent = msgspec.Raw


def encode_event(event: Mapping[str, Any], *, encoding: str = JSON) -> EncodedEvent:
    """One event (a mapping with the wire field names), encoded alone: a producer that encodes its
    events one by one (short calls, each letting other threads run) joins them with
    :func:`encode_encoded_predictions` without encoding them again."""
    return msgspec.Raw(_ENCODERS[encoding].encode(event))


def encode_encoded_predictions(model: str, events: Sequence[EncodedEvent], *,
                               model_version: str | None = None, encoding: str = JSON) -> bytes:
    """The batch message of :func:`encode_predictions`, from events :func:`encode_event` encoded
    with the same ``encoding``: byte for byte the same message."""
    msg: dict[str, Any] = {"schema": SCHEMA_VERSION, "model": model}
    if model_version is not None:
        msg["model_version"] = model_version
    msg["events"] = events if isinstance(events, list) else list(events)
    return _ENCODERS[encoding].encode(msg)


def envelope_size(model: str, *, model_version: str | None = None, encoding: str = JSON) -> int:
    """The bytes of a message of :func:`encode_encoded_predictions` besides its events (5 bytes
    for a msgpack array's length included): each event adds its own length and one separator."""
    return len(encode_encoded_predictions(model, [], model_version=model_version, encoding=encoding)) + 5


def encode_labels(model: str, labels: Sequence[Mapping[str, Any]], *, encoding: str = JSON) -> bytes:
    """One batch message holding ``labels`` (mappings of request_id, ts and target)."""
    msg = {"schema": SCHEMA_VERSION, "model": model, "labels": [dict(x) for x in labels]}
    return _ENCODERS[encoding].encode(msg)
