"""Reference profiles: building, merging and the saved file format."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from monitor.batch import profile_io
from monitor.engine import profile_codec
from monitor.engine.profiles import (
    OTHER,
    CategoricalAccumulator,
    CategoricalProfile,
    NumericAccumulator,
    NumericProfile,
    Profile,
    ProfileSettings,
)
from monitor.engine.stats.ks import ks_test
from monitor.engine.stats.samples import NumericSample
from monitor.errors import ProfileError


def numeric(values: np.ndarray, settings: ProfileSettings) -> NumericProfile:
    return NumericAccumulator(settings).update(values).freeze()


def test_exact_profile_holds_the_sorted_sample_and_moments_equal_numpy(rng):
    x = rng.normal(3, 2, 5000)
    x[::7] = np.nan
    p = numeric(x, ProfileSettings())
    finite = x[~np.isnan(x)]
    assert p.exact and np.array_equal(p.sample.values, np.sort(finite))
    assert p.missing == np.isnan(x).sum()
    assert p.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert p.std == pytest.approx(finite.std(), rel=1e-12)
    assert (p.minimum, p.maximum) == (finite.min(), finite.max())


def test_profiles_of_two_halves_merge_to_the_exact_profile_of_the_whole(rng):
    x = rng.gamma(2.0, 3.0, 8000)
    settings = ProfileSettings(exact_cap=10_000)
    whole = numeric(x, settings)
    merged = (Profile({"x": numeric(x[:3000], settings)}, 3000, settings)
              + Profile({"x": numeric(x[3000:], settings)}, 5000, settings))
    m = merged.features["x"]
    assert isinstance(m, NumericProfile) and m.exact
    assert np.array_equal(m.sample.values, whole.sample.values)
    current = NumericSample.from_values(rng.gamma(2.2, 3.0, 700))
    expected = stats.ks_2samp(x, current.values)
    got = ks_test(m.sample, current)
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert got.p_value == pytest.approx(expected.pvalue, abs=1e-12)
    assert m.mean == pytest.approx(x.mean(), rel=1e-12)
    assert m.std == pytest.approx(x.std(), rel=1e-10)


def test_merged_sketch_profiles_match_the_exact_ks_statistic_within_the_stated_rank_error(rng):
    x = rng.normal(size=60_000)
    settings = ProfileSettings(exact_cap=5_000, sketch_k=1024)
    halves = [Profile({"x": numeric(part, settings)}, part.size, settings)
              for part in (x[:25_000], x[25_000:])]
    merged = (halves[0] + halves[1]).features["x"]
    assert isinstance(merged, NumericProfile) and not merged.exact
    assert merged.count == x.size and merged.rank_error > 0
    current = rng.normal(0.05, 1, 4000)
    exact = stats.ks_2samp(x, current)
    got = ks_test(merged.sample, NumericSample.from_values(current))
    # the sketch's CDF is within rank_error of the truth; the grid adds 1/(2*4096)
    bound = merged.rank_error + 1 / 4096
    assert abs(got.statistic - exact.statistic) <= bound


def test_exact_profile_turns_into_a_sketch_past_the_cap_and_memory_stays_bounded(rng):
    acc = NumericAccumulator(ProfileSettings(exact_cap=1000, sketch_k=200))
    for _ in range(50):
        acc.update(rng.normal(size=1000))
        assert acc.held_values <= 3000
    assert not acc.freeze().exact


def test_categories_beyond_the_cap_fold_into_other_and_merge_keeps_counts():
    settings = ProfileSettings(max_categories=2)
    a = CategoricalAccumulator(settings).update(["a", "a", "b", "c", None])
    b = CategoricalAccumulator(settings).update(["d", "a", None, None])
    merged = (a + b).freeze()
    assert merged.as_dict() == {"a": 3, "b": 1, OTHER: 2}
    assert merged.missing == 3 and merged.rows == 9


def test_saved_profile_loads_back_identically(tmp_path: Path, rng):
    settings = ProfileSettings(exact_cap=500)
    prof = Profile(
        {"x": numeric(rng.normal(size=2000), settings),
         "y": numeric(np.array([1.0, np.nan, 2.0]), settings),
         "c": CategoricalAccumulator(settings).update(["u", "v", "u"]).freeze()},
        rows=2000, settings=settings, columns=("x", "y", "c", "extra"), source="t",
        created_at="2026-11-28T00:00:00+00:00")
    path = tmp_path / "p.dlprofile"
    profile_io.save(prof, path)
    back = profile_io.load(path)
    assert back.rows == 2000 and back.columns == prof.columns and back.settings == settings
    x0, x1 = prof.features["x"], back.features["x"]
    assert isinstance(x0, NumericProfile) and isinstance(x1, NumericProfile)
    assert np.array_equal(x0.sample.values, x1.sample.values) and x1.sketch == x0.sketch
    assert x1.sample.n == 2000 and not x1.exact
    c1 = back.features["c"]
    assert isinstance(c1, CategoricalProfile) and c1.as_dict() == {"u": 2, "v": 1}


def _header_archive(header: object, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip at all", "not a driftline profile"),
        (_header_archive({"format": "other"}), "wrong format marker"),
        (_header_archive({"format": "driftline-profile", "version": 99}), "version 99"),
        (_header_archive({"format": "driftline-profile", "version": 1}), "malformed profile"),
        (_header_archive({"format": "driftline-profile", "version": 1, "rows": 3,
                          "settings": {"exact_cap": 10, "sketch_k": 8, "max_categories": 5},
                          "features": [{"name": "x", "type": "numerical", "key": "f0", "n": 3,
                                        "missing": 0, "invalid": 0, "nonfinite": 0, "min": 0,
                                        "max": 1, "mean": 0, "std": 1, "exact": True,
                                        "rank_error": 0}]},
                         **{"f0.values": np.array([3.0, 1.0, 2.0])}), "not a sorted"),
    ],
)
def test_malformed_profiles_raise_one_line_profile_errors(data: bytes, message: str):
    with pytest.raises(ProfileError) as info:
        profile_codec.loads(data, "bad.dlprofile")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_truncated_profile_file_is_a_profile_error(tmp_path: Path, rng):
    settings = ProfileSettings()
    prof = Profile({"x": numeric(rng.normal(size=100), settings)}, 100, settings)
    data = profile_codec.dumps(prof)
    assert zipfile.is_zipfile(io.BytesIO(data))
    with pytest.raises(ProfileError):
        profile_codec.loads(data[: len(data) // 2], "cut.dlprofile")
