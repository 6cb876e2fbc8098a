"""What every payload extractor shares: the error, the protocol, and the value rules.

An extractor turns one parsed request/response pair of a model server into
:class:`~collectors.events.Instance` rows, one per instance of the batch.  It
is pure: parsed JSON in (``dict``/``list``/``str``/``int``/``float``/``bool``/
``None``, as ``msgspec.json.decode`` returns it), frozen dataclasses out.

Rules common to all protocols, in one place so they cannot drift apart:

* **Values** (:func:`scalar`).  A feature or output value is kept as it is
  when it is a JSON scalar (str, int, float, bool, null; a subclass as its
  base type).  A nested value (a list or object inside one feature) becomes
  its compact JSON text with sorted keys, so equal values always give equal
  text and the monitor can still count it as a category.  Values that only
  the SDK is handed (Python objects, never decoded JSON): a NumPy scalar is
  its Python scalar and an array its nested lists; a date or time (and
  ``pandas.Timestamp``) is its ISO 8601 text; pandas' ``NA``/``NaT`` is null.
  NumPy and pandas are recognised by duck typing, never imported.
* **Rows.**  An instance given as an object has its keys as feature names; as
  a list, the names come from ``feature_names`` when given (which must then
  have one name per value, else ``mismatch``) or are ``f0, f1, ...``; as a
  bare scalar, it is one feature, ``feature_names[0]`` or ``f0``.
* **Predictions.**  A scalar prediction is the output ``prediction``; a list
  gives ``prediction_0, prediction_1, ...``; an object gives its keys.  These
  positional outputs take the names of ``output_names`` when given
  (:func:`name_outputs`: one name per value, else ``mismatch``); outputs that
  come with names (an object's keys, OIP v2 tensors) keep theirs.
* **Pairing.**  When the response holds a list of predictions it must have one
  per request instance (else ``mismatch``) and the i-th prediction belongs to
  the i-th instance.  An object whose values are all lists of exactly the
  batch size is read as columns (one row per instance).  Any other single
  value is the prediction of a one-instance request.  A response without
  predictions (no body, an error object) gives instances with empty outputs.

Errors are :class:`ExtractError`, a :class:`monitor.errors.InputError` whose
``str`` is one line, ``"<reason>: <detail>"``.  Details name keys, tensors,
paths and counts, never feature values, so they are safe to log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, Protocol, cast
from urllib.parse import unquote, urlsplit

import msgspec

from collectors.events import Instance, Scalar
from monitor.errors import InputError

Reason = Literal["not_json", "unknown_shape", "mismatch"]
REASONS: frozenset[str] = frozenset({"not_json", "unknown_shape", "mismatch"})

Extraction = tuple[Instance, ...]

PREDICTION = "prediction"
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
_KEY_TYPES = frozenset({str})
_MAX_DETAIL = 300


class ExtractError(InputError):
    """A payload the extractors cannot turn into instances.

    ``reason`` is ``not_json`` (a body is not JSON), ``unknown_shape`` (JSON of
    a shape the protocol does not define, or a bad generic spec) or
    ``mismatch`` (counts that disagree: instances vs predictions, tensor
    batch sizes, shape vs data, feature names vs values).
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        text = " ".join(detail.split())
        if len(text) > _MAX_DETAIL:
            text = text[: _MAX_DETAIL - 3] + "..."
        super().__init__(f"{reason}: {text}")
        self.reason: Reason = reason
        self.detail = text
        # the request's rows when the request could be read and only its answer could not
        # (set by collectors.extractors.select.extract): the rows lost are known and counted
        self.rows: int | None = None


class Extractor(Protocol):
    """One wire protocol of a model server."""

    name: str

    def matches(self, path: str, request: Any) -> bool:
        """Cheap test: is this call (URL path, parsed request body) of this protocol?"""
        ...

    def extract(self, request: Any, response: Any) -> Extraction:
        """The instances of a parsed request, paired with the parsed response's outputs.

        ``response`` is ``None`` when there was no response body.
        """
        ...


def route_path(path: str) -> str:
    """The path part of a request target, percent-decoded, without query or trailing slash.

    ``"http://h/v1/models/m%3Apredict?x=1"`` and ``"/v1/models/m:predict/"``
    both give ``"/v1/models/m:predict"``.
    """
    target = urlsplit(path).path if "://" in path else path.split("?", 1)[0].split("#", 1)[0]
    target = unquote(target)
    return target.rstrip("/") or "/"


def numpy_like(value: Any) -> bool:
    """A NumPy value (or a pandas Series): converted with ``tolist()``, without importing NumPy."""
    module = type(value).__module__
    return (module == "numpy" or module.startswith(("numpy.", "pandas."))) and hasattr(value, "tolist")


def _missing(value: Any) -> bool:
    """pandas' missing markers ``NA`` and ``NaT``, which are no JSON value: null."""
    return type(value).__name__ in ("NAType", "NaTType") and type(value).__module__.startswith("pandas.")


def _enc_hook(value: Any) -> Any:
    """The same rules for what sits inside a nested value."""
    if numpy_like(value):
        return value.tolist()
    if _missing(value):
        return None
    if hasattr(value, "isoformat"):  # datetime subclasses msgspec does not take, e.g. pandas.Timestamp
        return value.isoformat()
    raise NotImplementedError(f"cannot write a {type(value).__name__} as JSON")


def scalar(value: Any) -> Scalar:
    """A JSON scalar as it is; anything nested as its compact, key-sorted JSON text (see the rules)."""
    if type(value) in _SCALAR_TYPES:  # the exact types msgspec decodes to: the hot path
        return cast(Scalar, value)
    if numpy_like(value):
        value = value.tolist()  # NumPy scalar -> Python scalar, array -> nested lists
        if type(value) in _SCALAR_TYPES:
            return cast(Scalar, value)
    if isinstance(value, int):  # a bool is never a subclass: bool itself was taken above
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if _missing(value):
        return None
    if hasattr(value, "isoformat"):  # datetime, date, time (and pandas.Timestamp): ISO 8601 text
        return str(value.isoformat())
    try:
        return msgspec.json.encode(value, enc_hook=_enc_hook, order="sorted").decode()
    except (msgspec.MsgspecError, RecursionError, TypeError, NotImplementedError) as exc:
        detail = f"a value cannot be written as JSON text ({type(exc).__name__})"
        raise ExtractError("unknown_shape", detail) from None


def describe(value: Any) -> str:
    """The JSON type of a value, for messages (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:5])
        more = ", ..." if len(value) > 5 else ""
        return f"an object with keys [{keys}{more}]" if value else "an empty object"
    return type(value).__name__


def positional_names(n: int, feature_names: Sequence[str] | None, prefix: str, where: str) -> Sequence[str]:
    """``feature_names`` (checked to have ``n`` names) or ``prefix0, prefix1, ...``."""
    if feature_names is None:
        return _default_names(n, prefix) if n <= 1024 else [f"{prefix}{i}" for i in range(n)]
    if len(feature_names) != n:
        raise ExtractError("mismatch", f"{where} has {n} values but feature_names has "
                                       f"{len(feature_names)} names")
    return feature_names


@lru_cache(maxsize=256)
def _default_names(n: int, prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(n))


def object_fields(row: Mapping[Any, Any]) -> dict[str, Scalar]:
    """The fields of an object (a mapping): its keys as text, its values by :func:`scalar`."""
    # the hot path, checked in C: string keys and scalar values are kept as they are
    if _KEY_TYPES.issuperset(map(type, row)) and _SCALAR_TYPES.issuperset(map(type, row.values())):
        return dict(row)
    return {str(k): scalar(v) for k, v in row.items()}


def row_features(row: Any, feature_names: Sequence[str] | None, where: str) -> dict[str, Scalar]:
    """The features of one instance: an object's keys, or positional names for a list or a scalar."""
    if isinstance(row, dict):
        return object_fields(row)
    if isinstance(row, list):
        names = positional_names(len(row), feature_names, "f", where)
        if len(names) == len(row) and _SCALAR_TYPES.issuperset(map(type, row)):
            return dict(zip(names, row, strict=True))
        return {name: scalar(v) for name, v in zip(names, row, strict=True)}
    names = positional_names(1, feature_names, "f", where)
    return {names[0]: scalar(row)}


def prediction_outputs(value: Any) -> dict[str, Scalar]:
    """The outputs of one prediction: ``prediction``, ``prediction_<i>`` or an object's keys."""
    if isinstance(value, dict):
        return object_fields(value)
    if isinstance(value, list):
        return {f"{PREDICTION}_{i}": scalar(v) for i, v in enumerate(value)}
    return {PREDICTION: scalar(value)}


def name_outputs(instances: Extraction, output_names: Sequence[str]) -> Extraction:
    """The instances with their positional outputs (``prediction``, ``prediction_<i>``)
    renamed by ``output_names``: ``[a]`` names a scalar prediction ``a``; ``[a, b]`` names
    a two-value prediction ``a`` and ``b``.  A count that does not fit is a ``mismatch``;
    named outputs (an object's keys, OIP v2 tensors) are left as they are."""
    renamed = []
    for instance in instances:
        outputs = instance.outputs
        if PREDICTION in outputs:
            positional = [PREDICTION]
        else:
            positional = [f"{PREDICTION}_{i}" for i in range(len(outputs))
                          if f"{PREDICTION}_{i}" in outputs]
        if not positional:
            renamed.append(instance)
            continue
        if len(positional) != len(output_names):
            raise ExtractError("mismatch", f"a prediction has {len(positional)} values but output_names "
                                           f"has {len(output_names)} names")
        names = dict(zip(positional, output_names, strict=True))
        renamed.append(Instance(inputs=instance.inputs,
                                outputs={names.get(key, key): value for key, value in outputs.items()}))
    return tuple(renamed)


def columns_to_rows(columns: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """TF-serving "columnar" input: ``{"a": [1, 2], "b": [3, 4]}`` is two rows.

    Every value a list of the same length N gives N rows; lists of different
    lengths are a ``mismatch``; an object holding any non-list value is one
    row as it stands.
    """
    if not columns:
        raise ExtractError("unknown_shape", f"{where} is an empty object")
    values = list(columns.values())
    if not all(isinstance(v, list) for v in values):
        return [dict(columns)]
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        detail = ", ".join(f"{k!r}: {len(v)}" for k, v in list(columns.items())[:5])
        raise ExtractError("mismatch", f"the columns of {where} differ in length ({detail})")
    n = lengths.pop()
    return [{str(k): v[i] for k, v in columns.items()} for i in range(n)]


def split_predictions(predictions: Any, n: int, where: str) -> list[Any]:
    """One raw prediction per instance of an ``n``-instance request (see the module rules)."""
    if isinstance(predictions, list):
        if len(predictions) != n:
            raise ExtractError("mismatch", f"the request has {n} instances but {where} has "
                                           f"{len(predictions)}")
        return predictions
    if (isinstance(predictions, dict) and predictions and n >= 1
            and all(isinstance(v, list) and len(v) == n for v in predictions.values())):
        return [{k: v[i] for k, v in predictions.items()} for i in range(n)]
    if n == 1:
        return [predictions]
    raise ExtractError("mismatch", f"the request has {n} instances but {where} is {describe(predictions)}")


def pair(inputs: Sequence[Mapping[str, Scalar]],
         outputs: Sequence[Mapping[str, Scalar]] | None) -> Extraction:
    """Instances from per-instance inputs and (already counted) per-instance outputs."""
    if outputs is None:
        return tuple(Instance(inputs=x) for x in inputs)
    if len(outputs) != len(inputs):
        raise ExtractError("mismatch", f"the request has {len(inputs)} instances but the response has "
                                       f"{len(outputs)} predictions")
    return tuple(Instance(inputs=x, outputs=y) for x, y in zip(inputs, outputs, strict=True))
