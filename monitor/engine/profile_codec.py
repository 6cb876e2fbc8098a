"""A profile as bytes and back: the saved-profile format, pure (no files).

Files are read and written by :mod:`monitor.batch.profile_io`.

Format (version 1): a numpy ``.npz`` archive (a zip of ``.npy`` arrays,
loaded with ``allow_pickle=False``, so loading never runs code):

* ``header``: UTF-8 JSON as uint8 bytes::

    {"format": "driftline-profile", "version": 1, "rows": 20000,
     "created_at": "...", "source": "...", "columns": [...],
     "settings": {"exact_cap": 100000, "sketch_k": 1024, "max_categories": 200},
     "features": [{"name": "dep_delay", "type": "numerical", "key": "f0",
                   "n": 19500, "missing": 500, "nonfinite": 0, "invalid": 0,
                   "min": ..., "max": ..., "mean": ..., "std": ...,
                   "exact": true, "rank_error": 0.0},
                  {"name": "origin", "type": "categorical", "key": "f1",
                   "categories": ["EWR", "JFK", "LGA"], "missing": 0, "other": 0,
                   "invalid": 0}]}

* ``f<i>.values``: float64 sorted sample (numerical, exact) or quantile grid;
* ``f<i>.sketch``: uint8 serialized KLL sketch (numerical, sketched only);
* ``f<i>.counts``: int64 counts aligned with ``categories``.

Anything malformed raises :class:`~monitor.errors.ProfileError` with one line.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np

from monitor.engine.profiles import (
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    Profile,
    ProfileSettings,
)
from monitor.engine.stats.samples import NumericSample
from monitor.errors import ProfileError

FORMAT = "driftline-profile"
VERSION = 1


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _unnum(value: Any) -> float:
    return math.nan if value is None else float(value)


def dumps(profile: Profile, *, compress: bool = False) -> bytes:
    """The profile as the bytes of an ``.npz`` archive, deflated when
    ``compress`` is True (:func:`loads` reads both)."""
    arrays: dict[str, np.ndarray] = {}
    entries: list[dict[str, Any]] = []
    for i, (name, feature) in enumerate(profile.features.items()):
        key = f"f{i}"
        entry: dict[str, Any] = {"name": name, "type": feature.type, "key": key,
                                 "missing": feature.missing, "invalid": feature.invalid}
        if isinstance(feature, NumericProfile):
            entry.update(n=feature.count, nonfinite=feature.nonfinite, min=_num(feature.minimum),
                         max=_num(feature.maximum), mean=_num(feature.mean), std=_num(feature.std),
                         exact=feature.exact, rank_error=feature.rank_error)
            arrays[f"{key}.values"] = feature.sample.values
            if feature.sketch is not None:
                arrays[f"{key}.sketch"] = np.frombuffer(feature.sketch, dtype=np.uint8)
        else:
            entry.update(categories=list(feature.categories), other=feature.other)
            arrays[f"{key}.counts"] = feature.counts
        entries.append(entry)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "rows": profile.rows,
        "created_at": profile.created_at,
        "source": profile.source,
        "columns": list(profile.columns),
        "settings": {"exact_cap": profile.settings.exact_cap,
                     "sketch_k": profile.settings.sketch_k,
                     "max_categories": profile.settings.max_categories},
        "features": entries,
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    # uncompressed by default: on the 100k x 20 benchmark table deflate saves
    # only 38% (10.6 -> 6.6 MiB) but makes loading 2-4.6x and saving 18-27x
    # slower (benchmarks/bench_profile_size.py); a reference with many ties
    # (the flights sample) shrinks 98%, which compress=True is there for
    save = np.savez_compressed if compress else np.savez
    save(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def loads(data: bytes, name: str = "<profile>") -> Profile:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception:  # numpy raises many kinds for corrupt input
        # and its text is advice for numpy users ("allow_pickle=True" would run
        # the file's code): nothing in it helps someone who gave the wrong file
        raise ProfileError(f"{name}: not a driftline profile") from None
    try:
        header = json.loads(bytes(arrays.pop("header")).decode())
    except KeyError:
        raise ProfileError(f"{name}: not a driftline profile (no header)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{name}: profile header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ProfileError(f"{name}: not a driftline profile (wrong format marker)")
    if header.get("version") != VERSION:
        raise ProfileError(
            f"{name}: profile version {header.get('version')!r} is not supported (expected {VERSION})"
        )
    try:
        return _build(header, arrays)
    except ProfileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"{name}: malformed profile ({type(exc).__name__}: {exc})") from None


def _build(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> Profile:
    s = header["settings"]
    settings = ProfileSettings(exact_cap=s["exact_cap"], sketch_k=int(s["sketch_k"]),
                               max_categories=int(s["max_categories"]))
    features: dict[str, FeatureProfile] = {}
    for entry in header["features"]:
        key, kind = entry["key"], entry["type"]
        if kind == "numerical":
            values = np.asarray(arrays[f"{key}.values"], dtype=np.float64)
            n = int(entry["n"])
            if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
                raise ValueError(f"feature {entry['name']!r}: values are not a sorted finite array")
            exact = bool(entry["exact"])
            if exact and values.size != n:
                raise ValueError(f"feature {entry['name']!r}: {values.size} values but n={n}")
            sample = NumericSample(values, n, exact) if n else NumericSample.empty()
            sketch_arr = arrays.get(f"{key}.sketch")
            features[entry["name"]] = NumericProfile(
                sample=sample,
                missing=int(entry["missing"]),
                nonfinite=int(entry["nonfinite"]),
                invalid=int(entry["invalid"]),
                minimum=_unnum(entry["min"]),
                maximum=_unnum(entry["max"]),
                mean=_unnum(entry["mean"]),
                std=_unnum(entry["std"]),
                sketch=None if sketch_arr is None else bytes(sketch_arr.astype(np.uint8)),
                rank_error=float(entry["rank_error"]),
            )
        elif kind in ("categorical", "boolean"):
            counts = np.asarray(arrays[f"{key}.counts"], dtype=np.int64)
            categories = tuple(str(c) for c in entry["categories"])
            if counts.shape != (len(categories),) or np.any(counts < 0):
                raise ValueError(f"feature {entry['name']!r}: counts do not match categories")
            features[entry["name"]] = CategoricalProfile(
                categories=categories,
                counts=counts,
                missing=int(entry["missing"]),
                other=int(entry["other"]),
                invalid=int(entry["invalid"]),
                type=kind,
            )
        else:
            raise ValueError(f"feature {entry['name']!r}: unknown type {kind!r}")
    return Profile(
        features=features,
        rows=int(header["rows"]),
        settings=settings,
        columns=tuple(header.get("columns", ())),
        source=str(header.get("source", "")),
        created_at=str(header.get("created_at", "")),
    )
