"""The test-server helpers work against the real servers: Tansu, Prometheus, subprocesses.

Every wait below has its own deadline, so a broken server fails a test in seconds
instead of hanging the suite.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

from tests.servers import Broker, Process, Prometheus, ServerError, free_port, start_broker

pytestmark = pytest.mark.slow  # starts real Tansu and Prometheus

# Fast group membership on Tansu: a join takes ~3 s with these, ~23 s with the defaults.
GROUP_TIMINGS: dict[str, Any] = {"session_timeout_ms": 6000, "max_poll_interval_ms": 6000,
                                 "heartbeat_interval_ms": 1000}
EXPOSITION = b"# TYPE x gauge\nx 1\n"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextmanager
def producer(broker: Broker) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5,
                      request_timeout_ms=10_000, max_block_ms=10_000)
    try:
        yield p
    finally:
        p.close(timeout=5)


@contextmanager
def consumer(broker: Broker, *topics: str, **configs: Any) -> Iterator[KafkaConsumer]:
    c = KafkaConsumer(*topics, bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=10_000, **configs)
    try:
        yield c
    finally:
        c.close(autocommit=False, timeout_ms=5000)


def produce(broker: Broker, topic: str, values: list[bytes], *, key: bytes | None = None,
            partition: int | None = None) -> list[Any]:
    with producer(broker) as p:
        futures = [p.send(topic, value=v, key=key, partition=partition) for v in values]
        p.flush(timeout=10)
        return [f.get(timeout=10) for f in futures]


def poll_until(c: KafkaConsumer, count: int, timeout: float, max_records: int | None = None) -> list[Any]:
    """Poll until ``count`` records arrived; AssertionError with what did arrive otherwise."""
    deadline = time.monotonic() + timeout
    records: list[Any] = []
    while len(records) < count:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{len(records)} of {count} records within {timeout:g} s: "
                                 f"{[r.value for r in records]}")
        for batch in c.poll(timeout_ms=500, max_records=max_records).values():
            records.extend(batch)
    return records


def test_a_keyed_message_round_trips_through_a_consumer_group_which_resumes_from_its_commit(
        broker: Broker) -> None:
    topic, group = unique("roundtrip"), unique("group")
    broker.create_topics([topic])
    sent = produce(broker, topic, [f"event-{i}".encode() for i in range(20)], key=b"credit-default")
    assert len({m.partition for m in sent}) == 1, "one key must land on one partition"
    tp = TopicPartition(topic, sent[0].partition)

    with consumer(broker, topic, group_id=group, **GROUP_TIMINGS) as c:
        records = poll_until(c, 20, timeout=20)
        assert [r.value for r in records] == [f"event-{i}".encode() for i in range(20)]
        assert {(r.key, r.partition) for r in records} == {(b"credit-default", tp.partition)}
        c.commit()
        assert c.committed(tp) == 20

    produce(broker, topic, [f"event-{i}".encode() for i in range(20, 25)], key=b"credit-default")
    with consumer(broker, topic, group_id=group, **GROUP_TIMINGS) as c:
        assert c.committed(tp) == 20
        records = poll_until(c, 5, timeout=20)
        assert [r.value for r in records] == [f"event-{i}".encode() for i in range(20, 25)]


def test_the_fetch_highwater_gives_the_true_consumer_lag(broker: Broker) -> None:
    topic = unique("lag")
    broker.create_topics([topic])
    produce(broker, topic, [b"a" * 100 for _ in range(10)], partition=0)
    tp = TopicPartition(topic, 0)

    with consumer(broker) as c:
        c.assign([TopicPartition(topic, p) for p in range(4)])
        c.seek_to_beginning()
        consumed = len(poll_until(c, 3, timeout=15, max_records=3))
        assert c.position(tp) == consumed
        assert c.highwater(tp) == 10
        assert c.highwater(tp) - c.position(tp) == 10 - consumed


def test_created_topics_have_four_partitions_and_cannot_be_created_twice(broker: Broker) -> None:
    names = [unique("topic"), unique("topic")]
    broker.create_topics(names)

    with broker.admin() as admin:
        described = {t["name"]: sorted(p["partition_index"] for p in t["partitions"])
                     for t in admin.describe_topics(names)}
    assert described == {n: [0, 1, 2, 3] for n in names}
    with producer(broker) as p:
        assert all(p.partitions_for(n) == {0, 1, 2, 3} for n in names)
    with pytest.raises(TopicAlreadyExistsError):
        broker.create_topics(names[:1])


def test_a_broker_of_its_own_starts_fast_and_can_be_killed(tmp_path: Path) -> None:
    with start_broker(tmp_path) as own:
        assert own.startup_s is not None and own.startup_s < 20
        own.create_topics([unique("own")], partitions=2)
        own.kill()
        assert not own.alive()


def test_a_broker_that_cannot_listen_fails_with_its_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))  # bound, not listening: Tansu cannot bind, no client connects
        with Broker(tmp_path, port=busy.getsockname()[1], start_timeout=10) as b, \
                pytest.raises(ServerError, match="AddrInUse"):
            b.start()


@contextmanager
def exposition_server(body: bytes) -> Iterator[str]:
    """A stdlib HTTP server answering every GET with ``body`` as Prometheus text; yields host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_prometheus_scrapes_a_target_and_an_instant_query_returns_its_value(
        prometheus_factory: Callable[..., Prometheus]) -> None:
    with exposition_server(EXPOSITION) as target:
        prom = prometheus_factory([target])
        assert prom.startup_s is not None and prom.startup_s < 30
        result = prom.wait_for('x{job="driftline"}', lambda r: len(r) == 1, timeout=20)
        assert result[0]["metric"] == {"__name__": "x", "instance": target, "job": "driftline"}
        assert float(result[0]["value"][1]) == 1
        assert prom.query("sum(x)")[0]["value"][1] == "1"
        assert [t["health"] for t in prom.targets_health()] == ["up"]
        with pytest.raises(ServerError, match="bad_data"):
            prom.query("x{")


def test_a_process_that_exits_while_awaited_fails_with_its_status_and_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('starting up'); sys.exit('boom: no config')"
    with Process([sys.executable, "-c", code], tmp_path, name="crasher") as proc, \
            pytest.raises(ServerError) as err:
        proc.wait_http(f"http://127.0.0.1:{free_port()}/", timeout=10)
    message = str(err.value)
    assert "exited with status 1" in message
    assert "starting up" in message and "boom: no config" in message


def test_a_process_serving_http_is_awaited_then_killed_with_sigkill_or_terminated(tmp_path: Path) -> None:
    for stop, status in (("kill9", -9), ("terminate", -15)):
        port = free_port()
        with Process([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                     tmp_path, name=f"http-{stop}", cwd=tmp_path) as proc:
            proc.wait_http(f"http://127.0.0.1:{port}/", timeout=15)
            assert getattr(proc, stop)() == status
            assert not proc.alive()
