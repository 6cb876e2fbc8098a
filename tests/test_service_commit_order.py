"""The checkpoint protocol of the real :class:`~monitor.service.app.Service`, without a broker.

Each test drives the service step by step (``connect``, ``step``, ``close``)
on the in-memory Kafka of ``tests/kafka_twin.py`` with an injected clock, and
reads the twin's ordered call log.  Expected windows come from a run of the
same records without a crash or a rebalance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest

from monitor.config import Config, load_config
from monitor.errors import NotOwnedHere
from monitor.service.app import Service
from monitor.streaming.engine import MODEL_KEY
from monitor.wire.decode import encode_predictions
from tests.conftest import make_frame
from tests.kafka_twin import Call, Crash, KafkaTwin
from tests.test_api import client_for

FEATURES = {"income": "numerical", "age": "numerical", "region": "categorical",
            "is_member": "boolean"}
TOPICS = {"predictions": "preds", "labels": "labels", "dlq": "dlq", "state": "state"}
PRED, LAB, STATE, GROUP = "preds", "labels", "state", "g"
INTERVAL_S = 10.0
BATCH = 25  # events per message


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_config(tmp_path: Path, models: list[str], *, size: int = 100) -> Config:
    reference = tmp_path / "reference.parquet"
    if not reference.exists():
        make_frame(np.random.default_rng(7), 2000)[list(FEATURES)].to_parquet(reference)
    lines = [
        f"kafka: {{bootstrap_servers: 'twin:9092', group_id: {GROUP}, partitions: 2,",
        f"        topics: {json.dumps(TOPICS)}}}",
        f"defaults: {{window: {{size: {size}}}}}",
        f"service: {{checkpoint_interval: {INTERVAL_S:g}s, history: 100}}",
        "models:",
    ]
    for model in models:
        lines += [f"  - name: {model}", "    reference: reference.parquet", "    features:"]
        lines += [f"      {f}: {{type: {t}}}" for f, t in FEATURES.items()]
    path = tmp_path / "driftline.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path)


def messages(model: str, frame: pd.DataFrame) -> list[bytes]:
    out = []
    for lo in range(0, len(frame), BATCH):
        rows = frame.iloc[lo:lo + BATCH][list(FEATURES)].to_dict("records")
        out.append(encode_predictions(model, [
            {"request_id": f"{model}-{lo + i}", "ts": 1_700_000_000_000 + lo + i,
             "inputs": {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in row.items()}}
            for i, row in enumerate(rows)]))
    return out


def interleaved(models: list[str], rng: np.random.Generator, rows: int) -> list[tuple[str, bytes]]:
    """Each model's messages, taking turns (so the models share the offsets of a partition)."""
    per_model = [[(m, value) for value in messages(m, make_frame(rng, rows, shift=0.3 * i))]
                 for i, m in enumerate(models)]
    return [pair for turn in zip(*per_model, strict=True) for pair in turn]


def produce(twin: KafkaTwin, stream: list[tuple[str, bytes]]) -> None:
    for model, value in stream:
        twin.produce(PRED, model, value)


def drain(service: Service, twin: KafkaTwin) -> None:
    """Step until every record of every assigned partition is processed."""
    for _ in range(100):
        service.step()
        if not any(service.engine.lag.values()):
            return
    raise AssertionError(f"not drained in 100 steps; lag {dict(service.engine.lag)}")


def windows(service: Service, model: str) -> list[tuple[int, int, Any]]:
    history = service.engine.monitors[model].history
    return [(r.window_start, r.rows, r.body["features"]) for r in history]


def checkpoint_offsets(value: bytes) -> dict[tuple[str, int], int]:
    entry = msgspec.msgpack.decode(value)
    return {(t, p): o for t, p, o in entry["offsets"]}


def since(twin: KafkaTwin, mark: int, *names: str) -> list[Call]:
    return [call for call in twin.calls[mark:] if call.name in names]


# --------------------------------------------------------------------------- the order


def test_a_checkpoint_is_written_then_flushed_then_committed_at_exactly_its_positions(
        tmp_path: Path, rng: np.random.Generator) -> None:
    twin, clock = KafkaTwin({"m1": 0, "m2": 1}), Clock()
    service = Service(write_config(tmp_path, ["m1", "m2"]), twin, clock=clock, client_id="t")
    service.connect()
    produce(twin, interleaved(["m1", "m2"], rng, 200))
    twin.produce(PRED, "m1", b"{not json")  # a reject: its DLQ record must be durable too
    drain(service, twin)
    assert twin.calls_of("commit", "commit_async", "flush") == []  # no checkpoint is due yet

    clock.advance(INTERVAL_S)
    mark = len(twin.calls)
    service.step()

    writes = since(twin, mark, "send", "flush", "commit", "commit_async")
    assert [(c.who, c.name) for c in writes] == [
        ("sink", "send"), ("sink", "send"), ("sink", "flush"), ("source", "commit")]
    assert [c.args for c in writes[:2]] == [(STATE, f"{GROUP}/{MODEL_KEY}m1"),
                                            (STATE, f"{GROUP}/{MODEL_KEY}m2")]
    stored = twin.state(STATE)
    positions = {**checkpoint_offsets(stored[f"{GROUP}/{MODEL_KEY}m1"]),
                 **checkpoint_offsets(stored[f"{GROUP}/{MODEL_KEY}m2"])}
    assert positions == {(PRED, 0): 9, (PRED, 1): 8}  # 8 messages each, and the reject on 0
    [commit] = writes[3:]
    assert commit.args == (positions,)
    assert twin.committed == positions
    dlq_send = next(i for i, c in enumerate(twin.calls) if c.args[:1] == ("dlq",))
    assert dlq_send < twin.calls.index(writes[2])  # the reject went out before that flush


# --------------------------------------------------------------------------- a torn checkpoint


def test_after_a_crash_between_two_models_checkpoints_every_record_is_applied_once_per_model(
        tmp_path: Path, rng: np.random.Generator) -> None:
    config = write_config(tmp_path, ["m1", "m2"])
    stream = interleaved(["m1", "m2"], rng, 400)  # 32 messages on partition 0, taking turns
    same_partition = {"m1": 0, "m2": 0}

    straight_twin = KafkaTwin(same_partition)
    straight = Service(config, straight_twin, clock=Clock())
    straight.connect()
    produce(straight_twin, stream)
    drain(straight, straight_twin)

    twin, clock = KafkaTwin(same_partition), Clock()
    first = Service(config, twin, clock=clock)
    first.connect()
    produce(twin, stream[:12])
    drain(first, twin)
    clock.advance(INTERVAL_S)
    first.step()  # a whole checkpoint at offset 12, committed
    assert twin.committed == {(PRED, 0): 12}
    produce(twin, stream[12:24])
    drain(first, twin)
    clock.advance(INTERVAL_S)
    twin.crash_on_send(STATE, after=1)  # m1's checkpoint is written, m2's is not
    with pytest.raises(Crash):
        first.step()
    stored = twin.state(STATE)
    assert checkpoint_offsets(stored[f"{GROUP}/{MODEL_KEY}m1"]) == {(PRED, 0): 24}
    assert checkpoint_offsets(stored[f"{GROUP}/{MODEL_KEY}m2"]) == {(PRED, 0): 12}
    assert twin.committed == {(PRED, 0): 12}  # nothing committed after the torn write

    restarted = Service(config, twin, clock=clock)  # a new process; the first is gone
    restarted.connect()
    mark = len(twin.calls)
    produce(twin, stream[24:])
    drain(restarted, twin)
    assert [c.args for c in since(twin, mark, "seek")] == [((PRED, 0), 12)]
    for model in ("m1", "m2"):
        assert windows(restarted, model) == windows(straight, model)
        assert restarted.engine.monitors[model].events == 400


# --------------------------------------------------------------------------- revocation


def test_revoked_partitions_are_checkpointed_and_committed_then_dropped_and_close_commits_nothing_after(
        tmp_path: Path, rng: np.random.Generator) -> None:
    twin, clock = KafkaTwin({"m1": 0, "m2": 1}), Clock()
    service = Service(write_config(tmp_path, ["m1", "m2"]), twin, clock=clock)
    service.connect()
    produce(twin, interleaved(["m1", "m2"], rng, 150))  # 6 messages each
    drain(service, twin)
    assert set(service.status().models) == {"m1", "m2"}

    twin.rebalance(revoke=[(PRED, 1), (LAB, 1)])
    mark = len(twin.calls)
    service.step()

    calls = since(twin, mark, "revoked", "send", "flush", "commit", "commit_async")
    assert [(c.name, c.args) for c in calls] == [
        ("revoked", ([(LAB, 1), (PRED, 1)],)),
        ("send", (STATE, f"{GROUP}/{MODEL_KEY}m2")),
        ("flush", ()),
        ("commit_async", ({(PRED, 1): 6},)),
    ]
    assert twin.committed == {(PRED, 1): 6}
    assert set(service.status().models) == {"m1"} and "m2" not in service.engine.monitors
    owner = "partition 1 of preds is assigned to another member of group g"
    assert service.status().owners == {"m2": owner}
    with pytest.raises(NotOwnedHere) as raised:
        service.history("m2")
    assert raised.value.owner == owner

    mark = len(twin.calls)
    service.close()
    calls = since(twin, mark, "send", "flush", "commit", "commit_async", "close", "revoked")
    assert [(c.who, c.name) for c in calls] == [
        ("sink", "send"), ("sink", "flush"), ("source", "commit"),  # m1's last checkpoint
        ("source", "close"), ("source", "revoked"), ("sink", "close")]
    assert calls[2].args == ({(PRED, 0): 6},)
    assert twin.committed == {(PRED, 0): 6, (PRED, 1): 6}


# --------------------------------------------------------------------------- restore


def test_on_assignment_the_state_is_read_and_partitions_sought_before_readyz_turns_ready(
        tmp_path: Path, rng: np.random.Generator) -> None:
    config = write_config(tmp_path, ["m1"])
    twin, clock = KafkaTwin({"m1": 1}), Clock()
    stream = interleaved(["m1"], rng, 300)  # 12 messages
    first = Service(config, twin, clock=clock)
    first.connect()
    produce(twin, stream[:8])
    drain(first, twin)
    first.close()
    twin.committed.clear()  # the checkpoint, not the group's offsets, says where to resume

    second = Service(config, twin, clock=clock)
    client = client_for(second)
    ready_at_seek: list[bool] = []
    twin.observe = lambda call: ready_at_seek.append(second.status().ready) if call.name == "seek" else None
    assert client.get("/readyz").status_code == 503
    second.connect()
    assert client.get("/readyz").status_code == 503
    mark = len(twin.calls)
    produce(twin, stream[8:])
    second.step()

    calls = since(twin, mark, "assigned", "read_state", "seek")
    assert [(c.name, c.args) for c in calls] == [
        ("assigned", ([(LAB, 0), (LAB, 1), (PRED, 0), (PRED, 1)],)),
        ("read_state", (STATE,)),
        ("seek", ((PRED, 1), 8)),
    ]
    assert ready_at_seek == [False]
    assert client.get("/readyz").status_code == 200
    drain(second, twin)
    assert second.engine.monitors["m1"].events == 300  # nothing replayed twice
    assert [w[:2] for w in windows(second, "m1")] == [(0, 100), (100, 100), (200, 100)]


# --------------------------------------------------------------------------- typed errors over HTTP


def test_labels_sent_before_the_service_is_connected_get_a_503_with_retry_after(tmp_path: Path) -> None:
    service = Service(write_config(tmp_path, ["m1"]), KafkaTwin(), clock=Clock())
    body = json.dumps({"schema": 1, "model": "m1",
                       "labels": [{"request_id": "r1", "ts": 1, "target": 1}]})
    response = client_for(service).post("/labels", content=body,
                                        headers={"Content-Type": "application/json"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "the service is not connected to Kafka yet"}


def test_labels_for_a_model_not_in_the_config_get_a_404_naming_the_configured_ones(
        tmp_path: Path) -> None:
    service = Service(write_config(tmp_path, ["m1", "m2"]), KafkaTwin(), clock=Clock())
    body = json.dumps({"schema": 1, "model": "m3", "labels": []})
    response = client_for(service).post("/labels", content=body,
                                        headers={"Content-Type": "application/json"})
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown model 'm3'; configured models: 'm1', 'm2'"}
