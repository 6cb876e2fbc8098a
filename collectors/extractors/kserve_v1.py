"""KServe v1 (the TensorFlow Serving REST "predict" API): ``POST /v1/models/<name>:predict``.

Request ``{"instances": [...]}``, or ``{"inputs": ...}``, the v1 alias:

* each instance is a row: a list of values (features named by the
  ``feature_names`` option, else ``f0, f1, ...``), an object (its keys), or a
  bare scalar (one feature, ``f0``);
* ``inputs`` may also be TF-serving's columnar form, an object of equal-length
  lists ``{"a": [1, 2], "b": [3, 4]}``, one row per position.

Response ``{"predictions": [...]}``, one prediction per instance: a scalar is
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
    pair,
    prediction_outputs,
    route_path,
    row_features,
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
        inputs = rows_to_inputs(rows, self.feature_names)
        predictions = response.get("predictions") if isinstance(response, dict) else None
        outputs = None if predictions is None else outputs_for(predictions, len(rows))
        return pair(inputs, outputs)
