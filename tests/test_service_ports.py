"""A port already in use: ``serve``, ``collect`` and ``webhook`` each end with one
``driftline: error:`` line and exit 2, and ``serve`` finds out before it joins the
consumer group (so a second replica on a taken port never disturbs the first)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_service_commit_order import write_config
from tests.test_webhook import make_certificate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on (here: a plain socket of the test)."""
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def driftline(*args: str) -> tuple[int, list[str], float]:
    env = {**os.environ, "DRIFTLINE_DEBUG": ""}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "monitor.cli.main", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=env)
    return proc.returncode, proc.stderr.splitlines(), time.monotonic() - started


def test_serve_on_a_port_in_use_is_one_error_line_with_exit_2_before_it_tries_kafka(
        tmp_path: Path, taken_port: int) -> None:
    config = write_config(tmp_path, ["m1"])  # Kafka at twin:9092, which resolves nowhere
    assert config.source is not None
    code, stderr, took = driftline("serve", "--config", str(config.source), "--port", str(taken_port))
    assert code == 2
    assert stderr == [f"driftline: error: port {taken_port} on 0.0.0.0 is in use: another process "
                      "listens there; stop it or choose another port"]
    assert took < 30  # no Kafka client was made: it would have waited for twin:9092


def test_collect_on_a_port_in_use_is_one_error_line_with_exit_2(taken_port: int) -> None:
    code, stderr, _ = driftline("collect", "--upstream", "http://127.0.0.1:9", "--model", "m1",
                                "--kafka", "127.0.0.1:9", "--listen", f"0.0.0.0:{taken_port}",
                                "--metrics-port", "0")
    assert code == 2
    assert stderr == [f"driftline: error: port {taken_port} on 0.0.0.0 is in use (--listen): "
                           "another process listens there; stop it or choose another port"]


def test_webhook_on_a_port_in_use_is_one_error_line_with_exit_2(tmp_path: Path, taken_port: int) -> None:
    _, cert, key = make_certificate(tmp_path, "webhook")
    code, stderr, _ = driftline("webhook", "--tls-cert", str(cert), "--tls-key", str(key),
                                "--listen", f"0.0.0.0:{taken_port}", "--log-level", "warning")
    assert code == 2
    assert stderr == [f"driftline: error: port {taken_port} on 0.0.0.0 is in use: another process "
                      "listens there; stop it or choose another port"]
