"""Open Inference Protocol v2 (KServe v2, Triton, MLServer): JSON tensors and binary tensors.

``POST /v2/models/<name>[/versions/<v>]/infer`` with
``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``; the response is
``{"outputs": [{"name", "shape", "datatype", "data"}, ...]}``.

Each tensor is read by name.  Its first dimension is the batch size N, the
same for every input and every output tensor (else ``mismatch``):

* shape ``[N]`` or ``[N, 1]``: one feature per instance, named as the tensor;
* shape ``[N, k]``: features ``<name>_0 .. <name>_{k-1}``; with the
  ``feature_names`` option and a request of a single input tensor, the k
  columns of that tensor take those names instead (k names, else ``mismatch``);
* shape ``[N, d1, d2, ...]``: one feature, the instance's sub-tensor as nested
  JSON text (see the value rules in :mod:`collectors.extractors.base`);
* shape ``[]``: one instance with one value.

``data`` may be flat (row-major) or nested; its number of values must be the
product of the shape (else ``mismatch``).  One ``-1`` dimension, which some
clients send, is inferred from the data.  Values are read by the tensor's
declared ``datatype`` (:func:`~collectors.extractors.binary.cast`): ``FP16``,
``BF16``, ``FP32``, ``FP64`` give floats (``3`` is ``3.0``), ``INT*`` and
``UINT*`` ints, ``BOOL`` booleans, ``BYTES`` strings; a value that does not
fit is a ``mismatch``, an unknown datatype ``unknown_shape``.  Binary tensors
(the binary tensor extension, :mod:`collectors.extractors.binary`) are
decoded into ``data`` before this extractor runs; a tensor without ``data``
(binary data but no ``Inference-Header-Content-Length``) is
``unknown_shape``, as is a tensor with no values per instance.
A response without ``outputs`` (an error object, no body) leaves the outputs
empty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from collectors.events import Scalar
from collectors.extractors.base import ExtractError, Extraction, describe, pair, route_path, scalar
from collectors.extractors.binary import Decoded, cast

ROUTE = re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")
MAX_RANK = 32


def _flatten(data: Any) -> list[Any]:
    """Row-major leaves of nested lists, without recursion; a flat list (binary tensors, most
    JSON tensors) is returned as it is, after one pass in C over its values' types."""
    if not isinstance(data, list):
        return [data]
    if type(data) is Decoded or list not in set(map(type, data)):
        return data
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _nest(flat: list[Any], dims: Sequence[int]) -> list[Any]:
    """``flat`` reshaped to ``dims`` (row-major)."""
    if len(dims) <= 1:
        return flat
    step = math.prod(dims[1:])
    return [_nest(flat[i * step:(i + 1) * step], dims[1:]) for i in range(dims[0])]


def _shape(tensor: dict[str, Any], label: str, size: int) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ExtractError("unknown_shape", f"{label} needs 'shape', an array of integers, "
                                            f"not {describe(shape)}")
    if len(shape) > MAX_RANK:
        raise ExtractError("unknown_shape", f"{label} has {len(shape)} dimensions, more than {MAX_RANK}")
    if any(d < -1 for d in shape) or shape.count(-1) > 1:
        raise ExtractError("unknown_shape", f"{label} has an invalid shape {shape}")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ExtractError("mismatch", f"{label} has shape {shape} but {size} data values")
        shape = [size // known if d == -1 else d for d in shape]
    if math.prod(shape) != size:
        raise ExtractError("mismatch", f"{label} has shape {shape} ({math.prod(shape)} values) "
                                       f"but {size} data values")
    return shape


def tensor_rows(tensor: Any, role: str,
                feature_names: Sequence[str] | None = None) -> list[dict[str, Scalar]]:
    """The per-instance features of one tensor (``role`` is "input" or "output")."""
    if not isinstance(tensor, dict):
        raise ExtractError("unknown_shape", f"an {role} tensor must be an object, not {describe(tensor)}")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise ExtractError("unknown_shape", f"an {role} tensor needs 'name', a non-empty string")
    label = f"{role} tensor {name!r}"
    if "data" not in tensor:
        raise ExtractError("unknown_shape", f"{label} has no 'data' (binary tensor data needs the "
                                            f"Inference-Header-Content-Length header)")
    flat = cast(tensor.get("datatype"), _flatten(tensor["data"]), label)
    shape = _shape(tensor, label, len(flat))
    if not shape:
        shape = [1]
    n, inner = shape[0], shape[1:]
    per = math.prod(inner)
    if per == 0 and n != 0:
        raise ExtractError("unknown_shape", f"{label} has shape {shape}: no values per instance")
    if n == 0:
        return []
    k = inner[0] if len(inner) == 1 else 1
    if feature_names is not None:
        if len(feature_names) != k:
            raise ExtractError("mismatch", f"{label} has {k} columns but feature_names has "
                                           f"{len(feature_names)} names")
        names: Sequence[str] = feature_names
    else:
        names = _column_names(name, k)
    if len(inner) > 1:
        return [{names[0]: scalar(_nest(flat[i * per:(i + 1) * per], inner))} for i in range(n)]
    # cast() has made every value a str, int, float or bool: kept as they are
    if k == 1:
        only = names[0]
        return [{only: v} for v in flat]
    return [dict(zip(names, flat[i * k:(i + 1) * k], strict=True)) for i in range(n)]


@lru_cache(maxsize=256)
def _column_names(name: str, k: int) -> tuple[str, ...]:
    """``(name,)`` for one column, else ``name_0 .. name_{k-1}``."""
    return (name,) if k == 1 else tuple(f"{name}_{j}" for j in range(k))


def tensors_rows(tensors: list[Any], role: str, feature_names: Sequence[str] | None = None,
                 ) -> list[dict[str, Scalar]]:
    """Per-instance features of a list of tensors that share the batch size."""
    rows: list[dict[str, Scalar]] | None = None
    first = ""
    for tensor in tensors:
        these = tensor_rows(tensor, role, feature_names)
        name = str(tensor.get("name"))
        if rows is None:
            rows, first = these, name
        elif len(these) != len(rows):
            raise ExtractError("mismatch", f"{role} tensors disagree on the batch size: {first!r} has "
                                           f"{len(rows)}, {name!r} has {len(these)}")
        else:
            for row, more in zip(rows, these, strict=True):
                row.update(more)
    return rows or []


class OipV2:
    """Extractor of Open Inference Protocol v2 calls (REST, JSON tensors)."""

    name: str = "oip_v2"

    def __init__(self, feature_names: Sequence[str] | None = None) -> None:
        self.feature_names = feature_names

    def matches(self, path: str, request: Any) -> bool:
        return ROUTE.search(route_path(path)) is not None and isinstance(request, dict)

    def extract(self, request: Any, response: Any) -> Extraction:
        if not isinstance(request, dict):
            raise ExtractError("unknown_shape", f"an OIP v2 request must be a JSON object, "
                                                f"not {describe(request)}")
        tensors = request.get("inputs")
        if not isinstance(tensors, list) or not tensors:
            raise ExtractError("unknown_shape", f"an OIP v2 request needs 'inputs', a non-empty array of "
                                                f"tensors; got {describe(request)}")
        if self.feature_names is not None and len(tensors) != 1:
            raise ExtractError("mismatch", f"feature_names name the columns of one input tensor but the "
                                           f"request has {len(tensors)}")
        inputs = tensors_rows(tensors, "input", self.feature_names)
        outputs = None
        produced = response.get("outputs") if isinstance(response, dict) else None
        if produced is not None:
            if not isinstance(produced, list):
                raise ExtractError("unknown_shape", f"'outputs' must be an array of tensors, "
                                                    f"not {describe(produced)}")
            if produced:
                outputs = tensors_rows(produced, "output")
                if len(outputs) != len(inputs):
                    raise ExtractError("mismatch", f"the request has {len(inputs)} instances but the output "
                                                   f"tensors have {len(outputs)}")
        return pair(inputs, outputs)
