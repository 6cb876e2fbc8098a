"""Process plumbing shared by the service and the sidecar (monitor/runtime.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from monitor import runtime

NAMES = ("kafka", "kafka.net.transport", "kafkaesque", "driftline.service")


@pytest.fixture
def root_output() -> Iterator[io.StringIO]:
    """What the root logger's handlers print, with every logger used here let through
    (other tests and CLI runs in this process raise the kafka loggers' levels)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {name: logging.getLogger(name).level for name in NAMES}
    for name in NAMES:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def log_with_traceback(name: str) -> None:
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        logging.getLogger(name).error("%s: connection lost", name, exc_info=True)


def test_records_of_the_named_loggers_and_their_children_lose_their_traceback_not_their_message(
        root_output: io.StringIO) -> None:
    runtime.without_tracebacks("kafka")
    for name in ("kafka", "kafka.net.transport"):
        log_with_traceback(name)
    text = root_output.getvalue()
    assert "Traceback" not in text
    assert text.splitlines() == ["kafka: connection lost", "kafka.net.transport: connection lost"]


def test_other_loggers_keep_their_tracebacks(root_output: io.StringIO) -> None:
    runtime.without_tracebacks("kafka")
    log_with_traceback("kafkaesque")
    log_with_traceback("driftline.service")
    assert root_output.getvalue().count("Traceback (most recent call last)") == 2
