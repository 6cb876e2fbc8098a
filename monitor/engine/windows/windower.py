"""The :class:`Windower`: cuts one model's rows into windows.

It feeds each batch into the open pane, closes panes at exact count or time
boundaries (dropping late events), and emits a :class:`ClosedWindow` whose
profile merges the panes the window spans.  The full contract is described in
:mod:`monitor.engine.windows`.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.engine.profiles import FeatureType, Profile, ProfileSettings
from monitor.engine.windows.columns import (
    OTHER_FIELDS,
    IntArray,
    _Batch,
    _CatColumn,
    _category_column,
    _count_field,
    _NumColumn,
    _numeric_column,
)
from monitor.engine.windows.panes import _merge_features, _merge_unknown, _Pane
from monitor.engine.windows.snapshot import _config_header, _dump_pane, _pack, _thaw_pane, _unpack
from monitor.engine.windows.spec import ClosedWindow, WindowSpec, WindowSpecError
from monitor.errors import ProfileError

_FEATURE_TYPES = ("numerical", "categorical", "boolean")
Clock = Callable[[], float]


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
        return sum(p.held() for p in self._panes())

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
        features = _merge_features(panes, self.features, self.settings)
        unknown = _merge_unknown(panes)
        rows = sum(p.rows for p in panes)
        columns = (*self.features, *(k for k in unknown if k != OTHER_FIELDS))
        created = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds")
        profile = Profile(features=features, rows=rows, settings=self.settings,
                          columns=columns, source=self.source, created_at=created)
        return ClosedWindow(self.spec.kind, start, end, rows, profile, dict(unknown))

    # ---- checkpoints

    def _panes(self) -> list[_Pane]:
        """The panes held, oldest first, the open one last."""
        return [*self._completed, *([self._current] if self._current is not None else [])]

    def snapshot(self) -> bytes:
        """The window state as bytes (see :meth:`restore`)."""
        dumped = [_dump_pane(pane, self.features, self.settings) for pane in self._panes()]
        state = {
            **_config_header(self.spec, self.features, self.settings),
            "panes": [entry for entry, _ in dumped],
            "has_current": self._current is not None,
            "total_rows": self._total_rows,
            "origin": self._origin,
            "watermark": self._watermark,
            "late_events": self._late_events,
            "unknown_fields": dict(self._unknown),
        }
        return _pack(state, [blob for _, blob in dumped])

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's.  The snapshot must come from a
        windower with the same spec, features and settings; anything else, or
        malformed bytes, raises :class:`~monitor.errors.ProfileError`."""
        header, blobs = _unpack(data)
        mine = json.loads(json.dumps(_config_header(self.spec, self.features, self.settings)))
        for key in ("spec", "features", "settings"):
            if header.get(key) != mine[key]:
                raise ProfileError(f"window snapshot was taken with other {key} "
                                   f"({header.get(key)!r}, now {mine[key]!r})")
        try:
            entries = header["panes"]
            if len(entries) != len(blobs) or len(entries) > self._k + 1:
                raise ValueError(f"{len(entries)} panes, {len(blobs)} pane profiles")
            panes = [_thaw_pane(e, blob, self.features, self.settings)
                     for e, blob in zip(entries, blobs, strict=True)]
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
