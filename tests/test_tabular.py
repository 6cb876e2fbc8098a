"""Columns as Arrow arrays: the same types and profiles from Parquet, a
DataFrame and CSV, and no pandas on the Parquet path."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from monitor.batch import arrow as columns
from monitor.batch import tabular
from monitor.batch.tabular import FrameTable, ParquetTable, Table
from monitor.engine.profiles import CategoricalProfile, NumericProfile, ProfileSettings
from monitor.errors import InputError

ROWS = 600

EXPECTED_TYPES = {
    "income": ("numerical", "numeric column"),
    "children": ("numerical", "numeric column"),
    "member": ("boolean", "boolean column"),
    "flag": ("boolean", "only 0/1 values"),
    "region": ("categorical", "text column"),
    "channel": ("categorical", "text column"),
    "plan": ("categorical", "text column"),
    "amount_text": ("categorical", "text column (the values look like numbers: declare it "
                                   "numerical in a config to compare numbers)"),
    "customer_id": (None, "looks like an identifier (almost every value distinct)"),
    "seen_at": (None, "timestamps are not monitored"),
    "empty": (None, "no values"),
}


def configured_types() -> dict[str, str]:
    """The monitored columns' types as a config gives them: amount_text as numbers."""
    types = {n: t for n, (t, _) in EXPECTED_TYPES.items() if t is not None}
    return {**types, "amount_text": "numerical"}


def mixed_frame(rng: np.random.Generator, rows: int = ROWS) -> pd.DataFrame:
    income = np.round(rng.lognormal(10, 0.5, rows), 2)  # short decimals survive a CSV round trip
    income[rng.random(rows) < 0.1] = np.nan
    plan = rng.choice(["basic", "plus", "pro"], rows).astype(object)
    plan[rng.random(rows) < 0.15] = None
    return pd.DataFrame({
        "income": income,
        "children": rng.integers(0, 5, rows),
        "member": rng.random(rows) < 0.3,
        "flag": rng.integers(0, 2, rows),
        "region": pd.Categorical(rng.choice(["north", "south", "east"], rows),
                                 categories=["east", "north", "south", "west"]),
        "channel": rng.choice(["web", "app", "branch"], rows).astype(object),
        "plan": plan,
        "amount_text": [f"{v / 4:.2f}" for v in rng.integers(0, 2000, rows // 10)] * 10,
        "customer_id": [f"c{i:05d}" for i in range(rows)],
        "seen_at": pd.date_range("2026-01-01", periods=rows, freq="min"),
        "empty": np.full(rows, np.nan),
    })


@pytest.fixture
def frame(rng: np.random.Generator) -> pd.DataFrame:
    return mixed_frame(rng)


@pytest.fixture
def sources(frame: pd.DataFrame, tmp_path: Path) -> dict[str, Table]:
    parquet, csv = tmp_path / "t.parquet", tmp_path / "t.csv"
    frame.to_parquet(parquet)
    frame.to_csv(csv, index=False)
    return {"dataframe": FrameTable(frame), "parquet": tabular.open_table(parquet),
            "csv": tabular.open_table(csv)}


def summary(profile: NumericProfile | CategoricalProfile) -> tuple[object, ...]:
    """What a profile holds, comparable with ==."""
    if isinstance(profile, NumericProfile):
        return ("numerical", profile.sample.values.tolist(), profile.missing, profile.nonfinite,
                profile.invalid)
    return (profile.type, profile.as_dict(), profile.missing, profile.invalid, profile.other)


def test_parquet_tables_give_arrow_columns(sources):
    assert isinstance(sources["parquet"], ParquetTable)
    for table in sources.values():
        for name in table.columns:
            assert isinstance(table.column(name), pa.ChunkedArray), name


def test_a_dataframe_and_its_parquet_file_infer_the_same_types_with_the_same_reasons(sources):
    for source in ("dataframe", "parquet"):
        table = sources[source]
        guesses = {n: tabular.infer_type(table.column(n)) for n in table.columns}
        assert {n: (g.type, g.reason) for n, g in guesses.items()} == EXPECTED_TYPES, source


def test_csv_infers_the_same_types_except_where_csv_has_no_types(sources):
    table = sources["csv"]
    guesses = {n: tabular.infer_type(table.column(n)) for n in table.columns}
    expected = dict(EXPECTED_TYPES)
    # the CSV reader parses numbers itself, and a CSV timestamp is text, one per row here
    expected["amount_text"] = ("numerical", "numeric column")
    expected["seen_at"] = (None, "looks like an identifier (almost every value distinct)")
    assert {n: (g.type, g.reason) for n, g in guesses.items()} == expected


def test_profiles_are_the_same_from_a_dataframe_parquet_and_csv(sources):
    types = configured_types()
    profiles = {name: tabular.profile_frame(table, types) for name, table in sources.items()}
    reference = profiles["dataframe"]
    assert set(reference.features) == set(types)
    for name, profile in profiles.items():
        assert profile.rows == ROWS
        for feature in types:
            assert summary(profile.features[feature]) == summary(reference.features[feature]), \
                (name, feature)


def test_profiles_match_what_pandas_counts(frame):
    types = configured_types()
    profile = tabular.profile_frame(frame, types)
    income = profile.features["income"]
    assert isinstance(income, NumericProfile)
    assert np.array_equal(income.sample.values, np.sort(frame["income"].dropna().to_numpy()))
    assert income.missing == frame["income"].isna().sum()
    amounts = profile.features["amount_text"]
    assert isinstance(amounts, NumericProfile)
    assert np.array_equal(amounts.sample.values, np.sort(pd.to_numeric(frame["amount_text"])))
    for name in ("region", "channel", "plan"):
        feature = profile.features[name]
        assert isinstance(feature, CategoricalProfile)
        counts = frame[name].value_counts()
        assert feature.as_dict() == {str(k): int(v) for k, v in counts.items() if v}, name
        assert feature.missing == frame[name].isna().sum()
    member = profile.features["member"]
    assert isinstance(member, CategoricalProfile) and member.type == "boolean"
    assert member.as_dict() == {"true": int(frame["member"].sum()),
                                "false": int((~frame["member"]).sum())}
    flag = profile.features["flag"]
    assert isinstance(flag, CategoricalProfile)
    assert flag.as_dict() == {"true": int(frame["flag"].sum()),
                              "false": int((frame["flag"] == 0).sum())}


def test_profile_inferred_reads_each_type_like_infer_type(sources):
    for name, table in sources.items():
        profile, guesses = tabular.profile_inferred(table)
        monitored = {n for n, g in guesses.items() if g.type is not None}
        assert set(profile.features) == monitored, name


def test_boolean_words_and_invalid_values_are_counted_as_before():
    column = pa.chunked_array([pa.array(["yes", "No", " t ", "0.0", "maybe", None, "TRUE", "1"])])
    counts, missing, invalid = tabular.category_counts(column, "boolean")
    assert counts == {"true": 4, "false": 2} and missing == 1 and invalid == 1
    counts, missing, invalid = tabular.category_counts(column, "categorical")
    assert counts == {"yes": 1, "No": 1, " t ": 1, "0.0": 1, "maybe": 1, "TRUE": 1, "1": 1}
    assert missing == 1 and invalid == 0


def test_integral_floats_and_booleans_get_the_labels_of_category_label():
    floats = pa.chunked_array([pa.array([1.0, 2.0, 2.5, float("nan"), None])])
    counts, missing, invalid = tabular.category_counts(floats, "categorical")
    assert counts == {"1": 1, "2": 1, "2.5": 1} and missing == 2 and invalid == 0
    flags = pa.chunked_array([pa.array([True, False, True, None])])
    assert tabular.category_counts(flags, "categorical") == ({"true": 2, "false": 1}, 1, 0)


def test_a_non_number_in_a_numerical_text_column_names_the_file_column_row_and_value(tmp_path):
    values = ["41", "39", None, "forty" + "x" * 50, "12"]
    frame = pd.DataFrame({"age": values})
    parquet = tmp_path / "a.parquet"
    frame.to_parquet(parquet)
    expected = (f"data.csv: column 'age' is numerical but row 4 holds "
                f"{('forty' + 'x' * 50)[:40]!r}, which is not a number")
    for table in (FrameTable(frame), tabular.open_table(parquet)):
        with pytest.raises(InputError) as err:
            tabular.numeric_values(table.column("age"), file="data.csv", column="age")
        assert str(err.value) == expected


def test_numbers_as_text_are_read_as_pandas_reads_them():
    texts = ["1", " 2 ", "+3", "-4.5", ".5", "6.", "1e3", "1E-3", "inf", "-Infinity", "+INF",
             " inf", "nan", "NaN", "", " ", "1e", "e1", "1_000", "1,000", "0x10", "\xa01",
             "\u0661", "1e400", "0e999", "1e-400", "abc", "1 2", "--1", "1.2.3"]
    mine = [columns._parse_number(t) for t in texts]
    theirs = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").tolist()
    for text, a, b in zip(texts, mine, theirs, strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == b, (text, a, b)
    # the same through the column, where most values take Arrow's fast cast
    column = pa.chunked_array([pa.array(["1.5", "2", "1e3", "1e400", "0e999", "inf"] * 2)])
    numbers = tabular.numeric_values(column.slice(0, 3), file="f", column="c")
    assert numbers.tolist() == [1.5, 2.0, 1000.0]
    with pytest.raises(InputError, match="row 4 holds '1e400'"):
        tabular.numeric_values(column, file="f", column="c")


def test_nulls_and_nans_both_count_as_missing(tmp_path):
    values = pa.array([1.0, float("nan"), None, 0.0, 1.0], from_pandas=False)
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"x": values}), path)
    column = tabular.open_table(path).column("x")
    assert tabular.infer_type(column).type == "boolean"
    numbers = tabular.numeric_values(column, file="f", column="x")
    assert np.isnan(numbers).sum() == 2 and np.nansum(numbers) == 2.0
    assert tabular.category_counts(column, "boolean") == ({"true": 2, "false": 1}, 2, 0)
    all_nan = pa.chunked_array([pa.array([float("nan")] * 3, from_pandas=False)])
    assert tabular.infer_type(all_nan).reason == "no values"


def test_a_parquet_file_of_several_row_groups_counts_like_pandas(tmp_path, rng):
    n = 5000
    words = rng.choice(["a", "b", "c", "d", "e"], n).astype(object)
    words[rng.random(n) < 0.1] = None
    numbers = rng.normal(size=n)
    numbers[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame({"w": words, "x": numbers})
    path = tmp_path / "g.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=700)
    table = tabular.open_table(path)
    w = table.column("w")
    assert w.num_chunks > 1 and pa.types.is_dictionary(w.type)
    counts, missing, invalid = tabular.category_counts(w, "categorical")
    assert counts == {k: int(v) for k, v in frame["w"].value_counts().items()}
    assert missing == frame["w"].isna().sum() and invalid == 0
    x = tabular.numeric_values(table.column("x"), file="f", column="x")
    assert np.array_equal(x, frame["x"].to_numpy(), equal_nan=True)


def test_a_nullable_boolean_column_is_boolean(tmp_path):
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"b": pa.array([True, None, False, True])}), path)
    column = tabular.open_table(path).column("b")
    assert tabular.infer_type(column).type == "boolean"
    assert tabular.category_counts(column, "boolean") == ({"true": 2, "false": 1}, 1, 0)


def test_a_float_column_of_a_dataframe_is_read_without_a_copy_and_left_alone(frame):
    values = tabular.numeric_values(FrameTable(frame).column("income"), file="f", column="income")
    assert np.shares_memory(values, frame["income"].to_numpy())
    assert not values.flags.writeable


def test_a_mixed_object_column_is_text():
    mixed = pd.DataFrame({"m": pd.Series([1, "a", 2.5, None, "a"] * 30, dtype=object)})
    column = FrameTable(mixed).column("m")
    assert tabular.infer_type(column) == tabular.InferredType("categorical", "text column")
    counts, missing, _ = tabular.category_counts(column, "categorical")
    assert counts == {"1": 30, "a": 60, "2.5": 30} and missing == 30


def test_reading_parquet_and_checking_it_does_not_import_pandas(tables):
    code = (
        "import sys, io, contextlib\n"
        "from monitor.cli.main import main\n"
        "import monitor.batch.tabular as t\n"
        "assert 'pandas' not in sys.modules, 'importing the CLI imported pandas'\n"
        "table = t.open_table(sys.argv[1])\n"
        "[t.infer_type(table.column(c)) for c in table.columns]\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = main(['check', '-r', sys.argv[1], '-c', sys.argv[2], '--format', 'json'])\n"
        "print(code, 'pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tables["ref"]), str(tables["shifted"])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False"]


def test_read_table_still_gives_a_dataframe_with_categorical_text(tmp_path, frame):
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    df = tabular.read_table(path)
    assert list(df.columns) == list(frame.columns)
    assert isinstance(df["channel"].dtype, pd.CategoricalDtype)
    assert np.array_equal(df["income"].to_numpy(), frame["income"].to_numpy(), equal_nan=True)


def test_profiles_accept_a_settings_cap_the_same_way_from_every_source(sources):
    capped = ProfileSettings(max_categories=2)
    results = [summary(tabular.profile_frame(t, {"region": "categorical"}, settings=capped)
                       .features["region"]) for t in sources.values()]
    assert results[0] == results[1] == results[2]
