"""Checkpoints of a windower's panes, as bytes.

The bytes are a magic line, a JSON header (spec, features, settings, the
windower's counters and one entry per pane with its exact moments) and one
:mod:`monitor.batch.profile_io` profile per pane, each length-prefixed.
:meth:`~monitor.engine.windows.Windower.snapshot` and
:meth:`~monitor.engine.windows.Windower.restore` use these pieces; malformed bytes
raise :class:`~monitor.errors.ProfileError`.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from monitor.engine import profile_codec
from monitor.engine.profiles import (
    CategoricalAccumulator,
    CategoricalProfile,
    FeatureProfile,
    FeatureType,
    NumericAccumulator,
    NumericProfile,
    Profile,
    ProfileSettings,
)
from monitor.engine.windows.panes import _Pane
from monitor.engine.windows.spec import WindowSpec
from monitor.errors import ProfileError

_SNAPSHOT_MAGIC = b"DRIFTLINE-WINDOWS\n"
_SNAPSHOT_FORMAT = "driftline-windows"
_SNAPSHOT_VERSION = 1


# the moments an accumulator keeps; freeze() hands out std = sqrt(m2 / n), which loses
# the last bits, so checkpoints carry (mean, m2) and put them back after thawing
def _moments(acc: NumericAccumulator) -> list[float]:
    return list(acc.moments)


def _set_moments(acc: NumericAccumulator, moments: Sequence[float]) -> None:
    acc.set_moments(float(moments[0]), float(moments[1]))


def _config_header(spec: WindowSpec, features: Mapping[str, FeatureType],
                   settings: ProfileSettings) -> dict[str, Any]:
    """What a snapshot must agree on with the windower it is restored into."""
    s = settings
    return {
        "spec": spec.as_dict(),
        "features": dict(features),
        "settings": {"exact_cap": s.exact_cap, "sketch_k": s.sketch_k,
                     "max_categories": s.max_categories},
    }


def _dump_pane(pane: _Pane, kinds: Mapping[str, FeatureType], settings: ProfileSettings
               ) -> tuple[dict[str, Any], bytes]:
    """A pane as its header entry and its profile's bytes."""
    features: dict[str, FeatureProfile] = {}
    for name, kind in kinds.items():
        features[name] = (pane.numeric[name].freeze() if kind == "numerical"
                          else pane.categorical[name].freeze())
    blob = profile_codec.dumps(Profile(features=features, rows=pane.rows, settings=settings))
    entry = {"start": pane.start, "rows": pane.rows,
             "unknown": dict(pane.unknown),
             "moments": {k: _moments(a) for k, a in pane.numeric.items()}}
    return entry, blob


def _thaw_pane(entry: Mapping[str, Any], blob: bytes, kinds: Mapping[str, FeatureType],
               settings: ProfileSettings) -> _Pane:
    """The pane of a header entry and its profile's bytes (``ValueError`` and the
    like when they do not fit ``kinds``)."""
    profile = profile_codec.loads(blob, "window snapshot pane")
    pane = _Pane(int(entry["start"]), kinds, settings)
    pane.rows = int(entry["rows"])
    for name, kind in kinds.items():
        feature = profile.features[name]
        if kind == "numerical":
            if not isinstance(feature, NumericProfile):
                raise ValueError(f"feature {name!r} is not numerical in the snapshot")
            acc = NumericAccumulator.thaw(feature, settings)
            _set_moments(acc, entry["moments"][name])
            pane.numeric[name] = acc
        else:
            if not isinstance(feature, CategoricalProfile) or feature.type != kind:
                raise ValueError(f"feature {name!r} is not {kind} in the snapshot")
            pane.categorical[name] = CategoricalAccumulator.thaw(feature, settings)
    pane.unknown = Counter({str(k): int(v) for k, v in entry["unknown"].items()})
    return pane


def _pack(state: Mapping[str, Any], blobs: Sequence[bytes]) -> bytes:
    """The snapshot bytes of a windower's ``state`` (the JSON header) and pane profiles."""
    header = {"format": _SNAPSHOT_FORMAT, "version": _SNAPSHOT_VERSION, **state}
    head = json.dumps(header).encode()
    parts = [_SNAPSHOT_MAGIC, struct.pack(">I", len(head)), head]
    for blob in blobs:
        parts += [struct.pack(">Q", len(blob)), blob]
    return b"".join(parts)


def _unpack(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """The header and pane profiles of snapshot bytes of this format and version."""
    header, blobs = _split_snapshot(data)
    if header.get("format") != _SNAPSHOT_FORMAT or header.get("version") != _SNAPSHOT_VERSION:
        raise ProfileError("window snapshot: wrong format or unsupported version")
    return header, blobs


def _split_snapshot(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    view = memoryview(data)
    if bytes(view[: len(_SNAPSHOT_MAGIC)]) != _SNAPSHOT_MAGIC:
        raise ProfileError("not a driftline window snapshot")
    pos = len(_SNAPSHOT_MAGIC)
    try:
        (size,) = struct.unpack_from(">I", view, pos)
        pos += 4
        if pos + size > len(view):
            raise ValueError("header runs past the end")
        header = json.loads(bytes(view[pos:pos + size]).decode())
        pos += size
        blobs: list[bytes] = []
        while pos < len(view):
            (size,) = struct.unpack_from(">Q", view, pos)
            pos += 8
            if pos + size > len(view):
                raise ValueError("pane runs past the end")
            blobs.append(bytes(view[pos:pos + size]))
            pos += size
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ProfileError(f"window snapshot is truncated or corrupt ({exc})") from None
    if not isinstance(header, dict):
        raise ProfileError("window snapshot header is not a JSON object")
    return header, blobs
