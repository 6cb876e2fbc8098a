"""How the service words and bounds its failures: one-line messages that name an
error once, and a shutdown that ends in time when Kafka does not answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.errors import KafkaTimeoutError

from monitor.service import kafka
from monitor.service.app import Service
from tests.kafka_twin import KafkaTwin
from tests.test_service_commit_order import Clock, write_config


def test_a_kafka_error_is_named_once_in_the_unreachable_message() -> None:
    error = kafka._unreachable("broker:9092", KafkaTimeoutError("Failed to update metadata after 60.0 secs."))
    assert str(error) == ("Kafka at broker:9092 is not reachable: "
                          "KafkaTimeoutError: Failed to update metadata after 60.0 secs.")


def test_an_error_whose_text_lacks_its_name_gets_the_name_and_an_empty_one_is_just_its_name() -> None:
    assert kafka.describe(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"
    assert kafka.describe(KafkaTimeoutError()) == "KafkaTimeoutError"
    assert kafka.describe(RuntimeError("two\nlines")) == "RuntimeError: two lines"


def test_the_consumer_failure_names_a_kafka_error_once(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    service = Service(write_config(tmp_path, ["m1"]), KafkaTwin(), clock=Clock())
    service.connect()
    source = service._source
    assert source is not None

    def poll(timeout_s: float) -> list[object]:
        raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    monkeypatch.setattr(source, "poll", poll)
    service._run()
    assert service.failure == "KafkaTimeoutError: Failed to update metadata after 60.0 secs."
