"""MLflow pyfunc scoring server: ``POST /invocations`` (also SageMaker's path), JSON or CSV bodies.

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

A ``Content-Type: text/csv`` request (:func:`csv_request`) is read as MLflow
reads it, with ``pandas.read_csv`` defaults, but by the stdlib ``csv`` module:
the header row names the columns (an empty name is ``Unnamed: <i>``, a
repeated one ``<name>.1``, ...), one row per later non-blank line (a short row
is filled with nulls, a long one is a ``mismatch``), UTF-8 with or without a
BOM.  Each column is typed as a whole: all integers give ints, all numbers
floats, all of ``true``/``false`` (any case pandas takes) booleans, anything
else keeps the column's text; an empty field or a pandas missing marker
(``NA``, ``NaN``, ``null``, ``None``, ``N/A``, ...) is null.

The response is ``{"predictions": ...}`` or, from MLflow 1.x servers, a bare
JSON array.  The outputs are named as for KServe v1 (``prediction``,
``prediction_<i>`` or an object's keys); a pandas DataFrame answer arrives
as a list of records, a dict of arrays as columns, and both pair by row.
"""

from __future__ import annotations

import csv
import io
import re
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
CSV_TYPES = frozenset({"text/csv", "application/csv"})

# pandas.read_csv's default missing markers (its ``na_values``), and its boolean spellings
_MISSING = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                      "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_BOOLS = {"True": True, "true": True, "TRUE": True, "False": False, "false": False, "FALSE": False}
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                    r"|[+-]?(?:inf|Inf|INF|infinity|Infinity)")


def is_csv(content_type: str | None) -> bool:
    """A ``Content-Type`` of CSV (``text/csv``, parameters such as ``charset`` ignored)."""
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() in CSV_TYPES


def _column(texts: list[str | None]) -> list[Any]:
    """One column's fields typed as a whole, the way pandas infers a column's dtype."""
    present = [t for t in texts if t is not None]
    if present and all(_INT.fullmatch(t) for t in present):
        return [None if t is None else int(t) for t in texts]
    if present and all(_FLOAT.fullmatch(t) for t in present):
        return [None if t is None else float(t) for t in texts]
    if present and all(t in _BOOLS for t in present):
        return [None if t is None else _BOOLS[t] for t in texts]
    return texts


def csv_request(body: bytes) -> dict[str, Any]:
    """A ``text/csv`` request body as the ``dataframe_split`` it stands for (see the module doc)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExtractError("not_json", "the request body is text/csv but not UTF-8") from None
    try:
        lines = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise ExtractError("unknown_shape", f"the request body is not CSV ({exc})") from None
    if not lines:
        raise ExtractError("unknown_shape", "the CSV request has no header row")
    header, records = lines[0], lines[1:]
    columns: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        name = name or f"Unnamed: {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        columns.append(name)
    width = len(columns)
    fields: list[list[str | None]] = [[] for _ in columns]
    for n, record in enumerate(records):
        if len(record) > width:
            raise ExtractError("mismatch", f"the CSV request has {width} columns but row {n} has "
                                           f"{len(record)} fields")
        for j in range(width):
            value = record[j] if j < len(record) else ""
            fields[j].append(None if value in _MISSING else value)
    typed = [_column(f) for f in fields]
    return {"dataframe_split": {"columns": columns,
                                "data": [[typed[j][i] for j in range(width)] for i in range(len(records))]}}


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
