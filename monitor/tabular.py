"""Tables at the edge: reading CSV/Parquet, inferring feature types, and
turning a pandas DataFrame into a :class:`~monitor.profiles.Profile`.

This is the only module of the drift engine that touches pandas and files of
data.  Every problem with the input becomes an :class:`InputError` with one
line that names the file and the column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from monitor.errors import InputError
from monitor.parallel import parallel_map
from monitor.profiles import (
    CategoricalAccumulator,
    FeatureProfile,
    FeatureType,
    NumericAccumulator,
    Profile,
    ProfileSettings,
    category_label,
)

PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
TRUE_WORDS = {"true", "1", "yes", "y", "t", "1.0"}
FALSE_WORDS = {"false", "0", "no", "n", "f", "0.0"}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class InferredType:
    """What a column was taken to be, and why (shown to the user)."""

    type: FeatureType | None  # None: not monitored
    reason: str


class Table:
    """Named columns of one data file or DataFrame, each loaded when asked for.

    Parquet files are read one column at a time, so checking a file never
    holds more than its profile plus the column in hand.
    """

    def __init__(self, name: str, columns: Sequence[str], rows: int) -> None:
        self.name = name
        self.columns = tuple(str(c) for c in columns)
        self.rows = rows

    def column(self, name: str) -> pd.Series:
        raise NotImplementedError


class FrameTable(Table):
    """A DataFrame already in memory."""

    def __init__(self, frame: pd.DataFrame, name: str = "<data>") -> None:
        super().__init__(name, [str(c) for c in frame.columns], int(frame.shape[0]))
        self._frame = frame

    def column(self, name: str) -> pd.Series:
        series: pd.Series = self._frame[name]
        return series


class ParquetTable(Table):
    """A Parquet file; string columns come back dictionary-encoded (categorical)."""

    def __init__(self, path: Path) -> None:
        try:
            parquet = pq.ParquetFile(path)
            schema = parquet.schema_arrow
            rows = int(parquet.metadata.num_rows)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
        index = set()
        meta = schema.pandas_metadata or {}
        for entry in meta.get("index_columns", []):
            if isinstance(entry, str):  # a stored pandas index is not a feature
                index.add(entry)
        self._strings = {f.name for f in schema
                         if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
        self._path = path
        super().__init__(str(path), [n for n in schema.names if n not in index], rows)

    def column(self, name: str) -> pd.Series:
        try:
            table = pq.read_table(self._path, columns=[name],
                                  read_dictionary=[name] if name in self._strings else None)
            series: pd.Series = table.column(0).to_pandas()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(
                f"{self._path}: column {name!r} cannot be read ({_first_line(exc)})") from None
        return series


def open_table(path: str | Path) -> Table:
    """A CSV or Parquet file as a :class:`Table`; bad files are InputErrors."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a CSV or Parquet file")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise InputError(f"{p}: file is empty")
    table: Table
    if magic == b"PAR1" or p.suffix.lower() in PARQUET_SUFFIXES:
        table = ParquetTable(p)
    else:
        table = FrameTable(_read_csv(p), str(p))
    if not table.columns:
        raise InputError(f"{p}: no columns")
    if table.rows == 0:
        raise InputError(f"{p}: no rows")
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    """The whole file as a DataFrame (string columns as categoricals)."""
    table = open_table(path)
    if isinstance(table, FrameTable):
        return table._frame
    return pd.DataFrame({name: table.column(name) for name in table.columns})


def _read_csv(p: Path) -> pd.DataFrame:
    sep = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(p, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(f"{p}: not a readable CSV file ({_first_line(exc)})") from None
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].astype("category")
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def infer_type(series: pd.Series) -> InferredType:
    """Guess a column's feature type from its reference values."""
    dtype = series.dtype
    non_missing = series.dropna()
    if non_missing.empty:
        return InferredType(None, "no values")
    if pd.api.types.is_bool_dtype(dtype):
        return InferredType("boolean", "boolean column")
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return InferredType(None, "timestamps are not monitored")
    if pd.api.types.is_numeric_dtype(dtype):
        lo, hi = float(non_missing.min()), float(non_missing.max())
        if lo >= 0.0 and hi <= 1.0:  # cheap test first; unique() hashes every row
            values = set(np.asarray(non_missing.unique(), dtype=float).tolist())
            if values <= {0.0, 1.0}:
                return InferredType("boolean", "only 0/1 values")
        return InferredType("numerical", "numeric column")
    # work on the distinct values: a 100k-row column has a handful of categories
    if isinstance(dtype, pd.CategoricalDtype):
        present = non_missing.cat.remove_unused_categories().cat.categories
        labels = pd.Series(np.asarray(present, dtype=object))
    else:
        labels = pd.Series(pd.unique(non_missing.to_numpy(dtype=object)))
    distinct_count = len(labels)
    if len(non_missing) >= 100 and distinct_count >= 0.99 * len(non_missing):
        return InferredType(None, "looks like an identifier (almost every value distinct)")
    numeric = pd.to_numeric(labels.astype(str), errors="coerce")
    if numeric.notna().all() and distinct_count > 2:
        return InferredType("numerical", "numbers stored as text")
    return InferredType("categorical", "text column")


def numeric_values(series: pd.Series, *, file: str, column: str) -> np.ndarray:
    """The column as float64 with NaN for missing; a non-number is an InputError."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64").to_numpy()
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(series.astype(object), errors="coerce")
    bad = coerced.isna() & series.notna()
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        value = series.iloc[position]
        raise InputError(
            f"{file}: column {column!r} is numerical but row {position + 1} holds "
            f"{str(value)[:40]!r}, which is not a number"
        )
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def category_counts(series: pd.Series, feature_type: FeatureType) -> tuple[dict[str, int], int, int]:
    """(counts by label, missing, invalid) for a categorical or boolean column."""
    missing = int(series.isna().sum())
    counts_series = series.value_counts(dropna=True, sort=False)
    counts: dict[str, int] = {}
    invalid = 0
    for key, n in counts_series.items():
        if n == 0:
            continue
        label = category_label(key)
        if feature_type == "boolean":
            word = label.strip().lower()
            if word in TRUE_WORDS:
                label = "true"
            elif word in FALSE_WORDS:
                label = "false"
            else:
                invalid += int(n)
                continue
        counts[label] = counts.get(label, 0) + int(n)
    return counts, missing, invalid


def summarise(series: pd.Series, feature_type: FeatureType, settings: ProfileSettings, *,
              file: str, column: str) -> FeatureProfile:
    """One column's summary."""
    if feature_type == "numerical":
        acc = NumericAccumulator(settings)
        acc.update(numeric_values(series, file=file, column=column))
        return acc.freeze()
    counts, missing, invalid = category_counts(series, feature_type)
    cat = CategoricalAccumulator(settings, feature_type=feature_type)
    cat.update_counts(counts, missing=missing, invalid=invalid)
    return cat.freeze()


def profile_frame(
    data: pd.DataFrame | Table,
    types: Mapping[str, FeatureType],
    *,
    settings: ProfileSettings | None = None,
    file: str = "<data>",
    source: str = "",
    created_at: str = "",
    progress: Progress | None = None,
    max_categories: Mapping[str, int] | None = None,
) -> Profile:
    """Summarise the given feature columns of a DataFrame or table.

    Columns named in ``types`` but absent from the data are left out (the
    analysis reports them as missing columns).  ``max_categories`` overrides
    the category cap of single features.
    """
    chosen = settings or ProfileSettings()
    table = data if isinstance(data, Table) else FrameTable(data)

    def one(item: tuple[str, FeatureType]) -> FeatureProfile:
        name, feature_type = item
        if progress is not None:
            progress(name)
        own = chosen
        if max_categories and name in max_categories:
            own = replace(chosen, max_categories=max_categories[name])
        return summarise(table.column(name), feature_type, own, file=file, column=name)

    present = [(n, t) for n, t in types.items() if n in table.columns]
    # sorting releases the GIL, so columns are summarised in parallel
    summaries = parallel_map(one, present)
    features = {name: summary for (name, _), summary in zip(present, summaries, strict=True)}
    return Profile(features=features, rows=table.rows, settings=chosen, columns=table.columns,
                   source=source, created_at=created_at)


def profile_inferred(
    data: pd.DataFrame | Table,
    *,
    settings: ProfileSettings | None = None,
    file: str = "<data>",
    source: str = "",
    created_at: str = "",
    progress: Progress | None = None,
) -> tuple[Profile, dict[str, InferredType]]:
    """Infer every column's type and summarise the monitorable ones, reading
    each column once.  Returns the profile and every column's guess."""
    chosen = settings or ProfileSettings()
    table = data if isinstance(data, Table) else FrameTable(data)

    def one(name: str) -> tuple[InferredType, FeatureProfile | None]:
        if progress is not None:
            progress(name)
        series = table.column(name)
        guess = infer_type(series)
        if guess.type is None:
            return guess, None
        return guess, summarise(series, guess.type, chosen, file=file, column=name)

    results = parallel_map(one, list(table.columns))
    guesses = {name: guess for name, (guess, _) in zip(table.columns, results, strict=True)}
    features = {name: summary for name, (_, summary) in zip(table.columns, results, strict=True)
                if summary is not None}
    profile = Profile(features=features, rows=table.rows, settings=chosen, columns=table.columns,
                      source=source, created_at=created_at)
    return profile, guesses


def require_values(profile: Profile, *, file: str) -> None:
    """A reference feature with no values at all cannot be a reference."""
    for name, feature in profile.features.items():
        if feature.count == 0:
            raise InputError(f"{file}: column {name!r} has no values (all missing)")


def fmt_share(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"
