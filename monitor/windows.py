"""Windows over a stream of prediction rows: the "current" side of drift.

A :class:`Windower` takes the rows one model serves, in batches, and cuts
them into windows; every window that closes comes back as a
:class:`ClosedWindow` holding a :class:`~monitor.profiles.Profile`, the same
kind of object as a reference profile, so the analysis compares one with the
other.

Windows (:class:`WindowSpec`)
    * count windows: ``WindowSpec(size=1000)`` closes every 1000 rows;
      ``WindowSpec(size=1000, slide=250)`` closes a window of the last 1000
      rows every 250 rows, from the first full window on.  Boundaries are
      exact: a batch may close several windows and is split at them.
    * time windows: ``WindowSpec(duration_s=60)`` closes windows aligned to
      multiples of 60 s since the epoch (``[k*60 s, (k+1)*60 s)``);
      ``WindowSpec(duration_s=60, slide=10)`` closes the window of the last
      60 s at every multiple of 10 s.  Time is event time, the
      ``timestamps_ms`` given with the rows, or else the injected ``clock``
      (seconds, ``time.time`` in production, a fake in tests) read once per
      batch.  A window closes when an event at or beyond its end arrives, or
      when :meth:`Windower.tick` is called with a clock time at or beyond it,
      which closes windows of a quiet stream (pass ``now - grace`` to wait
      for stragglers).  Windows without rows are not emitted.  The first
      sliding time window emitted is the first that starts at or after the
      start of the pane of the first event, so no window is reported half
      empty only because the windower started late.

Slides must divide the window (``size % slide == 0``, and the same in whole
milliseconds for time windows): a window is then the merge of the last
``size / slide`` panes, sub-windows of ``slide`` rows or seconds, and each
row is summarised once.  Other slides would need panes of the greatest common
divisor, up to one per row, so they are refused.

Late events
    A time-window event whose timestamp lies before the start of the open
    pane (for tumbling windows, the open window) is counted in
    :attr:`Windower.late_events` and dropped.  Events are taken in the order
    they arrive, so the result does not depend on how rows are batched;
    out-of-order events inside the open pane are fine.  Windows already
    emitted never change.

Values
    numerical: ``int``/``float``/numeric strings are numbers, ``bool`` is
    1.0/0.0, ``None``/NaN is missing, +/-inf is non-finite; anything else
    (text that is not a number, ``""``, dicts, lists) is *invalid*, counted
    and kept out of the sample.  categorical: ``str``, numbers and booleans
    are categories (labelled as in reference profiles), ``None``/NaN is
    missing, dicts/lists/bytes are invalid.  boolean: ``True``/``False``,
    ``"true"``/``"false"``, 0/1 and the other words reference profiles accept
    map to ``"true"``/``"false"``; anything else is invalid.  A feature absent
    from a row is missing in that row.  Keys that are not features are counted
    per name in :attr:`Windower.unknown_fields` (and per window in
    :attr:`ClosedWindow.unknown_fields`), never dropped silently; at most
    :data:`MAX_UNKNOWN_FIELDS` names are kept, the rest count under
    ``"__other__"``.

Memory
    A pane holds per numerical feature at most ``settings.exact_cap`` exact
    values, then a KLL sketch (see :class:`~monitor.profiles.NumericAccumulator`),
    per categorical feature at most ``max_categories`` counts, and at most
    ``size / slide`` panes are held.  :meth:`Windower.state_size` reports what
    is held.  With ``exact_cap=None`` time windows are unbounded (count panes
    are bounded by their row count anyway).

Checkpoints
    :meth:`Windower.snapshot` gives the state as bytes, :meth:`Windower.restore`
    puts it back into a windower built with the same spec, features and
    settings.  Panes travel as :mod:`monitor.profile_io` profiles plus a JSON
    header with the exact moments, so windows over exact panes come out
    identical after a restore.  (Sketched panes are restored from the same
    sketch bytes; when a window holds more than ``max_categories`` distinct
    categories, which of them fold into "other" may differ after a restore.)

A windower is not thread-safe: one consumer feeds it.
"""

from __future__ import annotations

import json
import math
import numbers
import struct
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from monitor import profile_io
from monitor.errors import PermanentError, ProfileError
from monitor.profiles import (
    CategoricalAccumulator,
    CategoricalProfile,
    FeatureProfile,
    FeatureType,
    NumericAccumulator,
    NumericProfile,
    Profile,
    ProfileSettings,
    category_label,
)

__all__ = [
    "MAX_UNKNOWN_FIELDS",
    "OTHER_FIELDS",
    "ClosedWindow",
    "WindowKind",
    "WindowSpec",
    "WindowSpecError",
    "Windower",
]

WindowKind = Literal["count", "time"]

#: distinct unknown field names counted by name; the rest count under OTHER_FIELDS
MAX_UNKNOWN_FIELDS = 100
OTHER_FIELDS = "__other__"
#: unknown field names are cut to this many characters
_MAX_FIELD_NAME = 200

# the words reference profiles accept for booleans (kept in step with monitor.tabular,
# which is not imported here to keep pandas out of the streaming path; a test checks it)
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "1.0"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", "0.0"})

_FEATURE_TYPES = ("numerical", "categorical", "boolean")
_MISSING = -1  # category codes
_INVALID = -2
_SNAPSHOT_MAGIC = b"DRIFTLINE-WINDOWS\n"
_SNAPSHOT_FORMAT = "driftline-windows"
_SNAPSHOT_VERSION = 1

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Clock = Callable[[], float]


class WindowSpecError(PermanentError, ValueError):
    """A window spec (or a batch given to a windower) that cannot work."""


# --------------------------------------------------------------------------
# spec


def _whole_ms(seconds: float, what: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise WindowSpecError(f"{what} must be a number of seconds, not {seconds!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise WindowSpecError(f"{what} must be a positive number of seconds, not {seconds!r}")
    ms = round(seconds * 1000)
    if ms < 1 or abs(seconds * 1000 - ms) > 1e-6 * max(1.0, float(ms)):
        raise WindowSpecError(f"{what} must be a whole number of milliseconds, not {seconds!r}")
    return int(ms)


@dataclass(frozen=True)
class WindowSpec:
    """Count windows (``size`` rows) or time windows (``duration_s`` seconds).

    ``slide`` is in rows (count) or seconds (time); ``None`` means tumbling.
    It must be positive, smaller than the window and divide it.
    """

    size: int | None = None
    duration_s: float | None = None
    slide: float | None = None

    def __post_init__(self) -> None:
        if (self.size is None) == (self.duration_s is None):
            raise WindowSpecError("a window needs exactly one of size (rows) or duration_s")
        if self.size is not None:
            if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
                raise WindowSpecError(f"window size must be a positive whole number of rows, "
                                      f"not {self.size!r}")
            if self.slide is not None:
                slide = self.slide
                if isinstance(slide, bool) or not isinstance(slide, int) or slide < 1:
                    raise WindowSpecError(f"slide must be a positive whole number of rows, "
                                          f"not {slide!r}")
                if slide >= self.size:
                    raise WindowSpecError(f"slide ({slide} rows) must be smaller than the "
                                          f"window ({self.size} rows); omit it for tumbling")
                if self.size % slide:
                    raise WindowSpecError(f"slide ({slide} rows) must divide the window "
                                          f"({self.size} rows)")
        else:
            assert self.duration_s is not None
            duration = _whole_ms(self.duration_s, "window duration_s")
            if self.slide is not None:
                slide_ms = _whole_ms(self.slide, "slide")
                if slide_ms >= duration:
                    raise WindowSpecError(f"slide ({self.slide} s) must be shorter than the "
                                          f"window ({self.duration_s} s); omit it for tumbling")
                if duration % slide_ms:
                    raise WindowSpecError(f"slide ({self.slide} s) must divide the window "
                                          f"({self.duration_s} s)")

    @property
    def kind(self) -> WindowKind:
        return "count" if self.size is not None else "time"

    @property
    def length(self) -> int:
        """The window's length: rows (count) or milliseconds (time)."""
        if self.size is not None:
            return self.size
        assert self.duration_s is not None
        return _whole_ms(self.duration_s, "window duration_s")

    @property
    def pane(self) -> int:
        """A pane's length: the slide, or the whole window when tumbling (rows or ms)."""
        if self.slide is None:
            return self.length
        if self.size is not None:
            return int(self.slide)
        return _whole_ms(self.slide, "slide")

    @property
    def panes(self) -> int:
        """Panes per window (1 when tumbling)."""
        return self.length // self.pane

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "duration_s": self.duration_s, "slide": self.slide}


# --------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class ClosedWindow:
    """One closed window: ``[start, end)`` in row numbers (count) or epoch ms (time)."""

    kind: WindowKind
    start: int
    end: int
    rows: int
    profile: Profile
    unknown_fields: Mapping[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------
# turning values into columns


@dataclass
class _NumColumn:
    values: FloatArray  # NaN where missing (and where invalid)
    invalid: BoolArray | None  # rows whose value was not a number


@dataclass
class _CatColumn:
    labels: list[str]
    codes: IntArray  # index into labels, or _MISSING / _INVALID


_FAST_NUMERIC_TYPES = frozenset({float, int, bool, type(None), np.float64, np.float32,
                                 np.int64, np.int32, np.bool_})


def _to_float(value: object) -> float | None:
    """The value as a float (NaN: missing), or None when it is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, numbers.Real | Decimal):
        try:
            return float(value)
        except (OverflowError, ValueError):
            return None
    return None


def _numeric_column(values: object, n: int, name: str) -> _NumColumn:
    if isinstance(values, np.ndarray):
        _check_shape(values, n, name)
        if values.dtype.kind in "fiub":
            return _NumColumn(values.astype(np.float64, copy=False), None)
        items: list[object] = values.tolist()
    else:
        items = list(cast(Sequence[object], values))
        if len(items) != n:
            raise WindowSpecError(f"column {name!r} has {len(items)} values for {n} rows")
    if set(map(type, items)) <= _FAST_NUMERIC_TYPES:
        try:
            return _NumColumn(np.asarray(items, dtype=np.float64), None)
        except (OverflowError, ValueError, TypeError):
            pass  # a huge int: take the slow path, which calls it invalid
    out = np.empty(n, dtype=np.float64)
    invalid = np.zeros(n, dtype=np.bool_)
    for i, item in enumerate(items):
        x = _to_float(item)
        if x is None:
            out[i] = math.nan
            invalid[i] = True
        else:
            out[i] = x
    return _NumColumn(out, invalid if invalid.any() else None)


def _category(value: object, boolean: bool) -> str | int:
    """A category label, or _MISSING / _INVALID."""
    if value is None:
        return _MISSING
    if isinstance(value, float | np.floating) and math.isnan(value):
        return _MISSING
    if isinstance(value, bytes | np.bytes_) or not isinstance(value, str | int | float
                                                             | np.generic):
        return _INVALID
    label = category_label(value)
    if not boolean:
        return label
    word = label.strip().lower()
    if word in TRUE_WORDS:
        return "true"
    if word in FALSE_WORDS:
        return "false"
    return _INVALID


def _category_column(values: object, n: int, name: str, boolean: bool) -> _CatColumn:
    index: dict[str, int] = {}

    def code(value: object) -> int:
        label = _category(value, boolean)
        if isinstance(label, int):
            return label
        found = index.get(label)
        if found is None:
            found = index[label] = len(index)
        return found

    if isinstance(values, np.ndarray) and values.dtype.kind in "biufU":
        _check_shape(values, n, name)
        uniques, inverse = np.unique(values, return_inverse=True)
        unique_codes = np.array([code(u) for u in uniques.tolist()], dtype=np.int64)
        codes = unique_codes[inverse.reshape(-1)] if n else np.empty(0, dtype=np.int64)
    else:
        if isinstance(values, np.ndarray):
            _check_shape(values, n, name)
            items: list[object] = values.tolist()
        else:
            items = list(cast(Sequence[object], values))
        if len(items) != n:
            raise WindowSpecError(f"column {name!r} has {len(items)} values for {n} rows")
        codes = np.array([code(v) for v in items], dtype=np.int64)
    return _CatColumn(list(index), codes)


def _check_shape(values: NDArray[Any], n: int, name: str) -> None:
    if values.ndim != 1 or values.shape[0] != n:
        raise WindowSpecError(f"column {name!r} has shape {values.shape} for {n} rows")


@dataclass
class _Batch:
    """Rows turned into columns, ready to be cut at window boundaries."""

    n: int
    numeric: dict[str, _NumColumn]
    categorical: dict[str, _CatColumn]
    unknown_all: list[str]  # names unknown in every row (columnar input)
    unknown_rows: IntArray  # row of each sparse unknown name (row input)
    unknown_names: list[str]

    def take(self, keep: BoolArray) -> _Batch:
        positions = np.cumsum(keep) - 1
        sparse = keep[self.unknown_rows] if self.unknown_rows.size else np.zeros(0, np.bool_)
        return _Batch(
            int(keep.sum()),
            {k: _NumColumn(c.values[keep], None if c.invalid is None else c.invalid[keep])
             for k, c in self.numeric.items()},
            {k: _CatColumn(c.labels, c.codes[keep]) for k, c in self.categorical.items()},
            self.unknown_all,
            positions[self.unknown_rows[sparse]].astype(np.int64),
            [nm for nm, ok in zip(self.unknown_names, sparse.tolist(), strict=True) if ok],
        )


def _count_field(counter: Counter[str], name: str, n: int) -> None:
    """Count an unknown field name, keeping at most MAX_UNKNOWN_FIELDS names."""
    if n <= 0:
        return
    name = name[:_MAX_FIELD_NAME]
    if name in counter or len(counter) < MAX_UNKNOWN_FIELDS:
        counter[name] += n
    else:
        counter[OTHER_FIELDS] += n


# --------------------------------------------------------------------------
# panes


class _Pane:
    """Accumulators for the rows of one pane."""

    def __init__(self, start: int, features: Mapping[str, FeatureType],
                 settings: ProfileSettings) -> None:
        self.start = start  # row number (count) or pane number (time)
        self.rows = 0
        self.numeric: dict[str, NumericAccumulator] = {}
        self.categorical: dict[str, CategoricalAccumulator] = {}
        for name, kind in features.items():
            if kind == "numerical":
                self.numeric[name] = NumericAccumulator(settings)
            else:
                self.categorical[name] = CategoricalAccumulator(settings, feature_type=kind)
        self.unknown: Counter[str] = Counter()

    def ingest(self, batch: _Batch, lo: int, hi: int) -> None:
        for name, num in batch.numeric.items():
            values = num.values[lo:hi]
            invalid = 0
            if num.invalid is not None:
                mask = num.invalid[lo:hi]
                invalid = int(mask.sum())
                if invalid:
                    values = values[~mask]
            self.numeric[name].update(values, invalid=invalid)
        for name, cat in batch.categorical.items():
            codes = cat.codes[lo:hi]
            valid = codes[codes >= 0]
            counts: dict[str, int] = {}
            if valid.size:
                found, tally = np.unique(valid, return_counts=True)
                counts = {cat.labels[c]: k for c, k in zip(found.tolist(), tally.tolist(),
                                                           strict=True)}
            self.categorical[name].update_counts(
                counts,
                missing=int(np.count_nonzero(codes == _MISSING)),
                invalid=int(np.count_nonzero(codes == _INVALID)),
            )
        for name in batch.unknown_all:
            _count_field(self.unknown, name, hi - lo)
        if batch.unknown_rows.size:
            inside = (batch.unknown_rows >= lo) & (batch.unknown_rows < hi)
            for name, ok in zip(batch.unknown_names, inside.tolist(), strict=True):
                if ok:
                    _count_field(self.unknown, name, 1)
        self.rows += hi - lo

    def held(self) -> int:
        numeric = sum(acc.held_values for acc in self.numeric.values())
        categories = sum(len(acc.freeze().categories) for acc in self.categorical.values())
        return numeric + categories + len(self.unknown)


# the moments an accumulator keeps; freeze() hands out std = sqrt(m2 / n), which loses
# the last bits, so checkpoints carry (mean, m2) and put them back after thawing
def _moments(acc: NumericAccumulator) -> list[float]:
    return list(acc.moments)


def _set_moments(acc: NumericAccumulator, moments: Sequence[float]) -> None:
    acc.set_moments(float(moments[0]), float(moments[1]))


# --------------------------------------------------------------------------
# the windower


class Windower:
    """Cuts one model's rows into windows and profiles each closed window.

    ``features`` maps feature names to ``"numerical"``, ``"categorical"`` or
    ``"boolean"``; ``settings`` caps what each pane keeps; ``clock`` gives
    seconds since the epoch for time windows fed without timestamps and for
    :meth:`tick` without an argument (and stamps ``created_at``); ``source``
    goes into every window profile.
    """

    def __init__(
        self,
        spec: WindowSpec,
        features: Mapping[str, FeatureType],
        *,
        settings: ProfileSettings | None = None,
        clock: Clock | None = None,
        source: str = "",
    ) -> None:
        for name, kind in features.items():
            if not isinstance(name, str) or kind not in _FEATURE_TYPES:
                raise WindowSpecError(f"feature {name!r}: type must be one of "
                                      f"{', '.join(_FEATURE_TYPES)}, not {kind!r}")
        self.spec = spec
        self.features: dict[str, FeatureType] = dict(features)
        self.settings = settings or ProfileSettings()
        self.source = source
        self._clock: Clock = clock if clock is not None else time.time
        self._names = frozenset(self.features)
        self._pane_len = spec.pane
        self._k = spec.panes
        self._reset()

    def _reset(self) -> None:
        self._completed: list[_Pane] = []  # closed panes still needed, oldest first
        self._current: _Pane | None = None
        self._total_rows = 0  # rows taken in (count windows: the next row's number)
        self._origin: int | None = None  # time: pane number of the first event
        self._watermark: int | None = None  # time: latest event or tick, ms
        self._late_events = 0
        self._unknown: Counter[str] = Counter()
        if self.spec.kind == "count":
            self._current = self._new_pane(0)

    def _new_pane(self, start: int) -> _Pane:
        return _Pane(start, self.features, self.settings)

    # ---- reading the state

    @property
    def late_events(self) -> int:
        """Time-window events dropped because their pane had closed."""
        return self._late_events

    @property
    def unknown_fields(self) -> Counter[str]:
        """Rows carrying each field that is not a feature, since the start (a copy)."""
        return Counter(self._unknown)

    @property
    def rows_seen(self) -> int:
        """Rows taken into windows since the start (late events not included)."""
        return self._total_rows

    @property
    def open_rows(self) -> int:
        """Rows so far in the window that closes next."""
        # the panes held are exactly the closed ones the next window still needs
        if self._current is None:
            return 0
        return sum(p.rows for p in self._completed) + self._current.rows

    @property
    def fill(self) -> float:
        """How full the window that closes next is, 0 to 1.

        Count windows: its rows over ``size``.  Time windows: the time from
        its start to the latest event or tick, over ``duration_s``.
        """
        if self._current is None:
            return 0.0
        if self.spec.kind == "count":
            return self.open_rows / self.spec.length
        assert self._watermark is not None
        end = (self._current.start + 1) * self._pane_len
        elapsed = self._watermark - (end - self.spec.length)
        return min(1.0, max(0.0, elapsed / self.spec.length))

    @property
    def open_window(self) -> tuple[int, int] | None:
        """``(start, end)`` of the window that closes next (rows or ms), None before any."""
        if self._current is None:
            return None
        if self.spec.kind == "count":
            end = self._current.start + self._pane_len
        else:
            end = (self._current.start + 1) * self._pane_len
        return end - self.spec.length, end

    def state_size(self) -> int:
        """Values held over all panes: numerical values or sketch items, categories
        and unknown field names."""
        panes = [*self._completed, *([self._current] if self._current is not None else [])]
        return sum(p.held() for p in panes)

    # ---- feeding rows

    def add(self, rows: Sequence[Mapping[str, object]],
            timestamps_ms: Sequence[int] | NDArray[Any] | None = None) -> list[ClosedWindow]:
        """Take a batch of rows; returns the windows it closed, oldest first."""
        n = len(rows)
        numeric: dict[str, _NumColumn] = {}
        categorical: dict[str, _CatColumn] = {}
        for name, kind in self.features.items():
            column = [row.get(name) for row in rows]
            if kind == "numerical":
                numeric[name] = _numeric_column(column, n, name)
            else:
                categorical[name] = _category_column(column, n, name, kind == "boolean")
        where: list[int] = []
        names: list[str] = []
        known = self._names
        for i, row in enumerate(rows):
            if not known.issuperset(row):
                for key in row:
                    if key not in known:
                        where.append(i)
                        names.append(str(key))
        for name in names:
            _count_field(self._unknown, name, 1)
        batch = _Batch(n, numeric, categorical, [], np.asarray(where, dtype=np.int64), names)
        return self._feed(batch, timestamps_ms)

    def add_columns(self, columns: Mapping[str, NDArray[Any] | Sequence[object]], n_rows: int,
                    timestamps_ms: Sequence[int] | NDArray[Any] | None = None
                    ) -> list[ClosedWindow]:
        """Take a batch as columns of ``n_rows`` values each (float64 arrays for
        numerical features go straight into the accumulators).  Features with no
        column are missing in every row; columns that are not features count as
        unknown fields in every row."""
        if n_rows < 0:
            raise WindowSpecError(f"n_rows must not be negative, not {n_rows}")
        numeric: dict[str, _NumColumn] = {}
        categorical: dict[str, _CatColumn] = {}
        for name, kind in self.features.items():
            values: object = columns.get(name)
            if values is None:
                values = np.full(n_rows, np.nan) if kind == "numerical" else [None] * n_rows
            if kind == "numerical":
                numeric[name] = _numeric_column(values, n_rows, name)
            else:
                categorical[name] = _category_column(values, n_rows, name, kind == "boolean")
        unknown = [str(name) for name in columns if name not in self._names]
        for name in unknown:
            _count_field(self._unknown, name, n_rows)
        batch = _Batch(n_rows, numeric, categorical, unknown, np.zeros(0, dtype=np.int64), [])
        return self._feed(batch, timestamps_ms)

    def tick(self, now: float | None = None) -> list[ClosedWindow]:
        """Close the time windows that end at or before ``now`` (seconds; the
        clock when None).  Count windows only close on rows: returns []."""
        if self.spec.kind == "count":
            return []
        now_ms = math.floor((self._clock() if now is None else now) * 1000)
        if self._current is None:
            return []  # nothing to close yet; the first event sets the start
        self._watermark = now_ms if self._watermark is None else max(self._watermark, now_ms)
        target = now_ms // self._pane_len
        if target <= self._current.start:
            return []
        return self._advance(target)

    # ---- internals

    def _feed(self, batch: _Batch, timestamps_ms: Sequence[int] | NDArray[Any] | None
              ) -> list[ClosedWindow]:
        if self.spec.kind == "count":
            if timestamps_ms is not None and len(timestamps_ms) != batch.n:
                raise WindowSpecError(f"{len(timestamps_ms)} timestamps for {batch.n} rows")
            return self._feed_count(batch)
        return self._feed_time(batch, timestamps_ms)

    def _feed_count(self, batch: _Batch) -> list[ClosedWindow]:
        out: list[ClosedWindow] = []
        pos = 0
        while pos < batch.n:
            pane = self._current
            assert pane is not None
            take = min(self._pane_len - pane.rows, batch.n - pos)
            pane.ingest(batch, pos, pos + take)
            self._total_rows += take
            pos += take
            if pane.rows == self._pane_len:
                self._completed.append(pane)
                if len(self._completed) >= self._k:
                    end = pane.start + self._pane_len
                    out.append(self._emit(self._completed, end - self.spec.length, end))
                    del self._completed[: len(self._completed) - self._k + 1]
                self._current = self._new_pane(self._total_rows)
        return out

    def _timestamps(self, timestamps_ms: Sequence[int] | NDArray[Any] | None, n: int
                    ) -> IntArray:
        if timestamps_ms is None:
            return np.full(n, math.floor(self._clock() * 1000), dtype=np.int64)
        ts = np.asarray(timestamps_ms)
        if ts.shape != (n,):
            raise WindowSpecError(f"{ts.size} timestamps for {n} rows")
        if ts.dtype.kind in "iu":
            return ts.astype(np.int64, copy=False)
        if ts.dtype.kind == "f":
            if not np.isfinite(ts).all():
                raise WindowSpecError("timestamps_ms must be finite")
            floored: IntArray = np.floor(ts).astype(np.int64)
            return floored
        raise WindowSpecError(f"timestamps_ms must be numbers of milliseconds, not {ts.dtype}")

    def _feed_time(self, batch: _Batch, timestamps_ms: Sequence[int] | NDArray[Any] | None
                   ) -> list[ClosedWindow]:
        if batch.n == 0:
            return []
        ts = self._timestamps(timestamps_ms, batch.n)
        pane_ids = ts // self._pane_len
        if self._current is None:
            first = int(pane_ids[0])
            self._origin = first
            self._current = self._new_pane(first)
        reached = np.maximum.accumulate(np.maximum(pane_ids, self._current.start))
        late = pane_ids < reached
        if late.any():
            self._late_events += int(late.sum())
            keep = ~late
            batch = batch.take(keep)
            pane_ids = pane_ids[keep]
            ts = ts[keep]
            if batch.n == 0:
                return []
        latest = int(ts.max())
        self._watermark = latest if self._watermark is None else max(self._watermark, latest)
        out: list[ClosedWindow] = []
        cuts = [0, *(np.flatnonzero(np.diff(pane_ids)) + 1).tolist(), batch.n]
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            target = int(pane_ids[lo])
            if target > self._current.start:
                out.extend(self._advance(target))
            self._current.ingest(batch, lo, hi)
            self._total_rows += hi - lo
        return out

    def _advance(self, target: int) -> list[ClosedWindow]:
        """Close time panes up to (not including) pane ``target`` and open it."""
        current = self._current
        assert current is not None and self._origin is not None
        if current.rows:
            self._completed.append(current)
        out: list[ClosedWindow] = []
        if self._completed:
            # windows ending after pane (last non-empty + k - 1) would be empty
            last = min(target - 1, self._completed[-1].start + self._k - 1)
            for j in range(current.start, last + 1):
                lo = j - self._k + 1
                self._completed = [p for p in self._completed if p.start >= lo]
                if self._completed and lo >= self._origin:
                    end = (j + 1) * self._pane_len
                    out.append(self._emit(self._completed, end - self.spec.length, end))
        lo = target - self._k + 1
        self._completed = [p for p in self._completed if p.start >= lo]
        self._current = self._new_pane(target)
        return out

    def _emit(self, panes: Sequence[_Pane], start: int, end: int) -> ClosedWindow:
        features: dict[str, FeatureProfile] = {}
        for name, kind in self.features.items():
            if kind == "numerical":
                if len(panes) == 1:
                    features[name] = panes[0].numeric[name].freeze()
                else:
                    num = NumericAccumulator(self.settings)
                    for pane in panes:  # merging into a fresh accumulator leaves panes as are
                        num.merge(pane.numeric[name])
                    features[name] = num.freeze()
            else:
                cat = CategoricalAccumulator(self.settings, feature_type=kind)
                for pane in panes:
                    cat.merge(pane.categorical[name])
                features[name] = cat.freeze()
        unknown: Counter[str] = Counter()
        for pane in panes:
            for field_name, count in pane.unknown.items():
                _count_field(unknown, field_name, count)
        rows = sum(p.rows for p in panes)
        columns = (*self.features, *(k for k in unknown if k != OTHER_FIELDS))
        created = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds")
        profile = Profile(features=features, rows=rows, settings=self.settings,
                          columns=columns, source=self.source, created_at=created)
        return ClosedWindow(self.spec.kind, start, end, rows, profile, dict(unknown))

    # ---- checkpoints

    def _header_base(self) -> dict[str, Any]:
        s = self.settings
        return {
            "spec": self.spec.as_dict(),
            "features": dict(self.features),
            "settings": {"exact_cap": s.exact_cap, "sketch_k": s.sketch_k,
                         "max_categories": s.max_categories},
        }

    def snapshot(self) -> bytes:
        """The window state as bytes (see :meth:`restore`)."""
        panes = [*self._completed, *([self._current] if self._current is not None else [])]
        blobs: list[bytes] = []
        entries: list[dict[str, Any]] = []
        for pane in panes:
            features: dict[str, FeatureProfile] = {}
            for name, kind in self.features.items():
                features[name] = (pane.numeric[name].freeze() if kind == "numerical"
                                  else pane.categorical[name].freeze())
            blobs.append(profile_io.dumps(Profile(features=features, rows=pane.rows,
                                                  settings=self.settings)))
            entries.append({"start": pane.start, "rows": pane.rows,
                            "unknown": dict(pane.unknown),
                            "moments": {k: _moments(a) for k, a in pane.numeric.items()}})
        header = {
            "format": _SNAPSHOT_FORMAT,
            "version": _SNAPSHOT_VERSION,
            **self._header_base(),
            "panes": entries,
            "has_current": self._current is not None,
            "total_rows": self._total_rows,
            "origin": self._origin,
            "watermark": self._watermark,
            "late_events": self._late_events,
            "unknown_fields": dict(self._unknown),
        }
        head = json.dumps(header).encode()
        parts = [_SNAPSHOT_MAGIC, struct.pack(">I", len(head)), head]
        for blob in blobs:
            parts += [struct.pack(">Q", len(blob)), blob]
        return b"".join(parts)

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's.  The snapshot must come from a
        windower with the same spec, features and settings; anything else, or
        malformed bytes, raises :class:`~monitor.errors.ProfileError`."""
        header, blobs = _split_snapshot(data)
        if header.get("format") != _SNAPSHOT_FORMAT or header.get("version") != _SNAPSHOT_VERSION:
            raise ProfileError("window snapshot: wrong format or unsupported version")
        mine = json.loads(json.dumps(self._header_base()))
        for key in ("spec", "features", "settings"):
            if header.get(key) != mine[key]:
                raise ProfileError(f"window snapshot was taken with other {key} "
                                   f"({header.get(key)!r}, now {mine[key]!r})")
        try:
            entries = header["panes"]
            if len(entries) != len(blobs) or len(entries) > self._k + 1:
                raise ValueError(f"{len(entries)} panes, {len(blobs)} pane profiles")
            panes = [self._thaw_pane(e, blob) for e, blob in zip(entries, blobs, strict=True)]
            has_current = bool(header["has_current"])
            if has_current != bool(panes) or (self.spec.kind == "count" and not has_current):
                raise ValueError("the open pane is missing")
            total_rows = int(header["total_rows"])
            origin = None if header["origin"] is None else int(header["origin"])
            watermark = None if header["watermark"] is None else int(header["watermark"])
            late = int(header["late_events"])
            unknown = Counter({str(k): int(v) for k, v in header["unknown_fields"].items()})
        except ProfileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileError(f"window snapshot is malformed ({type(exc).__name__}: {exc})"
                               ) from None
        self._reset()
        self._current = panes.pop() if has_current else None
        self._completed = panes
        self._total_rows, self._origin, self._watermark = total_rows, origin, watermark
        self._late_events, self._unknown = late, unknown

    def _thaw_pane(self, entry: Mapping[str, Any], blob: bytes) -> _Pane:
        profile = profile_io.loads(blob, "window snapshot pane")
        pane = self._new_pane(int(entry["start"]))
        pane.rows = int(entry["rows"])
        for name, kind in self.features.items():
            feature = profile.features[name]
            if kind == "numerical":
                if not isinstance(feature, NumericProfile):
                    raise ValueError(f"feature {name!r} is not numerical in the snapshot")
                acc = NumericAccumulator.thaw(feature, self.settings)
                _set_moments(acc, entry["moments"][name])
                pane.numeric[name] = acc
            else:
                if not isinstance(feature, CategoricalProfile) or feature.type != kind:
                    raise ValueError(f"feature {name!r} is not {kind} in the snapshot")
                pane.categorical[name] = CategoricalAccumulator.thaw(feature, self.settings)
        pane.unknown = Counter({str(k): int(v) for k, v in entry["unknown"].items()})
        return pane


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
