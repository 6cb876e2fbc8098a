"""Issue 11, the batch side: profiles built from a config, type inference of
text columns, and what loading a file that is not a profile says."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from monitor.batch import profile_io
from monitor.errors import ProfileError

# --- a file that is not a profile -------------------------------------------


def _object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _object_npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, header=np.array(["x", {"b": 2}], dtype=object))
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [np.random.default_rng(11).bytes(4096), _object_npy(), _object_npz()],
    ids=["random bytes", "npy of objects", "npz of objects"],
)
def test_a_file_that_is_not_a_profile_says_only_that_and_never_mentions_pickle(
        tmp_path: Path, data: bytes):
    path = tmp_path / "odd.dlprofile"
    path.write_bytes(data)
    with pytest.raises(ProfileError) as info:
        profile_io.load(path)
    assert str(info.value) == f"{path}: not a driftline profile"
    assert "pickle" not in str(info.value).lower()


# --- a profile built from a config ------------------------------------------

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.mark.parametrize("reference", ["reference.csv", "reference.parquet"])
def test_a_profile_built_from_a_config_holds_every_feature_the_service_monitors(
        tmp_path: Path, reference: str):
    from monitor.batch.check import build_profile, plan_from_config
    from monitor.config import load_config
    from monitor.streaming.setups import model_setup

    config = SAMPLE / "driftline.yaml"
    out = tmp_path / "flights.dlprofile"
    build_profile(str(SAMPLE / "flights" / reference), plan_from_config(str(config), None),
                  str(out), created_at="2026-12-06T00:00:00+00:00")
    profile = profile_io.load(out)
    # the rule of POST /models/{m}/reference (Service.upload_reference): every
    # feature of the model's setup, the prediction included, with the same type
    setup = model_setup(load_config(config), "flight-delay", created_at="")
    assert "delay_score" in [f.name for f in setup.features]
    assert {f.name: profile.features[f.name].type for f in setup.features
            if f.name in profile.features} == {f.name: f.type for f in setup.features}


# --- text columns that look like numbers --------------------------------------

ZIPS = ["02134", "10001", "94105", "00501", "60601", "30301", "02215", "73301", "98101", "33101",
        "08540", "19103"]


def _zips(rng: np.random.Generator, n: int, codes: list[str] = ZIPS) -> list[str]:
    return [str(z) for z in rng.choice(codes, n)]


def _check(tmp_path: Path, reference: Path, current: Path) -> tuple[dict[str, str], object]:
    from monitor.batch.check import ModelPlan, run_check

    result = run_check(str(reference), str(current), ModelPlan("", None))
    return result.inferred, {f.name: f for f in result.report.features}


def test_a_parquet_string_column_of_zip_codes_is_categorical_and_keeps_its_leading_zeros(
        tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    ref, cur = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    zips = _zips(rng, 500)
    pq.write_table(pa.table({"zip": pa.array(zips, type=pa.string())}), ref)
    new = _zips(rng, 300) + ["01060"] * 20
    pq.write_table(pa.table({"zip": pa.array(new, type=pa.large_string())}), cur)
    inferred, features = _check(tmp_path, ref, cur)
    assert "zip" in inferred and features["zip"].type == "categorical"  # type: ignore[index]
    assert features["zip"].new_categories == ("01060",)  # type: ignore[index]
    from monitor.batch import tabular

    profile, _ = tabular.profile_inferred(tabular.open_table(ref))
    counts = pq.read_table(ref).column("zip").value_counts().to_pylist()
    assert profile.features["zip"].as_dict() == {  # type: ignore[union-attr]
        c["values"]: c["counts"] for c in counts}


def test_a_parquet_string_column_of_plain_numbers_is_categorical_too(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from monitor.batch import tabular

    path = tmp_path / "codes.parquet"
    rng = np.random.default_rng(12)
    pq.write_table(pa.table({"code": pa.array([str(v) for v in rng.integers(100, 130, 400)])}),
                   path)
    guess = tabular.infer_type(tabular.open_table(path).column("code"))
    assert guess.type == "categorical"
    assert "look like numbers" in guess.reason


def test_a_pandas_category_of_number_like_strings_in_parquet_is_categorical(tmp_path: Path):
    import pandas as pd

    from monitor.batch import tabular

    path = tmp_path / "cat.parquet"
    rng = np.random.default_rng(13)
    pd.DataFrame({"grade": pd.Categorical([str(v) for v in rng.integers(1, 20, 400)])}
                 ).to_parquet(path)
    guess = tabular.infer_type(tabular.open_table(path).column("grade"))
    assert guess.type == "categorical"


def test_a_csv_column_of_codes_with_leading_zeros_is_categorical_and_keeps_them(tmp_path: Path):
    import pandas as pd

    from monitor.batch import tabular

    path = tmp_path / "zips.csv"
    rng = np.random.default_rng(14)
    zips = _zips(rng, 400)
    zips[::50] = [""] * 8  # missing
    path.write_text("zip,n\n" + "".join(f"{z},{i}\n" for i, z in enumerate(zips)))
    profile, guesses = tabular.profile_inferred(tabular.open_table(path))
    assert guesses["zip"].type == "categorical"
    assert "leading zero" in guesses["zip"].reason and "'0" in guesses["zip"].reason
    expected = pd.read_csv(path, dtype=str)["zip"].value_counts()
    assert profile.features["zip"].as_dict() == {  # type: ignore[union-attr]
        str(k): int(v) for k, v in expected.items()}
    assert profile.features["zip"].missing == 8
    # the file's other number column is still read as numbers
    assert (guesses["n"].type, guesses["n"].reason) == ("numerical", "numeric column")


@pytest.mark.parametrize(
    "values",
    [["12", "7", "130", "45", "9"], ["0", "0.5", "-0.3", "1.25", "10"], ["0", "1", "2", "30", "-0"]],
    ids=["plain integers", "decimals and a zero", "integers from zero"],
)
def test_a_csv_column_of_numbers_without_leading_zero_codes_stays_numerical(
        tmp_path: Path, values: list[str]):
    import pandas as pd

    from monitor.batch import tabular

    path = tmp_path / "numbers.csv"
    path.write_text("x\n" + "".join(f"{v}\n" for v in values * 40))
    assert pd.api.types.is_numeric_dtype(pd.read_csv(path)["x"])  # what pandas reads
    guess = tabular.infer_type(tabular.open_table(path).column("x"))
    assert (guess.type, guess.reason) == ("numerical", "numeric column")


# --- compressed and uncompressed profiles ---------------------------------------


def test_a_compressed_profile_loads_the_same_as_the_uncompressed_one():
    from monitor.batch import tabular
    from monitor.engine import profile_codec

    profile, _ = tabular.profile_inferred(tabular.open_table(SAMPLE / "flights" / "reference.csv"))
    plain = profile_codec.dumps(profile)
    small = profile_codec.dumps(profile, compress=True)
    assert len(small) < len(plain)
    assert profile_codec.dumps(profile_codec.loads(small)) == plain  # byte for byte
