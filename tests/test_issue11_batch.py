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
