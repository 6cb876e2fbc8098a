"""Profiles on disk: save, load and recognise a saved profile file.

The format itself (bytes in, :class:`~monitor.engine.profiles.Profile` out) is
:mod:`monitor.engine.profile_codec`; this module only adds the files.
"""

from __future__ import annotations

from pathlib import Path

from monitor.engine.profile_codec import dumps, loads
from monitor.engine.profiles import Profile
from monitor.errors import ProfileError


def save(profile: Profile, path: str | Path) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(dumps(profile))
    tmp.replace(target)  # never leave a half-written profile behind


PROFILE_SUFFIXES = {".dlprofile", ".npz", ".profile"}


def is_profile(path: str | Path) -> bool:
    """Whether a path should be read as a profile: a zip archive (CSV and
    Parquet never start with the zip magic) or a profile file name."""
    p = Path(path)
    if p.suffix.lower() in PROFILE_SUFFIXES:
        return True
    try:
        with p.open("rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def load(path: str | Path) -> Profile:
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(f"{name}: cannot read profile: {exc.strerror or exc}") from None
    return loads(data, name)
