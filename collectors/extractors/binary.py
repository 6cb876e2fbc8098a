"""The binary tensor extension of the Open Inference Protocol (KServe v2, Triton), and tensor datatypes.

A request or response body in this extension is a JSON header of exactly
``Inference-Header-Content-Length`` bytes, followed by the raw bytes of the
tensors whose ``parameters.binary_data_size`` is set, one after the other, in
the order the header lists them (Triton's ``binary_data.md``; KServe's
``InferRequest``/``InferResponse``).  A tensor's bytes are its values in
row-major order, little-endian: ``BOOL`` one byte each, ``INT8``..``INT64``
and ``UINT8``..``UINT64``, ``FP16``, ``BF16``, ``FP32``, ``FP64`` at their
width, and ``BYTES`` as a 4-byte little-endian length before each element's
bytes.  Responses take this form when the request asked for it
(``parameters.binary_data_output: true``, or ``binary_data: true`` on a
requested output); requests when the client sends it.

:func:`split_body` cuts a body at the header length; :func:`attach` decodes
the tail into each binary tensor's ``data`` (flat, row-major), so that the
JSON extractor reads binary and JSON tensors alike.  :func:`cast` reads
values of a JSON ``data`` array by the tensor's declared datatype.  Every
fault (a length that is not a number or longer than the body, sizes that do
not add up to the tail, a size that is not a whole number of elements, an
unknown datatype, a value that does not fit its datatype) is an
:class:`~collectors.extractors.base.ExtractError` with a one-line reason.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from collectors.extractors.base import ExtractError, describe

# the datatype's struct code (one little-endian element), or None for BOOL, BF16 and BYTES
_FORMATS: dict[str, str] = {
    "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
    "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q",
    "FP16": "e", "FP32": "f", "FP64": "d",
}
DATATYPES: frozenset[str] = frozenset({*_FORMATS, "BOOL", "BF16", "BYTES"})
_INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"INT{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, 2 ** bits - 1) for bits in (8, 16, 32, 64)},
}
_FLOAT_MAX: dict[str, float] = {"FP16": 65504.0, "BF16": 3.3895313892515355e38, "FP32": 3.4028234663852886e38,
                                "FP64": math.inf}


def header_length(value: int | str | bytes | None, body: bytes, what: str) -> int | None:
    """The ``Inference-Header-Content-Length`` of a body, checked against its size (None: absent)."""
    if value is None:
        return None
    if isinstance(value, bytes | str):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not text.strip().isdigit():
            raise ExtractError("unknown_shape", f"the {what}'s Inference-Header-Content-Length "
                                                f"is not a number")
        value = int(text.strip())
    if value < 0 or value > len(body):
        raise ExtractError("mismatch", f"the {what}'s Inference-Header-Content-Length is {value} but "
                                       f"the body has {len(body)} bytes")
    return value


def split_body(body: bytes, length: int | None) -> tuple[bytes, bytes | None]:
    """The JSON header and the binary tail of a body (no tail without a header length)."""
    if length is None:
        return body, None
    return body[:length], body[length:]


def _binary_size(tensor: Any) -> int | None:
    if not isinstance(tensor, dict):
        return None
    parameters = tensor.get("parameters")
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ExtractError("unknown_shape", f"tensor {str(tensor.get('name'))!r} has a binary_data_size "
                                            f"that is not a non-negative integer")
    return size


def attach(document: Any, key: str, tail: bytes, what: str) -> None:
    """Decode ``tail`` into the ``data`` of each tensor of ``document[key]`` that has a
    ``binary_data_size``, in order; the sizes must add up to the tail exactly."""
    tensors = document.get(key) if isinstance(document, dict) else None
    if not isinstance(tensors, list):
        tensors = []
    binary = [(t, s) for t in tensors if (s := _binary_size(t)) is not None]
    total = sum(size for _, size in binary)
    if total != len(tail):
        raise ExtractError("mismatch", f"the {what}'s binary tensors declare {total} bytes but "
                                       f"{len(tail)} follow the JSON header")
    offset = 0
    for tensor, size in binary:
        label = f"{what} tensor {str(tensor.get('name'))!r}"
        if "data" in tensor:
            raise ExtractError("unknown_shape", f"{label} has both 'data' and binary_data_size")
        tensor["data"] = decode(tensor.get("datatype"), tail[offset:offset + size], label)
        offset += size


class Decoded(list[Any]):
    """A tensor's values decoded from its bytes: flat, and already of its datatype's Python type,
    so :func:`cast` passes them through unchecked."""

    __slots__ = ()


def decode(datatype: Any, raw: bytes, label: str) -> Decoded:
    """The values of one tensor's raw bytes, flat, by its datatype."""
    if datatype == "BYTES":
        return Decoded(_strings(raw, label))
    if datatype == "BOOL":
        return Decoded([b != 0 for b in raw])
    if datatype == "BF16":
        halves = _unpack("H", 2, raw, label, datatype)
        widened = struct.pack(f"<{len(halves)}I", *(h << 16 for h in halves))  # a float32 top half
        return Decoded(struct.unpack(f"<{len(halves)}f", widened))
    code = _FORMATS.get(datatype) if isinstance(datatype, str) else None
    if code is None:
        raise ExtractError("unknown_shape", f"{label} has an unknown datatype {_text(datatype)}")
    return Decoded(_unpack(code, struct.calcsize(code), raw, label, datatype))


def _unpack(code: str, width: int, raw: bytes, label: str, datatype: str) -> tuple[Any, ...]:
    if len(raw) % width:
        raise ExtractError("mismatch", f"{label} has {len(raw)} bytes, not a whole number of {datatype} "
                                       f"values of {width} bytes")
    return struct.unpack(f"<{len(raw) // width}{code}", raw)


def _strings(raw: bytes, label: str) -> list[str]:
    """BYTES elements: each a 4-byte little-endian length and that many bytes, read as UTF-8
    (bytes that are not UTF-8 become U+FFFD, so that the row is kept)."""
    out: list[str] = []
    pos, size = 0, len(raw)
    while pos < size:
        if pos + 4 > size:
            raise ExtractError("mismatch", f"{label} ends inside the length of a BYTES element")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > size:
            raise ExtractError("mismatch", f"{label} has a BYTES element of {n} bytes past its end")
        out.append(raw[pos:pos + n].decode("utf-8", "replace"))
        pos += n
    return out


def _text(datatype: Any) -> str:
    return repr(datatype[:20]) if isinstance(datatype, str) else describe(datatype)


def cast(datatype: Any, values: list[Any], label: str) -> list[Any]:
    """``values`` (flat) as the datatype reads them: FP* floats, INT*/UINT* ints (an integral
    float allowed), BOOL booleans (0 and 1 allowed), BYTES strings; values :func:`decode` made are
    that already.  A value of another type,
    out of the datatype's range, or an unknown datatype is an ``ExtractError``."""
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ExtractError("unknown_shape", f"{label} has an unknown datatype {_text(datatype)}")
    if type(values) is Decoded:  # decoded from bytes by this very datatype
        return values
    kinds = set(map(type, values))
    if type(None) in kinds:
        # JSON null is not in the protocol, but a server that accepts it (as missing) answered:
        # keep those rows, with the value missing, rather than lose the whole call
        present = iter(cast(datatype, [v for v in values if v is not None], label))
        return [None if v is None else next(present) for v in values]
    if datatype.startswith(("FP", "BF")):
        if not kinds <= {float, int}:
            raise _mismatch(label, datatype, kinds)
        try:
            out = values if kinds <= {float} else [float(v) for v in values]
        except OverflowError:
            raise ExtractError("mismatch", f"{label} has a value beyond the range of {datatype}") from None
        limit = _FLOAT_MAX[datatype]
        if (out and limit != math.inf and (max(out) > limit or min(out) < -limit)  # cheap, then exact:
                and any(abs(v) > limit for v in out if math.isfinite(v))):  # infinities are in range
            raise ExtractError("mismatch", f"{label} has a value beyond the range of {datatype}")
        return out
    if datatype == "BYTES":
        if not kinds <= {str}:
            raise _mismatch(label, datatype, kinds)
        return values
    if datatype == "BOOL":
        if kinds <= {bool}:
            return values
        if kinds <= {bool, int} and all(v in (0, 1) for v in values):
            return [bool(v) for v in values]
        raise _mismatch(label, datatype, kinds)
    if not kinds <= {int, float}:
        raise _mismatch(label, datatype, kinds)
    if float in kinds:
        if not all(isinstance(v, int) or v.is_integer() for v in values):
            raise ExtractError("mismatch", f"{label} is {datatype} but has a value that is not an integer")
        values = [int(v) for v in values]
    low, high = _INT_RANGES[datatype]
    if values and (min(values) < low or max(values) > high):
        raise ExtractError("mismatch", f"{label} has a value beyond the range of {datatype}")
    return values


def _mismatch(label: str, datatype: str, kinds: set[type]) -> ExtractError:
    found = sorted(_KIND_NAMES.get(k, k.__name__) for k in kinds)
    return ExtractError("mismatch", f"{label} is {datatype} but holds {', '.join(found)} values")


_KIND_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null",
               list: "array", dict: "object"}
