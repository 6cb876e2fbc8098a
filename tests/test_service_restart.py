"""What a replica knows after a restart or a rebalance, on the in-memory Kafka of
``tests/kafka_twin.py``: uploaded references, which models it owns, exact event
counts and the latest window's report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitor.batch.tabular import profile_frame
from monitor.engine import profile_codec
from monitor.service.app import Service
from monitor.streaming.engine import REFERENCE_KEY
from tests.conftest import make_frame
from tests.kafka_twin import KafkaTwin
from tests.test_service_commit_order import FEATURES, GROUP, STATE, Clock, write_config


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
