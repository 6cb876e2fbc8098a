"""MLflow pyfunc scoring server: ``POST /invocations`` (also SageMaker's path), JSON bodies.

The request holds exactly one of MLflow 2's structural keys (``params`` and
other keys are ignored):

* ``dataframe_split``: ``{"columns": [...], "data": [[...], ...], "index": ...}``,
  one row per ``data`` entry, named by ``columns`` (each row must have one
  value per column, else ``mismatch``); without ``columns`` the names are
  positional (``feature_names`` or ``f0, f1, ...``);
* ``dataframe_records``: a list of objects, one row each;
* ``inputs``: an object of columns (TF-serving columnar, one row per position)
  or a list of rows (lists, objects or scalars);
* ``instances``: TF-serving rows, as in KServe v1.

The response is ``{"predictions": ...}`` or, from MLflow 1.x servers, a bare
JSON array.  The outputs are named as for KServe v1 (``prediction``,
``prediction_<i>`` or an object's keys); a pandas DataFrame answer arrives
as a list of records, a dict of arrays as columns, and both pair by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collectors.extractors.base import (
    ExtractError,
    Extraction,
    describe,
    pair,
    positional_names,
    route_path,
    scalar,
)
from collectors.extractors.kserve_v1 import outputs_for, request_rows, rows_to_inputs

KEYS = ("dataframe_split", "dataframe_records", "inputs", "instances")


def _split(frame: Any, feature_names: Sequence[str] | None) -> list[dict[str, Any]]:
    if not isinstance(frame, dict):
        raise ExtractError("unknown_shape", f"'dataframe_split' must be an object, not {describe(frame)}")
    data = frame.get("data")
    if not isinstance(data, list):
        raise ExtractError("unknown_shape", f"'dataframe_split.data' must be an array, not {describe(data)}")
    columns = frame.get("columns")
    if columns is not None and not isinstance(columns, list):
        raise ExtractError("unknown_shape", f"'dataframe_split.columns' must be an array, "
                                            f"not {describe(columns)}")
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(data):
        if not isinstance(row, list):
            row = [row]  # a one-column frame may be written without the inner brackets
        if columns is None:
            names: Sequence[str] = positional_names(len(row), feature_names, "f", f"row {i}")
        elif len(row) != len(columns):
            raise ExtractError("mismatch", f"'dataframe_split' has {len(columns)} columns but row {i} "
                                           f"has {len(row)} values")
        else:
            names = [c if isinstance(c, str) else str(scalar(c)) for c in columns]
        rows.append({name: scalar(v) for name, v in zip(names, row, strict=True)})
    return rows


class MLflow:
    """Extractor of MLflow ``/invocations`` calls."""

    name: str = "mlflow"

    def __init__(self, feature_names: Sequence[str] | None = None) -> None:
        self.feature_names = feature_names

    def matches(self, path: str, request: Any) -> bool:
        return route_path(path).endswith("/invocations") and isinstance(request, dict)

    def extract(self, request: Any, response: Any) -> Extraction:
        if not isinstance(request, dict):
            raise ExtractError("unknown_shape", f"an MLflow request must be a JSON object, "
                                                f"not {describe(request)}")
        present = [k for k in KEYS if k in request]
        if len(present) != 1:
            found = "none" if not present else ", ".join(present)
            raise ExtractError("unknown_shape", f"an MLflow request needs exactly one of {', '.join(KEYS)}; "
                                                f"found {found}")
        key = present[0]
        if key == "dataframe_split":
            inputs = _split(request[key], self.feature_names)
        elif key == "dataframe_records":
            records = request[key]
            if not isinstance(records, list):
                raise ExtractError("unknown_shape", f"'dataframe_records' must be an array, "
                                                    f"not {describe(records)}")
            inputs = rows_to_inputs(records, self.feature_names)
        else:
            inputs = rows_to_inputs(request_rows(request, "MLflow"), self.feature_names)
        if isinstance(response, list):
            predictions: Any = response
        elif isinstance(response, dict):
            predictions = response.get("predictions")
        else:
            predictions = None
        outputs = None if predictions is None else outputs_for(predictions, len(inputs))
        return pair(inputs, outputs)
