"""The stream engine without a broker: model monitors, the label join and checkpoints.

Independent references: each streamed window's drift result is compared with
the batch path (``tabular.profile_frame`` + ``analyze``) on the same rows, and
performance with scikit-learn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from monitor.batch import tabular
from monitor.engine.analysis import DriftSettings, FeatureSpec, analyze
from monitor.engine.performance.check import PerformancePlan
from monitor.engine.profiles import ProfileSettings
from monitor.engine.windows import WindowSpec
from monitor.streaming.engine import MODEL_KEY, StreamEngine, Topics
from monitor.streaming.joiner import LabelJoin
from monitor.streaming.model_state import ModelMonitor, ModelSetup
from monitor.wire.decode import encode_labels, encode_predictions
from monitor.wire.records import Record
from tests.conftest import make_frame

FEATURES = (FeatureSpec("income", "numerical"), FeatureSpec("age", "numerical"),
            FeatureSpec("region", "categorical"), FeatureSpec("is_member", "boolean"))
TYPES = {f.name: f.type for f in FEATURES}
PRED, LAB = "preds", "labels"


def _clock() -> float:
    return 1_800_000_000.0


def _setup(rng: np.random.Generator, *, size: int = 500, name: str = "m",
           performance: bool = True) -> ModelSetup:
    reference = tabular.profile_frame(make_frame(rng, 4000), TYPES)
    plan = PerformancePlan("y", "binary_classification", "score", "numerical") if performance else None
    return ModelSetup(name=name, features=FEATURES, prediction="score" if performance else None,
                      window=WindowSpec(size=size), settings=DriftSettings(),
                      profile=ProfileSettings(), reference=reference, reference_source="test",
                      performance=plan, join_cap=10_000, join_ttl_s=3600)


def _events(frame: pd.DataFrame, start: int, scores: np.ndarray | None = None) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(frame.to_dict("records")):
        event: dict[str, Any] = {"request_id": f"r{start + i}", "ts": 1_700_000_000_000 + start + i,
                                 "inputs": {k: row[k] for k in TYPES}}
        if scores is not None:
            event["outputs"] = {"score": float(scores[i])}
        out.append(event)
    return out


def _records(model: str, frame: pd.DataFrame, *, batch: int = 100, partition: int = 0,
             offset: int = 0, scores: np.ndarray | None = None) -> list[Record]:
    records = []
    for n, lo in enumerate(range(0, len(frame), batch)):
        chunk = frame.iloc[lo:lo + batch]
        part = None if scores is None else scores[lo:lo + batch]
        value = encode_predictions(model, _events(chunk, lo, part))
        records.append(Record(PRED, partition, offset + n, model.encode(), value))
    return records


def test_each_streamed_window_has_the_drift_result_of_the_batch_check_on_the_same_rows(rng):
    setup = _setup(rng, performance=False)
    monitor = ModelMonitor(setup, clock=_clock)
    frame = pd.concat([make_frame(rng, 1000), make_frame(rng, 1000, shift=0.5)], ignore_index=True)
    reports = []
    engine = StreamEngine({"m": setup}, Topics(PRED, LAB), max_bytes=1 << 20, clock=_clock,
                          on_report=reports.append)
    engine.assign([(PRED, 0)], {})
    engine.monitors["m"] = monitor
    assert engine.process(_records("m", frame, batch=70)) == []
    assert [(r.window_start, r.window_end, r.rows) for r in reports] == [
        (0, 500, 500), (500, 1000, 500), (1000, 1500, 500), (1500, 2000, 500)]
    for report in reports:
        rows = frame.iloc[report.window_start:report.window_end]
        batch = analyze(setup.reference, tabular.profile_frame(rows, TYPES), FEATURES, setup.settings)
        for mine, theirs in zip(report.features, batch.features, strict=True):
            assert mine.name == theirs.name and mine.drift == theirs.drift
            assert mine.statistic == pytest.approx(theirs.statistic, rel=1e-12)
            assert mine.p_value == pytest.approx(theirs.p_value, rel=1e-9)
    assert [r.drift_detected for r in reports] == [False, False, True, True]


def test_performance_over_joined_labels_equals_scikit_learn_whichever_side_arrives_first(rng):
    setup = _setup(rng, size=400)
    monitor = ModelMonitor(setup, clock=_clock)
    frame = make_frame(rng, 400)
    y = (rng.random(400) < 0.4).astype(int)
    scores = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    from monitor.wire.decode import decode_labels, decode_predictions

    labels = [{"request_id": f"r{i}", "ts": 1_700_000_000_000 + i + 5, "target": int(y[i])}
              for i in range(400)]
    # labels for the first half come before their predictions, the rest after
    monitor.add_labels(decode_labels(encode_labels("m", labels[:200])))
    monitor.add(decode_predictions(encode_predictions("m", _events(frame, 0, scores))))
    monitor.add_labels(decode_labels(encode_labels("m", labels[200:])))
    assert monitor.last_performance is not None
    metrics = monitor.last_performance.metrics
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, scores), rel=1e-12)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, scores >= 0.5), rel=1e-12)
    assert monitor.join.joined == 400 and len(monitor.join) == 0 and monitor.join.pending_labels == 0


def test_the_join_buffer_evicts_the_oldest_beyond_its_cap_and_its_ttl_and_counts_them():
    join = LabelJoin(cap=3, ttl_ms=1000)
    join.add_predictions(["a", "b", "c", "d"], [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])
    assert len(join) == 3 and join.evicted == 1  # "a" went for the cap
    result = join.add_labels(["a", "c"], [10, 10], [1, 0])
    assert result.y_true == (0,) and result.y_pred == (0.3,)
    assert join.pending_labels == 1  # "a" waits for a prediction that is gone
    join.add_predictions(["e"], [1500], [0.5])  # b (1) and d (3) are now older than the TTL
    assert join.evicted == 3 and len(join) == 1
    join.add_labels(["z"], [5000], [1])  # label "a" (10) and prediction "e" (1500) expire
    assert join.unmatched == 1 and join.evicted == 4


def test_a_model_snapshot_restores_into_a_monitor_that_continues_identically(rng):
    setup = _setup(rng, size=300)
    frame = pd.concat([make_frame(rng, 700), make_frame(rng, 700, shift=0.3)], ignore_index=True)
    scores = rng.random(1400)
    from monitor.wire.decode import decode_predictions

    batches = [decode_predictions(encode_predictions("m", _events(frame.iloc[lo:lo + 100], lo,
                                                                   scores[lo:lo + 100])))
               for lo in range(0, 1400, 100)]
    straight = ModelMonitor(setup, clock=_clock)
    for b in batches:
        straight.add(b)
    first = ModelMonitor(setup, clock=_clock)
    for b in batches[:6]:
        first.add(b)
    resumed = ModelMonitor(setup, clock=_clock)
    resumed.restore(first.snapshot())
    for b in batches[6:]:
        resumed.add(b)
    assert [r.body for r in resumed.history] == [r.body for r in straight.history]
    assert resumed.events == straight.events == 1400
    assert len(resumed.join) == len(straight.join)


def test_a_snapshot_of_another_window_layout_is_refused_with_one_line(rng):
    from monitor.errors import ProfileError

    data = ModelMonitor(_setup(rng, size=300), clock=_clock).snapshot()
    other = ModelMonitor(_setup(rng, size=500), clock=_clock)
    with pytest.raises(ProfileError, match="another window") as info:
        other.restore(data)
    assert "\n" not in str(info.value)
    with pytest.raises(ProfileError, match="malformed"):
        other.restore(b"\x93not a snapshot")


def _run(engine: StreamEngine, records: Sequence[Record]) -> None:
    assert engine.process(records) == []


def test_replay_after_a_torn_checkpoint_counts_every_record_once_per_model(rng):
    """Two models share a partition; the crash came after m1's checkpoint was
    written at offset 12 but before m2's, whose last one says offset 4."""
    setups = {"m1": _setup(rng, size=300, name="m1", performance=False),
              "m2": _setup(rng, size=300, name="m2", performance=False)}
    f1, f2 = make_frame(rng, 1000), make_frame(rng, 1000, shift=0.4)
    r1, r2 = _records("m1", f1), _records("m2", f2)
    records = [Record(PRED, 0, i, r.key, r.value) for i, r in enumerate(
        x for pair in zip(r1, r2, strict=True) for x in pair)]

    def fresh() -> tuple[StreamEngine, list[Any]]:
        seen: list[Any] = []
        engine = StreamEngine(setups, Topics(PRED, LAB), max_bytes=1 << 20, clock=_clock,
                              on_report=seen.append)
        return engine, seen

    straight, _ = fresh()
    straight.assign([(PRED, 0)], {})
    _run(straight, records)

    crashed, _ = fresh()
    crashed.assign([(PRED, 0)], {})
    _run(crashed, records[:4])
    old = crashed.checkpoint([(PRED, 0)])
    _run(crashed, records[4:12])
    new = crashed.checkpoint([(PRED, 0)])
    torn = {MODEL_KEY + "m1": new[MODEL_KEY + "m1"], MODEL_KEY + "m2": old[MODEL_KEY + "m2"]}

    restarted, _ = fresh()
    seeks = restarted.assign([(PRED, 0)], torn)
    assert seeks == {(PRED, 0): 4}
    _run(restarted, records[4:])
    for model in setups:
        want = [(r.window_start, r.rows, r.body["features"]) for r in straight.monitors[model].history]
        got = [(r.window_start, r.rows, r.body["features"]) for r in restarted.monitors[model].history]
        assert got == want
        assert restarted.monitors[model].events == 1000


def test_invalid_records_are_counted_by_reason_and_set_aside_for_the_dlq(rng):
    setup = _setup(rng, performance=False)
    engine = StreamEngine({"m": setup}, Topics(PRED, LAB), max_bytes=2000, clock=_clock)
    engine.assign([(PRED, 0), (LAB, 0)], {})
    good = encode_predictions("m", _events(make_frame(rng, 3), 0))
    bad = [
        b"{not json",
        b'{"schema": 2, "model": "m", "events": []}',
        encode_predictions("nope", _events(make_frame(rng, 2), 0)),
        b'{"schema": 1, "model": "m", "events": [{"ts": "x", "inputs": {}}]}',
        encode_predictions("m", _events(make_frame(rng, 40), 0)),  # over 2000 bytes
        None,
    ]
    records = [Record(PRED, 0, i, b"m", v) for i, v in enumerate([good, *bad])]
    dead = engine.process(records)
    assert [d.reason for d in dead] == ["bad_json", "schema_version", "unknown_model", "wrong_types",
                                        "oversize", "bad_json"]
    assert [d.record.offset for d in dead] == [1, 2, 3, 4, 5, 6]
    status = engine.status()
    assert status.invalid[("m", "schema_version")] == 1
    assert status.invalid[("", "unknown_model")] == 2  # two events, model not configured
    assert status.invalid[("m", "wrong_types")] == 1
    assert status.events_total["m"] == 3
    assert engine.positions([(PRED, 0)]) == {(PRED, 0): 7}


def test_fields_that_are_not_features_are_reported_as_a_schema_change(rng):
    setup = _setup(rng, size=100, performance=False)
    monitor = ModelMonitor(setup, clock=_clock)
    from monitor.wire.decode import decode_predictions

    events = _events(make_frame(rng, 100), 0)
    for e in events:
        e["inputs"]["new_field"] = 1
    [report] = monitor.add(decode_predictions(encode_predictions("m", events)))
    assert report.body["unknown_fields"] == {"new_field": 100}
    assert monitor.status().unknown_fields == {"new_field": 100}


def test_a_reference_change_applies_in_stream_order_and_a_bad_control_record_goes_to_the_dlq(rng):
    from monitor.streaming.engine import CONTROL_HEADER

    setup = _setup(rng, size=200, performance=False)
    shifted = tabular.profile_frame(make_frame(rng, 1234, shift=0.5), TYPES)
    asked: list[str] = []

    def load(model: str) -> tuple[Any, str]:
        asked.append(model)
        return shifted, "uploaded"

    engine = StreamEngine({"m": setup}, Topics(PRED, LAB), max_bytes=1 << 20, clock=_clock,
                          load_reference=load)
    engine.assign([(PRED, 0)], {})
    frame = make_frame(rng, 400, shift=0.5)
    records = _records("m", frame, batch=100)
    control = Record(PRED, 0, 2, b"m", b"", ((CONTROL_HEADER, b"reference"),))
    bogus = Record(PRED, 0, 3, b"m", b"", ((CONTROL_HEADER, b"explode"),))
    stream = [records[0], records[1], control, bogus] + [
        Record(PRED, 0, 4 + i, r.key, r.value) for i, r in enumerate(records[2:])]
    dead = engine.process(stream)
    assert [d.reason for d in dead] == ["wrong_types"] and dead[0].record is bogus
    assert asked == ["m"]
    first, second = engine.monitors["m"].history
    assert first.body["rows_reference"] == 4000 and first.drift_detected
    assert second.body["rows_reference"] == 1234 and not second.drift_detected
    assert engine.status().events_total["m"] == 400


def test_a_quiet_stream_closes_its_time_window_on_the_clock_and_late_events_are_counted(rng):
    setup = ModelSetup(name="m", features=FEATURES, prediction=None,
                       window=WindowSpec(duration_s=60), settings=DriftSettings(),
                       profile=ProfileSettings(), reference=_setup(rng).reference,
                       reference_source="test")
    engine = StreamEngine({"m": setup}, Topics(PRED, LAB), max_bytes=1 << 20, clock=_clock)
    engine.assign([(PRED, 0)], {})
    start = 1_700_000_080_000  # 40 s into the minute [1_700_000_040_000, 1_700_000_100_000)
    events = _events(make_frame(rng, 30), 0)
    for i, e in enumerate(events):
        e["ts"] = start + i * 100
    _run(engine, [Record(PRED, 0, 0, b"m", encode_predictions("m", events))])
    assert engine.monitors["m"].history == deque()
    engine.tick((start + 10_000) / 1000)  # still inside the minute
    assert len(engine.monitors["m"].history) == 0
    engine.tick((start + 25_000) / 1000)  # past its end: the window closes with its 30 rows
    [report] = engine.monitors["m"].history
    assert (report.window_start, report.window_end, report.rows) == (1_700_000_040_000,
                                                                    1_700_000_100_000, 30)
    late = _events(make_frame(rng, 5), 100)
    for e in late:
        e["ts"] = start  # belongs to the window that has closed
    _run(engine, [Record(PRED, 0, 1, b"m", encode_predictions("m", late))])
    assert engine.monitors["m"].windower.late_events == 5


def test_predictions_and_targets_that_do_not_fit_the_task_are_dropped_not_fatal(rng):
    from monitor.wire.decode import decode_labels, decode_predictions

    setup = _setup(rng, size=4)
    monitor = ModelMonitor(setup, clock=_clock)
    events = _events(make_frame(rng, 4), 0, np.array([0.9, 0.1, 0.8, 0.2]))
    events[1]["outputs"] = {"score": "not a number"}
    monitor.add(decode_predictions(encode_predictions("m", events)))
    labels = [{"request_id": f"r{i}", "ts": 1_700_000_000_010, "target": t}
              for i, t in enumerate([1, 0, 1, "maybe"])]
    monitor.add_labels(decode_labels(encode_labels("m", labels)))
    result = monitor.last_performance
    assert result is not None
    assert result.rows + result.dropped == 4 and result.dropped >= 1


def test_a_window_whose_labels_cannot_be_scored_reports_why_instead_of_raising(rng):
    from monitor.streaming.joiner import JoinResult, PerformanceWindow

    window = PerformanceWindow(PerformancePlan("y", "regression", "s", "numerical"), size=2)
    [result] = window.add(JoinResult(("a", "b"), (1.0, 2.0), 0))
    assert result.metrics == {} and "do not fit the task" in result.undefined["all"]


def test_a_record_the_engine_fails_on_goes_to_the_dlq_and_the_next_one_is_processed(rng, monkeypatch):
    setup = _setup(rng, size=100, performance=False)
    engine = StreamEngine({"m": setup}, Topics(PRED, LAB), max_bytes=1 << 20, clock=_clock)
    engine.assign([(PRED, 0)], {})
    records = _records("m", make_frame(rng, 200))
    original = ModelMonitor.add
    calls = []

    def flaky(self: ModelMonitor, batch: Any) -> Any:
        calls.append(batch.n)
        if len(calls) == 1:
            raise ZeroDivisionError("a bug")
        return original(self, batch)

    monkeypatch.setattr(ModelMonitor, "add", flaky)
    dead = engine.process(records)
    assert [(d.reason, d.record.offset) for d in dead] == [("wrong_types", 0)]
    assert "ZeroDivisionError" in dead[0].detail
    assert engine.monitors["m"].events == 100 and len(engine.monitors["m"].history) == 1
    assert engine.status().invalid[("m", "wrong_types")] == 100
    assert engine.status().events_total["m"] == 100


def test_drift_streaks_count_drifted_windows_in_a_row_reset_on_a_clean_one_and_survive_a_restart(rng):
    from monitor.wire.decode import decode_predictions

    setup = _setup(rng, performance=False)
    frame = pd.concat([make_frame(rng, 1000), make_frame(rng, 1500, shift=0.5), make_frame(rng, 500)],
                      ignore_index=True)
    batches = [decode_predictions(encode_predictions("m", _events(frame.iloc[lo:lo + 500], lo)))
               for lo in range(0, 3000, 500)]
    first = ModelMonitor(setup, clock=_clock)
    reports = [r for b in batches[:4] for r in first.add(b)]
    verdicts = [r.drift_detected for r in reports]
    assert verdicts == [False, False, True, True]
    assert first.status().dataset_drift_streak == 2
    drifted = {f.name for f in reports[-1].features if f.drift}
    assert drifted and all(first.status().feature_drift_streaks[name] >= 1 for name in drifted)
    resumed = ModelMonitor(setup, clock=_clock)
    resumed.restore(first.snapshot())
    assert resumed.status().dataset_drift_streak == 2
    assert resumed.status().feature_drift_streaks == first.status().feature_drift_streaks
    assert [r.drift_detected for r in resumed.add(batches[4])] == [True]
    assert resumed.status().dataset_drift_streak == 3
    assert [r.drift_detected for r in resumed.add(batches[5])] == [False]
    assert resumed.status().dataset_drift_streak == 0
    assert set(resumed.status().feature_drift_streaks.values()) <= {0, 1}
