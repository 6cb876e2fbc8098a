"""Column operations on Arrow arrays: type inference, numbers, category counts.

A column is a pyarrow ChunkedArray (an Array is accepted too), from a Parquet
file or seen through a pandas Series (:func:`from_pandas`, mostly without a
copy).  These functions read Arrow buffers with numpy and never call the
pyarrow entry points that import pandas (``pa.array`` from Python objects,
``pa.scalar``, ``to_numpy``), so checking a Parquet file never loads pandas.
Number parsing follows pandas' rules exactly (tested), with exact rounding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from monitor.engine.profiles import FeatureType, category_label
from monitor.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

#: a column: a pyarrow ChunkedArray (an Array is accepted too)
Column = Any

TRUE_WORDS = {"true", "1", "yes", "y", "t", "1.0"}
FALSE_WORDS = {"false", "0", "no", "n", "f", "0.0"}


@dataclass(frozen=True)
class InferredType:
    """What a column was taken to be, and why (shown to the user)."""

    type: FeatureType | None  # None: not monitored
    reason: str


def from_pandas(series: pd.Series) -> Column:
    """A pandas column as a ChunkedArray with the meaning pandas gave it.

    Numbers, booleans and categoricals are not copied (NaN stays NaN: every
    function below counts NaN as missing, as pandas does).  An object column
    is text to pandas whatever it holds, so one that Arrow reads as numbers,
    booleans or dates is dictionary-encoded, which keeps it on the text path.
    """
    import pandas as pd

    dtype = series.dtype
    try:
        if isinstance(dtype, np.dtype) and dtype.kind == "f":
            array = pa.array(series.to_numpy(), from_pandas=False)
        elif isinstance(dtype, pd.CategoricalDtype):
            # the codes as they are (a sixth of the time pa.array takes)
            codes = series.cat.codes.to_numpy()
            gone = codes < 0
            indices = pa.array(codes, mask=gone) if gone.any() else pa.array(codes)
            array = pa.DictionaryArray.from_arrays(
                indices, pa.array(dtype.categories, from_pandas=True), safe=False)
        else:
            array = pa.array(series, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # mixed objects Arrow cannot hold in one type: their labels
        missing = pd.isna(series).to_numpy()
        labels = [None if gone else category_label(v)
                  for v, gone in zip(series.to_numpy(dtype=object), missing, strict=True)]
        array = pa.array(labels, type=pa.string())
    if dtype == np.dtype(object) and not (is_text(array.type) or pa.types.is_null(array.type)
                                or pa.types.is_dictionary(array.type)):
        array = array.dictionary_encode()
    if isinstance(array, pa.ChunkedArray):
        return array
    return pa.chunked_array([array], type=array.type)


# --- Arrow buffers as numpy (without pyarrow's pandas-importing converters) --


def _chunked(column: Column) -> Any:
    if isinstance(column, pa.ChunkedArray):
        return column
    return pa.chunked_array([column], type=column.type)


def is_text(kind: Any) -> bool:
    checks = [pa.types.is_string, pa.types.is_large_string]
    if hasattr(pa.types, "is_string_view"):
        checks.append(pa.types.is_string_view)
    return any(check(kind) for check in checks)


def _is_number(kind: Any) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _view(array: Any) -> NDArray[Any]:
    """The values of a fixed-width numeric array, without a copy (slots of
    nulls hold whatever the buffer holds)."""
    dtype = np.dtype(array.type.to_pandas_dtype())
    buffer = array.buffers()[1]
    if buffer is None or len(array) == 0:
        return np.empty(0, dtype=dtype)
    view = np.frombuffer(buffer, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)
    view.flags.writeable = False  # it may be a caller's DataFrame
    return view


def _valid(array: Any) -> NDArray[np.bool_] | None:
    """Which entries are not null, or None when none is."""
    if array.null_count == 0:
        return None
    bits = array.buffers()[0]
    if bits is None:  # a null-typed array
        return np.zeros(len(array), dtype=bool)
    start = array.offset
    raw = np.frombuffer(bits, dtype=np.uint8, count=(start + len(array) + 7) // 8)
    return np.unpackbits(raw, bitorder="little")[start:start + len(array)].view(bool)


def _floats(column: Column) -> NDArray[np.float64]:
    """A numeric or boolean column as float64, NaN where missing (no copy when
    it is float64 without nulls in one chunk)."""
    col = _chunked(column)
    if pa.types.is_decimal(col.type):  # via text: Arrow's own cast is not correctly rounded
        col = pc.cast(col, pa.string())
    if col.type != pa.float64():
        col = pc.cast(col, pa.float64(), safe=False)
    parts = []
    for chunk in col.chunks:
        values = _view(chunk)
        valid = _valid(chunk)
        parts.append(values if valid is None else np.where(valid, values, np.nan))
    if not parts:
        return np.empty(0, dtype=np.float64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


@dataclass(frozen=True)
class _Encoded:
    """A column as distinct values and, per row, the index of its value."""

    values: Any  # pa.Array of the distinct values (some may be unused)
    counts: NDArray[np.int64]  # rows per value; 0 for missing ones (null, NaN)
    missing: int
    chunks: list[tuple[NDArray[Any], NDArray[np.bool_] | None]]  # (indices, valid) per chunk


def _encode(column: Column) -> _Encoded:
    col = _chunked(column)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    col = col.unify_dictionaries()
    if col.num_chunks == 0:
        col = pa.chunked_array([pa.nulls(0, col.type)], type=col.type)
    values = col.chunk(0).dictionary
    counts = np.zeros(len(values), dtype=np.int64)
    chunks = []
    for chunk in col.chunks:
        indices = _view(chunk.indices)
        valid = _valid(chunk)
        if valid is not None:  # what a null's slot holds is undefined
            indices = np.where(valid, indices, 0)
        chunks.append((indices, valid))
        counts += np.bincount(indices if valid is None else indices[valid], minlength=len(values))
    missing = int(col.null_count)
    # a null or NaN among the distinct values is missing too
    gone = _valid(values)
    gone = np.zeros(len(values), dtype=bool) if gone is None else ~gone
    if pa.types.is_floating(values.type):
        gone |= np.isnan(_view(values))
    if gone.any():
        missing += int(counts[gone].sum())
        counts[gone] = 0
    return _Encoded(values, counts, missing, chunks)


# What pandas.to_numeric (the reader behind text columns before) takes for a
# number: ASCII spaces around, digits with an optional point and exponent, or
# one of the words for infinity alone; "nan" is not a number, nor is anything
# whose decimal exponent, as pandas counts it, passes 308.
_NUMBER = re.compile(r"[ \t\n\v\f\r]*[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d{1,17}))?[ \t\n\v\f\r]*",
                     re.ASCII)
_INFINITY = re.compile(r"[+-]?inf(?:inity)?", re.ASCII | re.IGNORECASE)
_MAX_DIGITS = 17  # pandas reads at most 17 significant digits
# strings whose reading Arrow's cast may not share with pandas: exponents, long digit runs
_SUSPECT = r"[eE]|[0-9]{18}"


def _parse_number(text: str) -> float:
    """A number as ``pandas.to_numeric`` accepts one, correctly rounded; NaN
    when it is not one."""
    if _INFINITY.fullmatch(text):
        return float(text)
    match = _NUMBER.fullmatch(text)
    if match is None:
        return math.nan
    whole, fraction, sign, power = match.groups()
    fraction = fraction or ""
    if not whole and not fraction:
        return math.nan
    exponent = max(0, len(whole) - _MAX_DIGITS)
    exponent -= min(len(fraction), max(0, _MAX_DIGITS - len(whole)))
    if power:
        exponent += -int(power) if sign == "-" else int(power)
    if exponent > 308:
        return math.nan
    value = float(text)
    return math.nan if math.isinf(value) else value


def _bits(mask: Any) -> NDArray[np.bool_]:
    """A boolean Arrow array as numpy (null as False)."""
    n = len(mask)
    if n == 0:
        return np.zeros(0, dtype=bool)
    start = mask.offset
    raw = np.frombuffer(mask.buffers()[1], dtype=np.uint8, count=(start + n + 7) // 8)
    out = np.unpackbits(raw, bitorder="little")[start:start + n].view(bool)
    valid = _valid(mask)
    return out if valid is None else out & valid


def _parse_values(values: Any, used: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Each distinct value as a number, NaN where it is not one (only the
    used entries are looked at)."""
    kind = values.type
    if _is_number(kind) or pa.types.is_decimal(kind) or pa.types.is_boolean(kind):
        return _floats(values)
    recheck = used
    parsed = np.full(len(values), np.nan)
    if is_text(kind):
        try:  # fast and correctly rounded; Python reads what Arrow may read otherwise
            parsed = np.array(_floats(pc.cast(values, pa.float64())), dtype=np.float64)
            suspect = _bits(pc.match_substring_regex(values, _SUSPECT))
            recheck = used & (~np.isfinite(parsed) | suspect)
        except pa.ArrowInvalid:
            pass
    if recheck.any():
        texts = values.to_pylist()
        for i in np.flatnonzero(recheck):
            item = texts[i]
            parsed[i] = math.nan if item is None else _parse_number(str(item))
    return parsed


# --- inference and summaries ------------------------------------------------


def infer_type(column: Column) -> InferredType:
    """Guess a column's feature type from its reference values."""
    col = _chunked(column)
    kind = col.type
    if col.null_count == len(col):
        return InferredType(None, "no values")
    if pa.types.is_boolean(kind) or (pa.types.is_dictionary(kind)
                                     and pa.types.is_boolean(kind.value_type)):
        return InferredType("boolean", "boolean column")
    if pa.types.is_timestamp(kind) or pa.types.is_duration(kind):
        return InferredType(None, "timestamps are not monitored")
    if _is_number(kind):
        values = _floats(col)
        lo, hi = float(np.fmin.reduce(values)), float(np.fmax.reduce(values))  # skip NaN
        if math.isnan(lo):
            return InferredType(None, "no values")
        if lo >= 0.0 and hi <= 1.0 and bool(np.all((values == 0.0) | (values == 1.0)
                                                    | np.isnan(values))):
            return InferredType("boolean", "only 0/1 values")
        return InferredType("numerical", "numeric column")
    # text and the rest: work on the distinct values
    encoded = _encode(col)
    used = encoded.counts > 0
    present = int(encoded.counts.sum())
    if present == 0:
        return InferredType(None, "no values")
    distinct_count = int(used.sum())
    if present >= 100 and distinct_count >= 0.99 * present:
        return InferredType(None, "looks like an identifier (almost every value distinct)")
    numeric = not bool(np.isnan(_parse_values(encoded.values, used)[used]).any())
    # a string type (or a pandas category) is the file's word that these are
    # labels: zip codes, account classes.  Only a config makes them numbers.
    if is_text(kind) or pa.types.is_dictionary(kind):
        if not numeric:
            return InferredType("categorical", "text column")
        code = _leading_zero_code(encoded.values, used)
        if code is not None:
            return InferredType("categorical", f"codes with leading zeros, like {code!r}")
        return InferredType("categorical", "text column (the values look like numbers: "
                                           "declare it numerical in a config to compare numbers)")
    if numeric and distinct_count > 2:
        return InferredType("numerical", "numbers stored as text")
    return InferredType("categorical", "text column")


#: a number written with a leading zero ("02134", "-007"): a code, not a
#: quantity; "0", "0.5" and "-0.3" are numbers
LEADING_ZERO = re.compile(r"[ \t]*[+-]?0[0-9]", re.ASCII)


def _leading_zero_code(values: Any, used: NDArray[np.bool_]) -> str | None:
    """The first used distinct value written with a leading zero, if any."""
    texts = values.to_pylist()
    for i in np.flatnonzero(used):
        item = texts[i]
        if isinstance(item, str) and LEADING_ZERO.match(item):
            return item
    return None


def numeric_values(data: Column, *, file: str, column: str) -> NDArray[np.float64]:
    """The column as float64 with NaN for missing; a non-number is an InputError.

    The array may be read-only and share memory with the column."""
    col = _chunked(data)
    kind = col.type
    if _is_number(kind) or pa.types.is_boolean(kind) or pa.types.is_decimal(kind) \
            or pa.types.is_null(kind):
        return _floats(col)
    encoded = _encode(col)
    used = encoded.counts > 0
    parsed = _parse_values(encoded.values, used)
    bad = used & np.isnan(parsed)
    offset = 0
    parts = []
    for indices, valid in encoded.chunks:
        if bad.any():
            wrong = bad[indices] if valid is None else bad[indices] & valid
            if wrong.any():
                position = offset + int(np.flatnonzero(wrong)[0])
                index = int(indices[position - offset])
                value = encoded.values.slice(index, 1).to_pylist()[0]
                raise InputError(
                    f"{file}: column {column!r} is numerical but row {position + 1} holds "
                    f"{str(value)[:40]!r}, which is not a number"
                )
        values = parsed[indices]
        if valid is not None:
            values[~valid] = np.nan
        parts.append(values)
        offset += len(indices)
    if not parts:
        return np.empty(0, dtype=np.float64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def category_counts(data: Column, feature_type: FeatureType) -> tuple[dict[str, int], int, int]:
    """(counts by label, missing, invalid) for a categorical or boolean column."""
    col = _chunked(data)
    if pa.types.is_null(col.type):
        return {}, len(col), 0
    encoded = _encode(col)
    used = np.flatnonzero(encoded.counts > 0)
    keys = encoded.values.to_pylist()
    counts: dict[str, int] = {}
    invalid = 0
    for i in used:
        n = int(encoded.counts[i])
        label = category_label(keys[i])
        if feature_type == "boolean":
            word = label.strip().lower()
            if word in TRUE_WORDS:
                label = "true"
            elif word in FALSE_WORDS:
                label = "false"
            else:
                invalid += n
                continue
        counts[label] = counts.get(label, 0) + n
    return counts, encoded.missing, invalid
