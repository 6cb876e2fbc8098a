"""KServe v1 (the TensorFlow Serving REST "predict" API): ``POST /v1/models/<name>:predict``.

Request ``{"instances": [...]}``, or ``{"inputs": ...}``, the v1 alias.  An
instance is read the way kserve's ``get_predict_input`` reads it (an object,
or a list of objects, is a pandas DataFrame):

* an object whose values are lists is columns, one row per position:
  ``{"age": [41, 30], "income": [52000.5, 48000.0]}`` is two rows (lists of
  different lengths are a ``mismatch``; a scalar beside them is repeated in
  each row, as pandas broadcasts it);
* an object whose values are all objects is columns by index, one row per
  index key (in order of first appearance; a column without the key gives
  null): ``{"a": {"0": 1.5}, "b": {"0": 2.0}}`` is one row;
* a list of objects is records, one row each (a key missing from a record
  gives null);
* any other object is one row, its keys the features (a nested value, such
  as TF-serving's ``{"b64": ...}``, as JSON text);
* a list of values is one row (features named by the ``feature_names``
  option, else ``f0, f1, ...``), a bare scalar one feature, ``f0``;
* ``inputs`` may also be TF-serving's columnar form, an object of equal-length
  lists ``{"a": [1, 2], "b": [3, 4]}``, one row per position.

Response ``{"predictions": [...]}``, one prediction per row: a scalar is
the output ``prediction``, a list gives ``prediction_0, ...``, an object its
keys.  A response without ``predictions`` leaves the outputs empty.  Any path
ending in ``:predict`` is taken as v1 (Vertex AI speaks the same format).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collectors.extractors.base import (
    ExtractError,
    Extraction,
    columns_to_rows,
    describe,
    object_fields,
    pair,
    prediction_outputs,
    route_path,
    row_features,
    scalar,
    split_predictions,
)


def request_rows(request: Any, protocol: str) -> list[Any]:
    """The raw instances of a TF-serving style request (``instances`` or ``inputs``)."""
    if not isinstance(request, dict):
        raise ExtractError("unknown_shape", f"a {protocol} request must be a JSON object, "
                                            f"not {describe(request)}")
    if "instances" in request:
        rows = request["instances"]
        if not isinstance(rows, list):
            raise ExtractError("unknown_shape", f"'instances' must be an array, not {describe(rows)}")
        return rows
    if "inputs" in request:
        rows = request["inputs"]
        if isinstance(rows, list):
            return rows
        if isinstance(rows, dict):
            return columns_to_rows(rows, "'inputs'")
        raise ExtractError("unknown_shape", f"'inputs' must be an array or an object, not {describe(rows)}")
    raise ExtractError("unknown_shape", f"a {protocol} request needs 'instances' or 'inputs'; "
                                        f"got {describe(request)}")


def rows_to_inputs(rows: list[Any], feature_names: Sequence[str] | None) -> list[dict[str, Any]]:
    return [row_features(row, feature_names, f"instance {i}") for i, row in enumerate(rows)]


def _frame(instance: dict[Any, Any], where: str) -> list[dict[str, Any]] | None:
    """The rows of an object instance read as pandas columns, or None when it is one plain row."""
    values = instance.values()
    if not values:
        return None
    if all(isinstance(v, dict) for v in values):  # dict of index: {"a": {"0": 1.5}, ...}
        index: dict[Any, None] = {}
        for column in values:
            index.update(dict.fromkeys(column))
        return [{str(k): scalar(column.get(i)) for k, column in instance.items()} for i in index]
    if not any(isinstance(v, list) for v in values):
        return None
    if any(isinstance(v, dict) for v in values):
        raise ExtractError("unknown_shape", f"{where} mixes array and object columns")
    lengths = {len(v) for v in values if isinstance(v, list)}
    if len(lengths) > 1:
        detail = ", ".join(f"{k!r}: {len(v)}" for k, v in list(instance.items())[:5] if isinstance(v, list))
        raise ExtractError("mismatch", f"the columns of {where} differ in length ({detail})")
    n = lengths.pop()
    return [{str(k): scalar(v[i] if isinstance(v, list) else v) for k, v in instance.items()}
            for i in range(n)]


def _records(instance: list[Any], where: str) -> list[dict[str, Any]]:
    """A list of objects: one row each, every row with the keys of all (null where missing)."""
    if not all(isinstance(r, dict) for r in instance):
        raise ExtractError("unknown_shape", f"{where} is a list of objects and other values")
    keys: dict[str, None] = {}
    rows = [object_fields(r) for r in instance]
    for row in rows:
        keys.update(dict.fromkeys(row))
    return [{k: row.get(k) for k in keys} for row in rows]


def frame_inputs(rows: list[Any], feature_names: Sequence[str] | None) -> list[dict[str, Any]]:
    """The rows of KServe v1 instances, read as ``get_predict_input`` reads them (see the module doc)."""
    inputs: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        where = f"instance {i}"
        if isinstance(row, dict):
            framed = _frame(row, where)
            if framed is not None:
                inputs.extend(framed)
                continue
        elif isinstance(row, list) and row and isinstance(row[0], dict):
            inputs.extend(_records(row, where))
            continue
        inputs.append(row_features(row, feature_names, where))
    return inputs


def outputs_for(predictions: Any, n: int) -> list[dict[str, Any]]:
    return [prediction_outputs(p) for p in split_predictions(predictions, n, "'predictions'")]


class KServeV1:
    """Extractor of KServe v1 calls; ``feature_names`` names the values of list instances."""

    name: str = "kserve_v1"

    def __init__(self, feature_names: Sequence[str] | None = None) -> None:
        self.feature_names = feature_names

    def matches(self, path: str, request: Any) -> bool:
        return route_path(path).endswith(":predict") and isinstance(request, dict)

    def extract(self, request: Any, response: Any) -> Extraction:
        rows = request_rows(request, "KServe v1")
        inputs = frame_inputs(rows, self.feature_names)
        predictions = response.get("predictions") if isinstance(response, dict) else None
        outputs = None if predictions is None else outputs_for(predictions, len(inputs))
        return pair(inputs, outputs)
