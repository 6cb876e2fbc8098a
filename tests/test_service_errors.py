"""How the service words and bounds its failures: one-line messages that name an
error once, and a shutdown that ends in time when Kafka does not answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kafka.errors import KafkaTimeoutError

from monitor.config import Config
from monitor.errors import CheckpointNotWritten, named
from monitor.service import kafka
from monitor.service.app import Service
from tests.kafka_twin import KafkaTwin
from tests.test_service_commit_order import INTERVAL_S, PRED, Clock, interleaved, produce, write_config


def test_a_kafka_error_is_named_once_in_the_unreachable_message() -> None:
    error = kafka._unreachable("broker:9092", KafkaTimeoutError("Failed to update metadata after 60.0 secs."))
    assert str(error) == ("Kafka at broker:9092 is not reachable: "
                          "KafkaTimeoutError: Failed to update metadata after 60.0 secs.")


def test_an_error_whose_text_lacks_its_name_gets_the_name_and_an_empty_one_is_just_its_name() -> None:
    assert named(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"
    assert named(KafkaTimeoutError()) == "KafkaTimeoutError"
    assert named(RuntimeError("two\nlines")) == "RuntimeError: two lines"


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


# --------------------------------------------------------------------------- a stop bounded by the grace


GRACE_S = 1.0


def _graced(tmp_path: Path) -> Config:
    config = write_config(tmp_path, ["m1"])
    return config.model_copy(update={"service": config.service.model_copy(
        update={"shutdown_grace": GRACE_S})})


def _wait(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _running(tmp_path: Path, rng: np.random.Generator) -> tuple[Service, KafkaTwin]:
    """A started service with one durable checkpoint at offset 4 and 4 records after it."""
    twin, clock = KafkaTwin({"m1": 0}), Clock()
    service = Service(_graced(tmp_path), twin, clock=clock)
    service.start()
    stream = interleaved(["m1"], rng, 200)  # 8 messages
    produce(twin, stream[:4])
    _wait("4 records taken", lambda: service.engine.positions([(PRED, 0)]) == {(PRED, 0): 4})
    clock.advance(INTERVAL_S)
    _wait("the first checkpoint", lambda: twin.committed == {(PRED, 0): 4})
    produce(twin, stream[4:])
    _wait("8 records taken", lambda: service.engine.positions([(PRED, 0)]) == {(PRED, 0): 8})
    return service, twin


def test_a_stop_whose_checkpoint_kafka_does_not_take_ends_within_the_grace_and_says_what_a_restart_replays(
        tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture) -> None:
    service, twin = _running(tmp_path, rng)
    twin.stall("flush")  # the broker is gone: the flush times out

    started = time.monotonic()
    with pytest.raises(CheckpointNotWritten) as raised:
        service.stop()
    assert time.monotonic() - started < GRACE_S + 0.5
    assert str(raised.value).startswith("the last checkpoint could not be written: ")
    assert str(raised.value).endswith("a restart replays what came after the last checkpoint "
                                      "(2027-01-15T08:00:10+00:00): preds[0] from offset 4 (4 records)")
    assert twin.committed == {(PRED, 0): 4}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [str(raised.value)]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback


def test_a_stop_stuck_in_a_kafka_call_that_ignores_its_timeout_still_ends_within_the_grace(
        tmp_path: Path, rng: np.random.Generator) -> None:
    service, twin = _running(tmp_path, rng)
    twin.stall("flush", honours_timeout=False)
    try:
        started = time.monotonic()
        with pytest.raises(CheckpointNotWritten) as raised:
            service.stop()
        assert time.monotonic() - started < GRACE_S + 0.5
        assert str(raised.value).startswith("the last checkpoint was not written within the shutdown "
                                            "grace of 1 s (service.shutdown_grace)")
        assert "preds[0] from offset 4 (4 records)" in str(raised.value)
    finally:
        twin.release()


def test_a_stop_with_kafka_answering_writes_the_checkpoint_and_raises_nothing(
        tmp_path: Path, rng: np.random.Generator) -> None:
    service, twin = _running(tmp_path, rng)
    service.stop()
    assert twin.committed == {(PRED, 0): 8}
    assert service.shutdown_error is None


def test_serve_exits_2_with_one_error_line_when_the_last_checkpoint_is_not_written(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    from monitor.cli.main import main

    config = _graced(tmp_path)
    twin = KafkaTwin({"m1": 0})

    def from_config(path: str, **_: object) -> Service:
        return Service(config, twin, clock=Clock())

    def run(self: uvicorn.Server, sockets: object = None) -> None:  # SIGTERM as soon as it runs
        _wait("assigned", lambda: bool(twin.calls_of("assigned")))
        twin.stall("flush")

    monkeypatch.setattr(Service, "from_config", staticmethod(from_config))
    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert config.source is not None
    code = main(["serve", "--config", str(config.source), "--port", "0", "--host", "127.0.0.1",
                 "--log-level", "critical"])
    assert code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftline: error: the last checkpoint could not be "
                                                   "written: ")
