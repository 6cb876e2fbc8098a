"""The demo's pure parts: the scenario, the requests it sends, the metrics it reads, the view."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from collectors.events import Capture, Instance
from monitor.demo.observe import Snapshot, by_label, parse_metrics, total
from monitor.demo.scenario import FEATURES, Scenario
from monitor.demo.supervisor import ComponentDied, Supervisor
from monitor.demo.traffic import kserve_v1, load_stream, oip_v2, records, row_ids
from monitor.demo.view import Traffic, decision_line, live, summary

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


def test_windows_are_named_by_the_season_of_their_rows() -> None:
    scenario = Scenario(window=1000, normal_rows=1500, drift_rows=2500)
    assert [scenario.window_phase(i) for i in range(4)] == ["normal", "mixed", "drift", "drift"]
    assert scenario.windows == 4


def test_the_stream_is_january_to_march_flights_then_july_in_the_scenario_sizes() -> None:
    scenario = Scenario.fast()
    stream = load_stream(SAMPLE, scenario)
    july = pd.read_parquet(SAMPLE / "flights" / "current.parquet")
    assert list(stream["phase"].value_counts().sort_index().items()) == [("drift", 3000), ("normal", 1000)]
    assert list(stream.columns) == [*FEATURES, "arrived_late", "phase"]
    pd.testing.assert_series_equal(stream["dep_delay"].iloc[1000:].reset_index(drop=True),
                                   july["dep_delay"].iloc[:3000].reset_index(drop=True), check_names=False)


def test_the_unit_bug_injection_sends_july_departure_delays_in_hours() -> None:
    plain = load_stream(SAMPLE, Scenario.fast())
    bug = load_stream(SAMPLE, Scenario.fast(inject="unit-bug"))
    assert bug["dep_delay"].iloc[:1000].equals(plain["dep_delay"].iloc[:1000])
    pd.testing.assert_series_equal(bug["dep_delay"].iloc[1000:], plain["dep_delay"].iloc[1000:] / 60)


def test_rows_become_json_with_missing_values_as_null() -> None:
    frame = pd.DataFrame({"a": [1.5, float("nan")], "b": pd.array([1, None], dtype="Int8"), "c": ["x", None]})
    assert records(frame) == [{"a": 1.5, "b": 1, "c": "x"}, {"a": None, "b": None, "c": None}]
    json.dumps(records(frame))  # plain JSON types only


def test_both_protocols_carry_the_ten_features_and_row_ids_match_the_collector() -> None:
    rows = records(load_stream(SAMPLE, Scenario.fast()).iloc[:3])
    path, body = kserve_v1(rows)
    assert path == "/v1/models/flight-delay:predict"
    assert [set(i) for i in body["instances"]] == [set(FEATURES)] * 3
    path, body = oip_v2(rows, "r-1")
    assert path == "/v2/models/flight-delay/infer" and body["id"] == "r-1"
    assert {t["name"] for t in body["inputs"]} == set(FEATURES)
    assert all(t["shape"] == [3] and len(t["data"]) == 3 for t in body["inputs"])
    assert {t["name"]: t["datatype"] for t in body["inputs"]}["dest"] == "BYTES"
    # the collector's own naming of a request's events (collectors.events.Capture)
    for n in (1, 3):
        capture = Capture(model="m", request_id="r-1", ts_ms=0,
                          instances=tuple(Instance({"x": i}, {"p": 0.5}) for i in range(n)))
        assert [e["request_id"] for e in capture.events()] == row_ids("r-1", n)


def test_metrics_are_read_from_the_text_exposition_by_name_and_labels() -> None:
    text = ('# TYPE driftline_model_performance gauge\n'
            'driftline_model_performance{model="flight-delay",metric="roc_auc"} 0.91\n'
            'driftline_model_performance{model="other",metric="roc_auc"} 0.5\n'
            '# TYPE driftline_collector_events_captured counter\n'
            'driftline_collector_events_captured_total{model="flight-delay"} 4000\n')
    samples = parse_metrics(text)
    perf = by_label(samples, "driftline_model_performance", "metric", model="flight-delay")
    assert perf == {"roc_auc": 0.91}
    assert total(samples, "driftline_collector_events_captured_total", model="flight-delay") == 4000
    assert total(samples, "driftline_model_performance") == pytest.approx(1.41)


WINDOWS = (
    {"drift_detected": False, "features": {"dep_delay": {"drift": False}}},
    {"drift_detected": True, "features": {"dep_delay": {"drift": True, "test": "ks", "statistic": 0.12,
                                                        "p_value_adjusted": 1e-10, "effect_size": 0.3},
                                          "origin": {"drift": False}},
     "performance": {"metrics": {"roc_auc": 0.9}}},
)
ACTION = {"id": "a", "outcome": "dry_run", "alert": "DriftlineDatasetDrift", "model": "flight-delay",
          "action": "retrain", "reason": "dry-run: would create Job retrain-flight-delay-1 in ml because x"}


def test_the_summary_tells_what_happened_in_one_paragraph() -> None:
    snap = Snapshot(captured=2000, windows=WINDOWS, performance={"roc_auc": 0.9, "accuracy": 0.88},
                    alerts=({"state": "firing", "labels": {"alertname": "DriftlineDatasetDrift"}},),
                    actions=(ACTION,))
    text = summary(snap, Scenario(window=1000, normal_rows=1000, drift_rows=1000), alerting=True, elapsed=41)
    assert "\n" not in text
    assert ("1 of 1 windows of January-March flights showed no drift; "
            "1 of 1 later windows drifted, on dep_delay.") in text
    assert "roc_auc 0.900, accuracy 0.880" in text
    assert "Prometheus fired DriftlineDatasetDrift" in text
    assert "dry-run: would create Job retrain-flight-delay-1 in ml because x" in text


def test_a_decision_reads_as_a_sentence() -> None:
    assert decision_line(ACTION) == ACTION["reason"]
    skipped = {**ACTION, "outcome": "skipped", "reason": "cooldown"}
    assert decision_line(skipped) == ("skipped: retrain for flight-delay: cooldown "
                                      "(alert DriftlineDatasetDrift)")


def test_the_live_view_draws_every_panel_without_prometheus_too() -> None:
    traffic = Traffic(rows_total=2000, rows_sent=2000, requests=500, failed=0,
                      by_protocol={"kserve-v1": 250, "oip-v2": 250}, labels_sent=1900, phase="drift",
                      done=True)
    out = io.StringIO()
    Console(file=out, width=120).print(live(traffic, Snapshot(windows=WINDOWS), Scenario(), alerting=False,
                                            missing=["prometheus"], elapsed=3.0))
    text = out.getvalue()
    assert "prometheus not installed: alert rules are not evaluated" in text
    assert "DRIFT" in text and "dep_delay" in text and "500 through the collector" in text


def test_a_child_that_exits_is_reported_with_its_status_and_log_tail(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, "m")
    child = supervisor.start("broken", ["sh", "-c", "echo first; echo 'boom: bad flag' >&2; exit 3"])
    child.popen.wait(10)
    with pytest.raises(ComponentDied) as caught:
        supervisor.check()
    assert str(caught.value).startswith("broken exited with status 3 while the demo ran (log: ")
    assert caught.value.log_tail.splitlines() == ["first", "boom: bad flag"]


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path, "m")
    child = supervisor.start("stubborn", ["sh", "-c", "trap '' TERM; echo up; sleep 60"])
    supervisor.wait_ready(child, lambda: "up" in child.log_tail(), timeout=10)
    child.stop(grace=0.5)
    assert child.popen.returncode == -9


def test_a_missing_program_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentDied, match=r"^nothing could not start: No such file or directory$"):
        Supervisor(tmp_path, "m").start("nothing", [str(tmp_path / "no-such-binary")])


def test_many_failing_requests_end_the_demo_with_the_last_error_instead_of_waiting() -> None:
    from monitor.demo.run import Demo
    from monitor.demo.traffic import Replay

    replay = Replay(load_stream(SAMPLE, Scenario.fast()).iloc[:10], Scenario.fast(), "http://x", "http://y",
                    tag="t")
    replay.counters.requests, replay.counters.failed = 100, 4
    assert Demo._failing(replay) == ""  # a few failures: the demo goes on
    replay.counters.failed, replay.counters.last_error = 25, "HTTP 400: {\"error\": \"unknown input 'x'\"}"
    assert Demo._failing(replay) == ("25 of 100 requests through the collector failed; "
                                     "last: HTTP 400: {\"error\": \"unknown input 'x'\"}")
