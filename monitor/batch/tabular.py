"""Tables at the edge: reading CSV/Parquet, inferring feature types, and
turning columns into a :class:`~monitor.engine.profiles.Profile`.

This is the only module of the drift engine that touches files of data.
Columns are Arrow arrays: a Parquet file is read one column at a time without
pandas, and a DataFrame (or a CSV file, which pandas reads) is seen through
Arrow, mostly without copying.  Every problem with the input becomes an
:class:`InputError` with one line that names the file and the column.

pandas is imported only where a DataFrame is made (CSV files,
:func:`read_table`): importing it costs a third of a second, and many
pyarrow entry points that build arrays from Python objects (``pa.array``,
``pa.scalar``, ``to_numpy``) import it too, so the column code below reads
Arrow buffers with numpy and never calls them on the Parquet path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from monitor.batch.arrow import (  # noqa: F401  (re-exported: the public column API)
    FALSE_WORDS,
    LEADING_ZERO,
    TRUE_WORDS,
    Column,
    InferredType,
    category_counts,
    from_pandas,
    infer_type,
    is_text,
    numeric_values,
)
from monitor.engine.parallel import parallel_map
from monitor.engine.profiles import (
    CategoricalAccumulator,
    FeatureProfile,
    FeatureType,
    NumericAccumulator,
    Profile,
    ProfileSettings,
)
from monitor.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}

Progress = Callable[[str], None]


def release_memory_eagerly() -> None:
    """Make Arrow allocate through malloc, which hands freed column buffers
    back at once; its default pool (jemalloc/mimalloc) keeps them cached.
    For one-shot commands, where the peak RSS is what counts."""
    pa.set_memory_pool(pa.system_memory_pool())


class Table:
    """Named columns of one data file or DataFrame, each loaded when asked for
    as a :class:`pyarrow.ChunkedArray`.

    Parquet files are read one column at a time, so checking a file never
    holds more than its profile plus the column in hand.
    """

    def __init__(self, name: str, columns: Sequence[str], rows: int) -> None:
        self.name = name
        self.columns = tuple(str(c) for c in columns)
        self.rows = rows

    def column(self, name: str) -> Column:
        raise NotImplementedError


class FrameTable(Table):
    """A DataFrame already in memory; its columns are seen as Arrow arrays."""

    def __init__(self, frame: pd.DataFrame, name: str = "<data>") -> None:
        super().__init__(name, [str(c) for c in frame.columns], int(frame.shape[0]))
        self._frame = frame

    def column(self, name: str) -> Column:
        return from_pandas(self._frame[name])


class ParquetTable(Table):
    """A Parquet file; string columns come back dictionary-encoded."""

    def __init__(self, path: Path) -> None:
        try:
            with pq.ParquetFile(path) as parquet:
                schema = parquet.schema_arrow
                metadata = parquet.metadata
            rows = int(metadata.num_rows)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
        index = set()
        meta = schema.pandas_metadata or {}  # plain JSON: this does not import pandas
        for entry in meta.get("index_columns", []):
            if isinstance(entry, str):  # a stored pandas index is not a feature
                index.add(entry)
        self._strings = {f.name for f in schema if is_text(f.type)}
        self._path = path
        self._metadata = metadata
        super().__init__(str(path), [n for n in schema.names if n not in index], rows)

    def column(self, name: str) -> Column:
        try:
            # a file object per read (columns are read from several threads); the
            # footer is parsed once; pandas metadata is not used, so pandas is not imported
            with pq.ParquetFile(self._path, metadata=self._metadata,
                                read_dictionary=[name] if name in self._strings else None) as parquet:
                return parquet.read(columns=[name], use_pandas_metadata=False).column(0)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(
                f"{self._path}: column {name!r} cannot be read ({_first_line(exc)})") from None


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
    import pandas as pd

    table = open_table(path)
    if isinstance(table, FrameTable):
        return table._frame
    return pd.DataFrame({name: table.column(name).to_pandas() for name in table.columns})


def _read_csv(p: Path) -> pd.DataFrame:
    import pandas as pd

    sep = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        frame = pd.read_csv(p, sep=sep, low_memory=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{p}: file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(f"{p}: not a readable CSV file ({_first_line(exc)})") from None
    _keep_leading_zero_codes(p, sep, frame)
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].astype("category")
    return frame


def _keep_leading_zero_codes(p: Path, sep: str, frame: pd.DataFrame) -> None:
    """Columns that pandas read as numbers but that hold codes written with a
    leading zero ("02134") become their text again: the zero is part of the
    code, and 02134 is no quantity.  Only columns of whole numbers can hold
    such codes, and only those are read again, as text."""

    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    whole = [str(name) for name in frame.columns if _whole_numbers(frame[name])]
    if not whole:
        return
    try:  # Arrow's reader: many threads, and the text stays Arrow strings
        text = pcsv.read_csv(p, parse_options=pcsv.ParseOptions(delimiter=sep),
                             convert_options=pcsv.ConvertOptions(
                                 include_columns=whole, column_types=dict.fromkeys(whole, pa.string()),
                                 strings_can_be_null=True))  # pandas' words for missing
    except (pa.ArrowException, OSError, ValueError):
        return  # pandas read it: a reader's quirk is no reason to fail here
    for name in whole:
        values = text.column(name)
        if pc.any(pc.match_substring_regex(values, "^" + LEADING_ZERO.pattern)).as_py():
            frame[name] = values.to_pandas().astype(object)  # made a category below


def _whole_numbers(series: pd.Series) -> bool:
    """An integer column, or a float one whose values are all whole (a column
    of integers with a missing value)."""
    kind = series.dtype.kind
    if kind in "iu":
        return True
    if kind != "f":
        return False
    values = series.to_numpy()
    return bool(np.all((values == np.floor(values)) | np.isnan(values)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- pandas columns as Arrow ------------------------------------------------


def label_values(column: Column) -> NDArray[Any]:
    """Targets or predictions: float64 (NaN missing) for numbers and booleans,
    else an object array of strings with None for missing."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return numeric_values(column, file="", column="")
    return np.array([None if v is None else str(v) for v in column.to_pylist()], dtype=object)


def summarise(data: Column, feature_type: FeatureType, settings: ProfileSettings, *,
              file: str, column: str) -> FeatureProfile:
    """One column's summary."""
    if feature_type == "numerical":
        acc = NumericAccumulator(settings)
        acc.update(numeric_values(data, file=file, column=column))
        return acc.freeze()
    counts, missing, invalid = category_counts(data, feature_type)
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
        values = table.column(name)
        guess = infer_type(values)
        if guess.type is None:
            return guess, None
        return guess, summarise(values, guess.type, chosen, file=file, column=name)

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
