"""The wire contract: bytes in, frozen dataclasses out.  No I/O, no Kafka.

A prediction message is JSON (UTF-8) or msgpack, chosen by a ``content-type``
Kafka header (see :func:`encoding`), and is versioned by ``"schema": 1``::

    {"schema": 1, "model": "m", "model_version": "v3",
     "events": [{"request_id": "r1", "ts": 1732780800000,
                 "inputs": {"age": 41}, "outputs": {"score": 0.7},
                 "latency_ms": 12.5, "status": 200}]}

A message may instead hold one event, its fields at the top level next to
``schema`` and ``model`` (no ``events`` key).  Labels look the same with
``labels`` holding ``{"request_id", "ts", "target"}``.  Required: ``schema``,
``model`` (a non-empty string) and, per event, ``ts`` (epoch ms, int or
float, finite, >= 0; floats are floored) and ``inputs`` (an object); a label
also needs ``request_id`` and a scalar, non-null ``target``.  Optional per event:
``request_id``, ``outputs``, ``latency_ms``, ``status`` and ``served_model`` (a string: the
model named by the call's path on a multi-model server, when the collector keys the events by
another name).  Unknown keys are
ignored so producers may add fields.  Feature values are not checked here: the
windower counts values it cannot use.

A rejected message raises :class:`DecodeError`, whose ``reason`` is one of the
invalid reasons of ``driftline_events_invalid_total``, checked in this order:
``oversize`` (before parsing), ``bad_json`` (not decodable, or not an object),
``schema_version``, then ``wrong_types`` with the path of the offending field.

Why msgspec: it decodes JSON and msgpack straight into typed structs and
validates the types while doing so, in C, so a valid message costs one pass
and no Python-level checks.  Only a rejected message is decoded a second time,
untyped, to tell the reasons apart and to read the model name for the metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from monitor.errors import InputError
from monitor.wire.encode import (
    CONTENT_TYPE_HEADER,
    DEFAULT_MAX_BYTES,
    JSON,
    MSGPACK,
    MSGPACK_TYPES,
    SCHEMA_VERSION,
    encode_labels,
    encode_predictions,
    encoding,
)

__all__ = [
    "CONTENT_TYPE_HEADER", "DEFAULT_MAX_BYTES", "JSON", "MSGPACK", "MSGPACK_TYPES", "SCHEMA_VERSION",
    "DecodeError", "Label", "LabelBatch", "PredictionBatch", "decode_labels", "decode_predictions",
    "encode_labels", "encode_predictions", "encoding",
]

_T = TypeVar("_T")

#: Largest accepted ts: every integer up to 2**53 is exact as a float (year ~287,000).
MAX_TS_MS = 2**53

Reason = Literal["bad_json", "schema_version", "unknown_model", "wrong_types", "oversize"]


class DecodeError(InputError):
    """A message that breaks the wire contract; ``str(exc)`` is ``"<reason>: <detail>"``."""

    def __init__(self, reason: Reason, detail: str, *, model: str | None = None, events: int = 1) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.model = model
        self.events = events


# -- the typed wire structs (private: msgspec decodes into these) ----------------------------------

_Ts = Annotated[float, msgspec.Meta(ge=0, le=MAX_TS_MS)]
_Model = Annotated[str, msgspec.Meta(min_length=1)]
_Scalar = str | int | float | bool


class _Event(msgspec.Struct, gc=False):  # gc=False: decoded data holds no reference cycles
    ts: _Ts
    inputs: dict[str, Any]
    request_id: str | None = None
    outputs: dict[str, Any] = {}
    latency_ms: float | None = None
    status: int | str | None = None
    served_model: str | None = None


class _Predictions(msgspec.Struct):
    schema: Literal[1]
    model: _Model
    model_version: str | None = None
    events: list[_Event] | msgspec.UnsetType = msgspec.UNSET


class _Label(msgspec.Struct, gc=False):
    request_id: str
    ts: _Ts
    target: _Scalar


class _Labels(msgspec.Struct):
    schema: Literal[1]
    model: _Model
    labels: list[_Label] | msgspec.UnsetType = msgspec.UNSET


_TYPED = (_Predictions, _Event, _Labels, _Label)
# Typed decoders for the fast path; the untyped one (key Any) re-reads only a rejected message, and its
# float_hook turns a JSON number like 1e400 into inf instead of failing, so the reason comes out right.
_DECODERS: dict[str, dict[Any, Any]] = {
    JSON: {Any: msgspec.json.Decoder(float_hook=float)} | {t: msgspec.json.Decoder(t) for t in _TYPED},
    MSGPACK: {Any: msgspec.msgpack.Decoder()} | {t: msgspec.msgpack.Decoder(t) for t in _TYPED},
}


# -- the public results --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PredictionBatch:
    """The events of one message, by column.  Arrays are read-only."""

    model: str
    model_version: str | None
    request_ids: tuple[str | None, ...]
    ts_ms: npt.NDArray[np.int64]
    inputs: tuple[Mapping[str, Any], ...]
    outputs: tuple[Mapping[str, Any], ...]
    latency_ms: npt.NDArray[np.float64]
    status: tuple[int | str | None, ...]
    #: per event, the model the call's path named on a multi-model server (None: not given)
    served_models: tuple[str | None, ...] = ()

    @property
    def n(self) -> int:
        return len(self.request_ids)


@dataclass(frozen=True)
class Label:
    request_id: str
    ts_ms: int
    target: Any


@dataclass(frozen=True)
class LabelBatch:
    model: str
    labels: tuple[Label, ...]


# -- decoding ------------------------------------------------------------------------------------


def decode_predictions(
    data: bytes, *, encoding: str = JSON, max_bytes: int = DEFAULT_MAX_BYTES
) -> PredictionBatch:
    """Decode a prediction message, or raise :class:`DecodeError`."""
    msg = _decode(data, encoding, max_bytes, _Predictions, "events")
    # No "events" key: the message is one event, its fields next to schema and model.
    events = (msg.events if msg.events is not msgspec.UNSET
              else [_decode(data, encoding, max_bytes, _Event, "events")])
    n = len(events)
    ts = np.floor(np.fromiter((e.ts for e in events), np.float64, n)).astype(np.int64)
    latency = np.fromiter((math.nan if e.latency_ms is None else e.latency_ms for e in events), np.float64, n)
    ts.flags.writeable = latency.flags.writeable = False
    return PredictionBatch(
        model=msg.model,
        model_version=msg.model_version,
        request_ids=tuple(e.request_id for e in events),
        ts_ms=ts,
        inputs=tuple(e.inputs for e in events),
        outputs=tuple(e.outputs for e in events),
        latency_ms=latency,
        status=tuple(e.status for e in events),
        served_models=tuple(e.served_model for e in events),
    )


def decode_labels(data: bytes, *, encoding: str = JSON, max_bytes: int = DEFAULT_MAX_BYTES) -> LabelBatch:
    """Decode a label message, or raise :class:`DecodeError`."""
    msg = _decode(data, encoding, max_bytes, _Labels, "labels")
    labels = (msg.labels if msg.labels is not msgspec.UNSET
              else [_decode(data, encoding, max_bytes, _Label, "labels")])
    return LabelBatch(msg.model, tuple(Label(x.request_id, math.floor(x.ts), x.target) for x in labels))


def _decode(data: bytes, encoding: str, max_bytes: int, kind: type[_T], items: str) -> _T:
    decoders = _DECODERS.get(encoding)
    if decoders is None:
        raise ValueError(f"unknown encoding {encoding!r}; expected {JSON!r} or {MSGPACK!r}")
    if len(data) > max_bytes:
        raise DecodeError("oversize", f"message of {len(data)} bytes is over the limit of {max_bytes}")
    try:
        return decoders[kind].decode(data)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:  # well-formed, but not the contract: find out why
        raise _classify(data, decoders[Any], encoding, items, exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _bad_json(encoding, exc) from None


def _bad_json(encoding: str, exc: BaseException) -> DecodeError:
    kind = "msgpack" if encoding == MSGPACK else "JSON"
    return DecodeError("bad_json", f"not valid {kind}: {exc}")


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$\.?(?P<path>.*)`)?$", re.DOTALL)


def _classify(data: bytes, untyped: Any, encoding: str, items: str, exc: Exception) -> DecodeError:
    """Tell why a message the typed decoder refused is wrong, re-reading it untyped."""
    try:
        obj = untyped.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        return _bad_json(encoding, e)
    if not isinstance(obj, dict):
        return DecodeError("bad_json", f"expected an object at the top level, got {type(obj).__name__}")
    model = obj.get("model")
    model = model if isinstance(model, str) and model else None
    listed = obj.get(items)
    count = len(listed) if isinstance(listed, list) else 1
    schema = obj.get("schema")
    if type(schema) is not int or schema != SCHEMA_VERSION:
        got = "missing" if "schema" not in obj else repr(schema)
        return DecodeError("schema_version", f"schema is {got}; supported: {SCHEMA_VERSION}",
                           model=model, events=count)
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    what = match["what"].replace("Expected `float`", "Expected a number").replace("`", "")
    what = what[:1].lower() + what[1:]
    detail = f"{match['path']}: {what}" if match["path"] else what
    return DecodeError("wrong_types", detail, model=model, events=count)
