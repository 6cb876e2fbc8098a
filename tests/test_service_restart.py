"""What a replica knows after a restart or a rebalance, on the in-memory Kafka of
``tests/kafka_twin.py``: uploaded references, which models it owns, exact event
counts and the latest window's report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.batch.tabular import profile_frame
from monitor.engine import profile_codec
from monitor.service.app import Service
from monitor.streaming.engine import REFERENCE_KEY
from tests.conftest import make_frame
from tests.kafka_twin import Crash, KafkaTwin
from tests.test_api import client_for
from tests.test_export import render
from tests.test_service_commit_order import (
    FEATURES,
    GROUP,
    INTERVAL_S,
    LAB,
    PRED,
    STATE,
    Clock,
    drain,
    interleaved,
    produce,
    write_config,
)


def test_a_stored_reference_the_engine_refuses_is_not_kept_so_a_config_reload_does_not_retry_it(
        tmp_path: Path, rng: np.random.Generator) -> None:
    config = write_config(tmp_path, ["m1"])
    partial = {f: t for f, t in FEATURES.items() if f != "age"}  # lacks a monitored feature
    refused = profile_frame(make_frame(rng, 500)[list(partial)], partial)  # type: ignore[arg-type]
    twin = KafkaTwin({"m1": 0})
    twin.create(STATE, 2)
    twin.produce(STATE, f"{GROUP}/{REFERENCE_KEY}m1", profile_codec.dumps(refused))
    service = Service(config, twin, clock=Clock())
    service.connect()
    service.step()  # assigned: the stored reference is read and refused
    assert service.engine.setups["m1"].reference_source.endswith("reference.parquet")

    result = service.reload_config()

    assert result["reloaded"] is True
    assert service.engine.setups["m1"].reference_source.endswith("reference.parquet")


# --------------------------------------------------------------------------- ownership


def test_with_every_partition_assigned_and_no_event_yet_the_replica_owns_the_model_and_says_no_window_yet(
        tmp_path: Path) -> None:
    service = Service(write_config(tmp_path, ["m1"]), KafkaTwin({"m1": 1}), clock=Clock())
    client = client_for(service)
    service.connect()
    service.step()  # every partition assigned; nothing produced

    assert client.get("/readyz").json()["detail"] == "ready; this replica owns 1 of 1 configured models"
    assert client.get("/models").json()["models"][0]["owned"] is True
    response = client.get("/models/m1/drift")
    assert response.status_code == 404
    assert response.json()["detail"] == ("model 'm1' has no evaluated window yet: 0 rows in the "
                                         "first window, 0% full")


def test_two_members_splitting_the_partitions_each_own_the_models_keyed_to_theirs_before_any_event(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, ["m1", "m2"])
    placement = {"m1": 0, "m2": 1}
    members = {}
    for keeps in (0, 1):  # one twin per member: each sees the group from its side
        twin = KafkaTwin(placement)
        service = Service(config, twin, clock=Clock())
        service.connect()
        twin.rebalance(revoke=[(PRED, 1 - keeps), (LAB, 1 - keeps)])
        service.step()
        service.step()
        members[keeps] = client_for(service)

    for keeps, client in members.items():
        owned = {m["name"]: m["owned"] for m in client.get("/models").json()["models"]}
        mine, theirs = ("m1", "m2") if keeps == 0 else ("m2", "m1")
        assert owned == {mine: True, theirs: False}
        assert client.get("/readyz").json()["detail"] == "ready; this replica owns 1 of 2 configured models"
        assert "no evaluated window yet" in client.get(f"/models/{mine}/drift").json()["detail"]
        assert client.get(f"/models/{theirs}/drift").json()["detail"] == (
            f"model '{theirs}' is owned by another monitor replica (partition {1 - keeps} of preds is "
            "assigned to another member of group g); ask that replica, or read the model's "
            "Prometheus metrics")


# --------------------------------------------------------------------------- exact event counts


def _counters(service: Service, name: str) -> dict[str, float]:
    families = text_string_to_metric_families(render(service.status()))
    return {s.labels["model"]: s.value for f in families for s in f.samples if s.name == name}


def test_after_a_crash_and_a_replay_the_windowed_event_counter_equals_the_distinct_events(
        tmp_path: Path, rng: np.random.Generator) -> None:
    config = write_config(tmp_path, ["m1", "m2"])
    stream = interleaved(["m1", "m2"], rng, 400)  # 16 messages of 25 events per model
    twin, clock = KafkaTwin({"m1": 0, "m2": 0}), Clock()
    first = Service(config, twin, clock=clock)
    first.connect()
    produce(twin, stream[:12])
    drain(first, twin)
    clock.advance(INTERVAL_S)
    first.step()  # a whole checkpoint at offset 12
    produce(twin, stream[12:24])
    drain(first, twin)
    clock.advance(INTERVAL_S)
    twin.crash_on_send(STATE, after=1)  # m1's checkpoint is written (at 24), m2's is not (12)
    with pytest.raises(Crash):
        first.step()

    restarted = Service(config, twin, clock=clock)
    restarted.connect()
    produce(twin, stream[24:])
    drain(restarted, twin)

    assert _counters(restarted, "driftline_events_windowed_total") == {"m1": 400.0, "m2": 400.0}
    # this process's own count: m2's events 150-300 were replayed (first taken by the crashed one)
    consumed = {"m1": 400.0 - 300, "m2": 400.0 - 150}
    assert _counters(restarted, "driftline_events_consumed_total") == consumed
    assert _counters(restarted, "driftline_events_total") == consumed


# --------------------------------------------------------------------------- the report after a restart


def test_the_latest_windows_report_is_served_after_a_restart_before_the_next_window_closes(
        tmp_path: Path, rng: np.random.Generator) -> None:
    config = write_config(tmp_path, ["m1"])
    twin, clock = KafkaTwin({"m1": 0}), Clock()
    first = Service(config, twin, clock=clock)
    first.connect()
    produce(twin, interleaved(["m1"], rng, 150))  # one window of 100 closes, 50 rows stay open
    drain(first, twin)
    assert first.engine.monitors["m1"].latest_window is not None
    first.close()  # checkpointed

    restarted = Service(config, twin, clock=clock)
    restarted.connect()
    restarted.step()

    monitor = restarted.engine.monitors["m1"]
    assert monitor.latest_window is not None and monitor.latest_window.rows == 100
    response = client_for(restarted).get("/models/m1/report")
    assert response.status_code == 200, response.text
    assert "<html" in response.text.lower()
