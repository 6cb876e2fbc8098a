"""Windows over a stream of rows: boundaries, contents, time, memory, checkpoints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from monitor.batch import tabular
from monitor.engine.profiles import (
    CategoricalAccumulator,
    CategoricalProfile,
    FeatureType,
    NumericAccumulator,
    NumericProfile,
    ProfileSettings,
)
from monitor.engine.windows import (
    MAX_UNKNOWN_FIELDS,
    OTHER_FIELDS,
    ClosedWindow,
    Windower,
    WindowSpec,
    WindowSpecError,
)
from monitor.errors import ProfileError

FEATURES: dict[str, FeatureType] = {"x": "numerical", "color": "categorical", "flag": "boolean"}
EXACT = ProfileSettings(exact_cap=None)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_rows(rng: np.random.Generator, n: int) -> list[dict[str, object]]:
    x = rng.normal(0, 1, n)
    colors = rng.choice(["red", "green", "blue"], n)
    flags = rng.random(n) < 0.3
    rows: list[dict[str, object]] = []
    for i in range(n):
        row: dict[str, object] = {"x": None if i % 17 == 0 else float(x[i]),
                                  "color": str(colors[i]), "flag": bool(flags[i])}
        if i % 29 == 0:
            row["color"] = None
        rows.append(row)
    return rows


def direct(rows: Sequence[dict[str, object]], settings: ProfileSettings = EXACT
           ) -> dict[str, NumericProfile | CategoricalProfile]:
    """Profiles of the rows built straight from the accumulators, no windows."""
    x = np.array([np.nan if r["x"] is None else r["x"] for r in rows], dtype=np.float64)
    color = CategoricalAccumulator(settings).update(r["color"] for r in rows)
    flag = CategoricalAccumulator(settings, feature_type="boolean").update(
        r["flag"] for r in rows)
    return {"x": NumericAccumulator(settings).update(x).freeze(),
            "color": color.freeze(), "flag": flag.freeze()}


def assert_same_contents(window: ClosedWindow, expected: dict[str, NumericProfile
                                                             | CategoricalProfile]) -> None:
    for name, want in expected.items():
        got = window.profile.features[name]
        assert got.missing == want.missing and got.invalid == want.invalid, name
        if isinstance(want, NumericProfile):
            assert isinstance(got, NumericProfile)
            assert got.exact and np.array_equal(got.sample.values, want.sample.values)
            assert got.mean == pytest.approx(want.mean, rel=1e-12, abs=1e-12)
            assert got.std == pytest.approx(want.std, rel=1e-12)
        else:
            assert isinstance(got, CategoricalProfile) and isinstance(want, CategoricalProfile)
            assert got.as_dict() == want.as_dict()
            assert got.type == want.type


def feed_in_batches(w: Windower, rows: Sequence[dict[str, object]], rng: np.random.Generator,
                    timestamps: Sequence[int] | None = None) -> list[ClosedWindow]:
    out: list[ClosedWindow] = []
    pos = 0
    while pos < len(rows):
        step = int(rng.integers(1, 700))
        ts = None if timestamps is None else timestamps[pos:pos + step]
        out += w.add(rows[pos:pos + step], ts)
        pos += step
    return out


# -------------------------------------------------------------------- count windows


def test_count_tumbling_windows_close_exactly_at_their_boundaries(rng):
    rows = make_rows(rng, 2500)
    w = Windower(WindowSpec(size=1000), FEATURES, settings=EXACT)
    windows = w.add(rows)
    assert [(c.start, c.end, c.rows, c.profile.rows) for c in windows] == [
        (0, 1000, 1000, 1000), (1000, 2000, 1000, 1000)]
    assert all(c.kind == "count" for c in windows)
    assert w.open_rows == 500 and w.fill == pytest.approx(0.5)
    assert w.open_window == (2000, 3000)
    assert_same_contents(windows[0], direct(rows[:1000]))
    assert_same_contents(windows[1], direct(rows[1000:2000]))


def test_count_windows_do_not_depend_on_how_rows_are_batched(rng):
    rows = make_rows(rng, 5300)
    whole = Windower(WindowSpec(size=1000), FEATURES, settings=EXACT).add(rows)
    pieces = feed_in_batches(Windower(WindowSpec(size=1000), FEATURES, settings=EXACT),
                             rows, rng)
    assert [c.end for c in pieces] == [c.end for c in whole] == [1000, 2000, 3000, 4000, 5000]
    for a, b in zip(whole, pieces, strict=True):
        assert_same_contents(b, dict(a.profile.features))


def test_sliding_count_windows_equal_a_direct_profile_of_the_same_rows(rng):
    rows = make_rows(rng, 3100)
    w = Windower(WindowSpec(size=1000, slide=250), FEATURES, settings=EXACT)
    windows = feed_in_batches(w, rows, rng)
    assert [(c.start, c.end) for c in windows] == [(e - 1000, e) for e in range(1000, 3001, 250)]
    for c in windows:
        assert c.rows == 1000
        assert_same_contents(c, direct(rows[c.start:c.end]))
    assert w.open_rows == 850  # 750 rows of three closed panes and 100 in the open one
    assert w.open_window == (2250, 3250)


def test_one_batch_may_close_many_sliding_windows_and_never_changes_earlier_ones(rng):
    rows = make_rows(rng, 4000)
    w = Windower(WindowSpec(size=400, slide=100), FEATURES, settings=EXACT)
    first = w.add(rows[:400])
    assert len(first) == 1
    kept = first[0].profile.features["x"]
    assert isinstance(kept, NumericProfile)
    before = kept.sample.values.copy()
    rest = w.add(rows[400:])
    assert len(rest) == 36
    assert np.array_equal(kept.sample.values, before)
    assert_same_contents(rest[-1], direct(rows[3600:4000]))


# -------------------------------------------------------------------- time windows


def test_time_windows_follow_event_timestamps_aligned_to_the_epoch(rng):
    rows = make_rows(rng, 6)
    ts = [60_000 * 1000 + 5, 60_000 * 1000 + 59_999, 60_000 * 1001, 60_000 * 1001 + 1,
          60_000 * 1002 + 30_000, 60_000 * 1002 + 40_000]
    w = Windower(WindowSpec(duration_s=60), FEATURES, settings=EXACT, clock=FakeClock())
    windows = w.add(rows, ts)
    assert [(c.kind, c.start, c.end, c.rows) for c in windows] == [
        ("time", 60_000_000, 60_060_000, 2), ("time", 60_060_000, 60_120_000, 2)]
    assert_same_contents(windows[0], direct(rows[:2]))
    assert_same_contents(windows[1], direct(rows[2:4]))
    assert w.open_rows == 2 and w.open_window == (60_120_000, 60_180_000)
    assert w.fill == pytest.approx(40 / 60)


def test_time_windows_use_the_injected_clock_when_rows_have_no_timestamps(rng):
    clock = FakeClock(1_000_000.0)  # a multiple of 10 s
    rows = make_rows(rng, 30)
    w = Windower(WindowSpec(duration_s=10), FEATURES, settings=EXACT, clock=clock)
    assert w.add(rows[:10]) == []
    clock.now += 4.5
    assert w.add(rows[10:20]) == []
    clock.now += 5.5  # exactly the window's end
    (closed,) = w.add(rows[20:])
    assert (closed.start, closed.end, closed.rows) == (1_000_000_000, 1_000_010_000, 20)
    assert closed.profile.created_at == "1970-01-12T13:46:50.000+00:00"
    assert_same_contents(closed, direct(rows[:20]))
    assert w.open_rows == 10


def test_tick_closes_the_window_of_a_quiet_stream(rng):
    clock = FakeClock(500.0)
    rows = make_rows(rng, 5)
    w = Windower(WindowSpec(duration_s=60), FEATURES, settings=EXACT, clock=clock)
    assert w.tick() == []  # nothing seen yet: nothing to close
    w.add(rows)
    clock.now = 539.999
    assert w.tick() == []
    clock.now = 540.0
    (closed,) = w.tick()
    assert (closed.start, closed.end, closed.rows) == (480_000, 540_000, 5)
    assert w.tick(10_000.0) == []  # empty windows are not emitted
    assert w.open_rows == 0 and w.open_window == (9_960_000, 10_020_000)


def test_late_events_are_counted_and_dropped_without_raising(rng):
    rows = make_rows(rng, 6)
    w = Windower(WindowSpec(duration_s=1), FEATURES, settings=EXACT, clock=FakeClock())
    ts = [1_000, 1_500, 2_100, 1_900, 2_000, 999]
    (closed,) = w.add(rows, ts)
    assert w.late_events == 2
    assert (closed.start, closed.end, closed.rows) == (1_000, 2_000, 2)
    assert w.open_rows == 2
    assert w.add(rows[:1], [1_999]) == [] and w.late_events == 3
    (second,) = w.tick(3.0)
    assert_same_contents(second, direct([rows[2], rows[4]]))


def test_late_events_do_not_depend_on_batching(rng):
    rows = make_rows(rng, 2000)
    ts = (np.arange(2000) * 50 + rng.integers(-400, 400, 2000)).tolist()
    spec = WindowSpec(duration_s=5, slide=1)
    whole = Windower(spec, FEATURES, settings=EXACT, clock=FakeClock())
    pieces = Windower(spec, FEATURES, settings=EXACT, clock=FakeClock())
    a = whole.add(rows, ts)
    b = feed_in_batches(pieces, rows, rng, ts)
    assert whole.late_events == pieces.late_events > 0
    assert [(c.start, c.end, c.rows) for c in a] == [(c.start, c.end, c.rows) for c in b]


def test_sliding_time_windows_equal_a_direct_profile_of_the_rows_in_their_span(rng):
    n = 3000
    rows = make_rows(rng, n)
    ts = np.sort(rng.integers(7_000, 127_000, n)).tolist()
    w = Windower(WindowSpec(duration_s=30, slide=10), FEATURES, settings=EXACT,
                 clock=FakeClock())
    windows = feed_in_batches(w, rows, rng, ts)
    windows += w.tick(1_000.0)
    # the first pane starts at 0 s; windows end every 10 s from 30 s on, and the last
    # window that still holds rows ends 20 s after the last pane with rows
    assert [c.end for c in windows] == list(range(30_000, 150_001, 10_000))
    stamps = np.asarray(ts)
    for c in windows:
        inside = np.flatnonzero((stamps >= c.start) & (stamps < c.end))
        assert c.rows == inside.size == c.profile.rows
        assert_same_contents(c, direct([rows[i] for i in inside]))
    assert w.late_events == 0


def test_a_gap_in_time_emits_only_windows_that_hold_rows(rng):
    rows = make_rows(rng, 3)
    w = Windower(WindowSpec(duration_s=2, slide=1), FEATURES, settings=EXACT, clock=FakeClock())
    out = w.add(rows, [0, 1_500, 10**12])  # then a jump of about 30 years
    assert [(c.start, c.end, c.rows) for c in out] == [(0, 2_000, 2), (1_000, 3_000, 1)]
    assert w.open_rows == 1 and w.state_size() < 50


# -------------------------------------------------------------------- values


def test_non_numbers_in_numerical_features_count_as_invalid(rng):
    w = Windower(WindowSpec(size=9), {"x": "numerical"}, settings=EXACT)
    rows: list[dict[str, object]] = [
        {"x": 1.5}, {"x": 2}, {"x": "3.25"}, {"x": True}, {"x": None}, {},
        {"x": "abc"}, {"x": {"a": 1}}, {"x": [1, 2]},
    ]
    (closed,) = w.add(rows)
    x = closed.profile.features["x"]
    assert isinstance(x, NumericProfile)
    assert x.sample.values.tolist() == [1.0, 1.5, 2.0, 3.25]
    assert (x.missing, x.invalid, x.rows) == (2, 3, 9)


def test_numerical_columns_take_arrays_lists_and_objects_alike(rng):
    spec = WindowSpec(size=5)
    cols = Windower(spec, {"x": "numerical"}, settings=EXACT)
    (a,) = cols.add_columns({"x": np.array([1.0, np.nan, np.inf, 2.0, 3.0])}, 5)
    (b,) = cols.add_columns({"x": [1, None, float("inf"), "2", 3.0]}, 5)
    (c,) = cols.add_columns({"x": np.array([1, "nope", 2, 3, None], dtype=object)}, 5)
    for window in (a, b):
        x = window.profile.features["x"]
        assert isinstance(x, NumericProfile)
        assert x.sample.values.tolist() == [1.0, 2.0, 3.0]
        assert (x.missing, x.nonfinite, x.invalid) == (1, 1, 0)
    x = c.profile.features["x"]
    assert isinstance(x, NumericProfile)
    assert x.sample.values.tolist() == [1.0, 2.0, 3.0] and (x.missing, x.invalid) == (1, 1)


def test_booleans_map_to_true_and_false_and_anything_else_is_invalid():
    w = Windower(WindowSpec(size=10), {"b": "boolean", "c": "categorical"}, settings=EXACT)
    values: list[object] = [True, False, "true", "FALSE", 0, 1, 1.0, "maybe", 2, None]
    (closed,) = w.add([{"b": v, "c": v} for v in values])
    b = closed.profile.features["b"]
    assert isinstance(b, CategoricalProfile) and b.type == "boolean"
    assert b.as_dict() == {"true": 4, "false": 3}
    assert (b.missing, b.invalid) == (1, 2)
    c = closed.profile.features["c"]
    assert isinstance(c, CategoricalProfile)
    assert c.as_dict() == {"true": 2, "false": 1, "FALSE": 1, "1": 2, "0": 1, "maybe": 1,
                           "2": 1}
    assert (c.missing, c.invalid) == (1, 0)


def test_boolean_words_are_the_ones_reference_profiles_accept():
    from monitor.engine import windows

    assert windows.TRUE_WORDS == tabular.TRUE_WORDS
    assert windows.FALSE_WORDS == tabular.FALSE_WORDS


def test_categorical_values_that_are_not_scalars_are_invalid():
    w = Windower(WindowSpec(size=4), {"c": "categorical"}, settings=EXACT)
    (closed,) = w.add([{"c": "a"}, {"c": {"k": 1}}, {"c": ["a"]}, {"c": float("nan")}])
    c = closed.profile.features["c"]
    assert isinstance(c, CategoricalProfile)
    assert c.as_dict() == {"a": 1} and (c.missing, c.invalid) == (1, 2)


def test_unknown_fields_are_counted_by_name_and_bounded():
    w = Windower(WindowSpec(size=4), {"x": "numerical"}, settings=EXACT)
    rows: list[dict[str, object]] = [{"x": 1.0, "extra": 1}, {"x": 2.0, "extra": 2, "y": 0},
                                     {"x": 3.0}, {"x": 4.0}]
    (closed,) = w.add(rows)
    assert closed.unknown_fields == {"extra": 2, "y": 1}
    assert "extra" in closed.profile.columns and "x" in closed.profile.columns
    w.add_columns({"x": np.ones(3), "z": np.zeros(3)}, 3)
    assert w.unknown_fields == Counter({"extra": 2, "y": 1, "z": 3})
    many = [{"x": 0.0, f"f{i}": 1} for i in range(3 * MAX_UNKNOWN_FIELDS)]
    w.add(many)
    counts = w.unknown_fields
    assert len(counts) == MAX_UNKNOWN_FIELDS + 1
    assert sum(counts.values()) == 6 + 3 * MAX_UNKNOWN_FIELDS
    assert counts[OTHER_FIELDS] == 3 * MAX_UNKNOWN_FIELDS - (MAX_UNKNOWN_FIELDS - 3)


def test_columnar_and_row_input_give_the_same_windows(rng):
    rows = make_rows(rng, 2400)
    columns = {
        "x": np.array([np.nan if r["x"] is None else r["x"] for r in rows], dtype=np.float64),
        "color": np.array([r["color"] for r in rows], dtype=object),
        "flag": np.array([r["flag"] for r in rows]),
    }
    spec = WindowSpec(size=600, slide=200)
    by_rows = Windower(spec, FEATURES, settings=EXACT).add(rows)
    by_cols = Windower(spec, FEATURES, settings=EXACT)
    out: list[ClosedWindow] = []
    for lo in range(0, 2400, 350):
        out += by_cols.add_columns({k: v[lo:lo + 350] for k, v in columns.items()},
                                   min(350, 2400 - lo))
    assert [c.end for c in out] == [c.end for c in by_rows]
    for a, b in zip(by_rows, out, strict=True):
        assert_same_contents(b, dict(a.profile.features))


def test_a_feature_absent_from_every_row_is_missing_in_every_row():
    w = Windower(WindowSpec(size=3), {"x": "numerical", "c": "categorical"}, settings=EXACT)
    (closed,) = w.add_columns({}, 3)
    assert closed.profile.features["x"].missing == 3
    assert closed.profile.features["c"].missing == 3


# -------------------------------------------------------------------- memory


def test_memory_stays_bounded_with_200k_rows_and_a_small_exact_cap(rng):
    settings = ProfileSettings(exact_cap=1000, sketch_k=200)
    spec = WindowSpec(duration_s=100, slide=25)
    w = Windower(spec, FEATURES, settings=settings, clock=FakeClock())
    n = 200_000
    ts = np.arange(n, dtype=np.int64) * 2  # 200k rows over 400 s: 12,500 rows per pane
    columns = {"x": rng.normal(0, 1, n), "color": rng.choice(["a", "b", "c"], n),
               "flag": rng.random(n) < 0.5}
    # one pane per numerical feature holds at most exact_cap values or a sketch of
    # about 3k items for k=200; categories are few; at most size/slide + 1 panes
    bound = (spec.panes + 1) * (max(1000, 3 * 200) + 3 + 2)
    peak = 0
    closed: list[ClosedWindow] = []
    for lo in range(0, n, 5000):
        closed += w.add_columns({k: v[lo:lo + 5000] for k, v in columns.items()}, 5000,
                                ts[lo:lo + 5000])
        peak = max(peak, w.state_size())
    assert peak <= bound
    assert len(closed) == 12 and all(c.rows == 50_000 for c in closed)  # ends 100..375 s
    x = closed[-1].profile.features["x"]
    assert isinstance(x, NumericProfile) and not x.exact and x.count == 50_000


def test_count_windows_hold_at_most_size_over_slide_panes(rng):
    w = Windower(WindowSpec(size=1000, slide=100), {"x": "numerical"},
                 settings=ProfileSettings(exact_cap=50, sketch_k=8))
    for _ in range(20):
        w.add_columns({"x": rng.normal(0, 1, 997)}, 997)
        assert w.state_size() <= 11 * 50


# -------------------------------------------------------------------- checkpoints


def test_snapshot_and_restore_reproduce_the_same_windows(rng):
    rows = make_rows(rng, 5000)
    ts = np.sort(rng.integers(0, 100_000, 5000)).tolist()
    for spec in (WindowSpec(size=1000, slide=250), WindowSpec(duration_s=20, slide=5)):
        straight = Windower(spec, FEATURES, settings=EXACT, clock=FakeClock())
        first = straight.add(rows[:2300], ts[:2300])
        blob = straight.snapshot()
        assert isinstance(blob, bytes)
        restored = Windower(spec, FEATURES, settings=EXACT, clock=FakeClock())
        restored.restore(blob)
        assert restored.open_rows == straight.open_rows
        assert restored.state_size() == straight.state_size()
        a = straight.add(rows[2300:], ts[2300:]) + straight.tick(10_000.0)
        b = restored.add(rows[2300:], ts[2300:]) + restored.tick(10_000.0)
        assert first and a and len(a) == len(b)
        for left, right in zip(a, b, strict=True):
            assert (left.start, left.end, left.rows) == (right.start, right.end, right.rows)
            for name in FEATURES:
                p, q = left.profile.features[name], right.profile.features[name]
                if isinstance(p, NumericProfile):
                    assert isinstance(q, NumericProfile)
                    assert np.array_equal(p.sample.values, q.sample.values)
                    assert (p.mean, p.std, p.minimum, p.maximum, p.missing) == \
                        (q.mean, q.std, q.minimum, q.maximum, q.missing)
                else:
                    assert isinstance(p, CategoricalProfile) and isinstance(q, CategoricalProfile)
                    assert p.as_dict() == q.as_dict() and p.missing == q.missing


def test_restore_keeps_late_events_unknown_fields_and_a_quiet_empty_window():
    w = Windower(WindowSpec(duration_s=1), {"x": "numerical"}, settings=EXACT, clock=FakeClock())
    w.add([{"x": 1.0, "odd": 1}, {"x": 2.0}], [5_000, 4_000])
    w.tick(9.0)
    again = Windower(WindowSpec(duration_s=1), {"x": "numerical"}, settings=EXACT,
                     clock=FakeClock())
    again.restore(w.snapshot())
    assert again.late_events == 1 and again.unknown_fields == Counter({"odd": 1})
    assert again.open_window == (9_000, 10_000) and again.open_rows == 0
    assert again.add([{"x": 3.0}], [8_999]) == [] and again.late_events == 2


def test_restore_refuses_snapshots_of_another_setup_or_broken_bytes(rng):
    w = Windower(WindowSpec(size=10), FEATURES, settings=EXACT)
    w.add(make_rows(rng, 15))
    blob = w.snapshot()
    with pytest.raises(ProfileError, match="other spec"):
        Windower(WindowSpec(size=20), FEATURES, settings=EXACT).restore(blob)
    with pytest.raises(ProfileError, match="other features"):
        Windower(WindowSpec(size=10), {"x": "numerical"}, settings=EXACT).restore(blob)
    with pytest.raises(ProfileError, match="other settings"):
        Windower(WindowSpec(size=10), FEATURES).restore(blob)
    for broken in (b"", b"hello", blob[:40], blob[:-10]):
        with pytest.raises(ProfileError):
            Windower(WindowSpec(size=10), FEATURES, settings=EXACT).restore(broken)


# -------------------------------------------------------------------- specs


@pytest.mark.parametrize("kwargs", [
    {}, {"size": 10, "duration_s": 5}, {"size": 0}, {"size": 10, "slide": 10},
    {"size": 10, "slide": 3}, {"size": 10, "slide": 0}, {"size": 10, "slide": 2.5},
    {"size": True}, {"duration_s": 0}, {"duration_s": float("nan")},
    {"duration_s": 60, "slide": 60}, {"duration_s": 60, "slide": 7},
    {"duration_s": 0.0001}, {"duration_s": 1, "slide": -1},
])
def test_window_specs_that_cannot_work_are_refused(kwargs):
    with pytest.raises(WindowSpecError):
        WindowSpec(**kwargs)


def test_window_specs_report_their_panes():
    assert (WindowSpec(size=1000).panes, WindowSpec(size=1000, slide=250).panes) == (1, 4)
    spec = WindowSpec(duration_s=0.5, slide=0.1)
    assert (spec.kind, spec.length, spec.pane, spec.panes) == ("time", 500, 100, 5)


def test_unknown_feature_types_and_mismatched_columns_are_refused():
    with pytest.raises(WindowSpecError):
        Windower(WindowSpec(size=3), {"x": "text"})  # type: ignore[dict-item]
    w = Windower(WindowSpec(size=3), {"x": "numerical"})
    with pytest.raises(WindowSpecError):
        w.add_columns({"x": np.ones(4)}, 3)
    t = Windower(WindowSpec(duration_s=1), {"x": "numerical"}, clock=FakeClock())
    with pytest.raises(WindowSpecError):
        t.add([{"x": 1.0}], [1, 2])
