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
