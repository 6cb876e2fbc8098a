"""Rows turned into columns, ready to be cut at window boundaries.

A batch of rows (or of columns) becomes a :class:`_Batch`: float columns for
numerical features (NaN missing, invalid values flagged), integer category
codes for categorical and boolean ones (``_MISSING``, ``_INVALID``), and
the names of fields that are not features, which :func:`_count_field`
counts by name up to :data:`MAX_UNKNOWN_FIELDS`.  What counts as a number, a
category or a boolean word is described in :mod:`monitor.engine.windows`.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from monitor.engine.profiles import category_label
from monitor.engine.windows.spec import WindowSpecError

#: distinct unknown field names counted by name; the rest count under OTHER_FIELDS
MAX_UNKNOWN_FIELDS = 100
OTHER_FIELDS = "__other__"
#: unknown field names are cut to this many characters
_MAX_FIELD_NAME = 200

# the words reference profiles accept for booleans (kept in step with monitor.batch.tabular,
# which is not imported here to keep pandas out of the streaming path; a test checks it)
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "1.0"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", "0.0"})

_MISSING = -1  # category codes
_INVALID = -2

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass
class _NumColumn:
    values: FloatArray  # NaN where missing (and where invalid)
    invalid: BoolArray | None  # rows whose value was not a number


@dataclass
class _CatColumn:
    labels: list[str]
    codes: IntArray  # index into labels, or _MISSING / _INVALID


_FAST_NUMERIC_TYPES = frozenset({float, int, bool, type(None), np.float64, np.float32,
                                 np.int64, np.int32, np.bool_})


def _to_float(value: object) -> float | None:
    """The value as a float (NaN: missing), or None when it is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, numbers.Real | Decimal):
        try:
            return float(value)
        except (OverflowError, ValueError):
            return None
    return None


def _numeric_column(values: object, n: int, name: str) -> _NumColumn:
    if isinstance(values, np.ndarray):
        _check_shape(values, n, name)
        if values.dtype.kind in "fiub":
            return _NumColumn(values.astype(np.float64, copy=False), None)
        items: list[object] = values.tolist()
    else:
        items = list(cast(Sequence[object], values))
        if len(items) != n:
            raise WindowSpecError(f"column {name!r} has {len(items)} values for {n} rows")
    if set(map(type, items)) <= _FAST_NUMERIC_TYPES:
        try:
            return _NumColumn(np.asarray(items, dtype=np.float64), None)
        except (OverflowError, ValueError, TypeError):
            pass  # a huge int: take the slow path, which calls it invalid
    out = np.empty(n, dtype=np.float64)
    invalid = np.zeros(n, dtype=np.bool_)
    for i, item in enumerate(items):
        x = _to_float(item)
        if x is None:
            out[i] = math.nan
            invalid[i] = True
        else:
            out[i] = x
    return _NumColumn(out, invalid if invalid.any() else None)


_TEXT_TYPES = frozenset({str, type(None)})


def _category(value: object, boolean: bool) -> str | int:
    """A category label, or _MISSING / _INVALID."""
    if value is None:
        return _MISSING
    if isinstance(value, float | np.floating) and math.isnan(value):
        return _MISSING
    if isinstance(value, bytes | np.bytes_) or not isinstance(value, str | int | float
                                                             | np.generic):
        return _INVALID
    label = category_label(value)
    if not boolean:
        return label
    word = label.strip().lower()
    if word in TRUE_WORDS:
        return "true"
    if word in FALSE_WORDS:
        return "false"
    return _INVALID


def _category_column(values: object, n: int, name: str, boolean: bool) -> _CatColumn:
    index: dict[str, int] = {}

    def code(value: object) -> int:
        label = _category(value, boolean)
        if isinstance(label, int):
            return label
        found = index.get(label)
        if found is None:
            found = index[label] = len(index)
        return found

    if isinstance(values, np.ndarray) and values.dtype.kind in "biufU":
        _check_shape(values, n, name)
        uniques, inverse = np.unique(values, return_inverse=True)
        unique_codes = np.array([code(u) for u in uniques.tolist()], dtype=np.int64)
        codes = unique_codes[inverse.reshape(-1)] if n else np.empty(0, dtype=np.int64)
    else:
        if isinstance(values, np.ndarray):
            _check_shape(values, n, name)
            items: list[object] = values.tolist()
        else:
            items = list(cast(Sequence[object], values))
        if len(items) != n:
            raise WindowSpecError(f"column {name!r} has {len(items)} values for {n} rows")
        if set(map(type, items)) <= _TEXT_TYPES:
            # the usual stream: text and nulls; label each distinct value once
            # (other types may be equal yet labelled differently: 1, 1.0, True)
            known = {value: code(value) for value in dict.fromkeys(items)}
            codes = np.fromiter(map(known.__getitem__, items), dtype=np.int64, count=n)
        else:
            codes = np.array([code(v) for v in items], dtype=np.int64)
    return _CatColumn(list(index), codes)


def _check_shape(values: NDArray[Any], n: int, name: str) -> None:
    if values.ndim != 1 or values.shape[0] != n:
        raise WindowSpecError(f"column {name!r} has shape {values.shape} for {n} rows")


@dataclass
class _Batch:
    """Rows turned into columns, ready to be cut at window boundaries."""

    n: int
    numeric: dict[str, _NumColumn]
    categorical: dict[str, _CatColumn]
    unknown_all: list[str]  # names unknown in every row (columnar input)
    unknown_rows: IntArray  # row of each sparse unknown name (row input)
    unknown_names: list[str]

    def take(self, keep: BoolArray) -> _Batch:
        positions = np.cumsum(keep) - 1
        sparse = keep[self.unknown_rows] if self.unknown_rows.size else np.zeros(0, np.bool_)
        return _Batch(
            int(keep.sum()),
            {k: _NumColumn(c.values[keep], None if c.invalid is None else c.invalid[keep])
             for k, c in self.numeric.items()},
            {k: _CatColumn(c.labels, c.codes[keep]) for k, c in self.categorical.items()},
            self.unknown_all,
            positions[self.unknown_rows[sparse]].astype(np.int64),
            [nm for nm, ok in zip(self.unknown_names, sparse.tolist(), strict=True) if ok],
        )


def _count_field(counter: Counter[str], name: str, n: int) -> None:
    """Count an unknown field name, keeping at most MAX_UNKNOWN_FIELDS names."""
    if n <= 0:
        return
    name = name[:_MAX_FIELD_NAME]
    if name in counter or len(counter) < MAX_UNKNOWN_FIELDS:
        counter[name] += n
    else:
        counter[OTHER_FIELDS] += n
