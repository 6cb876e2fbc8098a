"""The collector's Kafka sender: the collectors' only kafka-python import.

:class:`KafkaSender` implements :class:`collectors.delivery.queue.Sender` with kafka-python's
``KafkaProducer``, configured so that it can never block the delivery thread for long nor
hold more than a bounded amount of memory:

* **Bounded buffer.**  kafka-python 3.0.12 has no ``buffer_memory`` setting (its record
  accumulator grows without bound while the broker is away), so the sender keeps its own
  account: the bytes of every record handed to the producer and not yet acknowledged or
  failed.  A record that would take the account over ``buffer_bytes`` is refused at once
  (:class:`SenderBufferFull` through ``on_done``), never queued.
* **Short blocking.**  ``max_block_ms`` (50 ms) bounds the one wait ``KafkaProducer.send``
  may do, for the topic's metadata (kafka-python 3.0.12 never blocks on a full buffer: it
  has none, see above).  Building the producer (below) and the first metadata request of
  a topic on a new producer wait at most ``connect_timeout_ms`` each; all of this happens
  on the delivery thread, never on the request path.
* **Failures surface.**  ``request_timeout_ms`` 5 s and ``delivery_timeout_ms`` 10 s: a
  record that the broker has not acknowledged within 10 s of ``send`` fails through its
  callback, which frees its bytes.
* **acks="all".**  A ``sent`` count is a promise that the events are in Kafka: with
  ``acks=1`` a leader that dies before its followers copied the batch loses events that
  were already counted as sent, and the counters would lie.  The cost, one replication
  round trip more per request, is paid on the delivery thread, never by the model.
* **At most once.**  ``retries=0`` and no idempotence: a record is written at most once,
  so a failed request is counted as failed (the broker may in fact have written it when
  only the answer was lost: ``failed`` is an upper bound on losses, never a duplicate).
  Idempotence is off on purpose too: it needs retries, and a broker that lost its state
  (e.g. a restarted in-memory broker) would fence the producer id.
* **No compression** (``compression_type=None``): the CPU belongs to the model.
* **No auto-created topics**: the predictions topic is provisioned with as many
  partitions as the labels topic (a model's predictions and labels must meet on the same
  partition number); one auto-created with the broker's default count would break that,
  so records for a missing topic fail (counted) until it exists.
* **Reconnects by itself**: ``reconnect_backoff_max_ms`` 1 s, so delivery resumes about
  a second after the broker is back, with the same producer.

**Broker down at start.**  ``KafkaProducer()`` bootstraps in its constructor and raises
when no broker answers.  :class:`KafkaSender` therefore builds the producer lazily, on
the first :meth:`~KafkaSender.send`, on the delivery thread; while it cannot be built
every ``send`` fails at once (:class:`SenderUnavailable`, counted as failed by the
delivery) and a new attempt is made at most every ``retry_connect_s``.  Pass
``api_version`` to skip the bootstrap altogether (it is then an upper bound that each
connection lowers to what the broker supports).

**kafka-python 3.0.12 socket leaks, and how they are closed here.**  Its
``KafkaNetSocket.connect`` opens a socket and does not close it when the connection is
refused or times out, and a failed ``KafkaProducer()`` leaves its network selector (a
socket pair) open: Python reports both as ``ResourceWarning: unclosed socket`` when they
are collected, which pytest (``filterwarnings = error``) turns into
``PytestUnraisableExceptionWarning``.  Both are closed here without patching kafka-python:

* the producer is given ``proxy_url="driftline-direct://"``, a scheme that
  kafka-python's own registry of socket factories (``KafkaNetSocket`` subclasses, the
  mechanism its SOCKS5 and HTTP CONNECT proxies use) maps to :class:`_ClosingSocket`:
  a direct connection, like the default one, that closes its socket when ``connect``
  fails in any way;
* the producer's network client is made through a ``kafka_client`` factory that
  remembers it, so a constructor that raises has its client closed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.net.compat import KafkaNetClient
from kafka.net.inet import KafkaNetSocket

from monitor.errors import named
from monitor.runtime import quiet_logger

log = logging.getLogger("driftline.collector.producer")

MIB = 1024 * 1024
DIRECT_SCHEME = "driftline-direct"


class SenderError(Exception):
    """Why a record was refused before it reached the Kafka client."""


class SenderBufferFull(SenderError):
    """The bounded send buffer is full (the broker is down or slower than the traffic)."""


class SenderUnavailable(SenderError):
    """No producer: the broker did not answer the last attempt to build one."""


class SenderClosed(SenderError):
    """The sender was closed."""


class _ClosingSocket(KafkaNetSocket):  # type: ignore[misc]
    """A direct connection (as kafka-python's default) that closes its socket on failure.

    Registered for ``driftline-direct://`` by ``KafkaNetSocket.__init_subclass__``.
    """

    SCHEMES = (DIRECT_SCHEME,)

    async def connect(self, net: Any, addrinfo: Any, socket_options: Any = (), timeout_at: Any = None) -> Any:
        family, sock_type, proto, _canonname, sockaddr = addrinfo
        sock = self.socket(family, sock_type, proto)
        try:
            sock.setblocking(False)
            for option in socket_options:
                sock.setsockopt(*option)
            return await self.sock_connect(net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:  # refused, timed out, or the connecting task was cancelled
            sock.close()
            raise


def _new_producer(**configs: Any) -> Any:
    """``KafkaProducer(**configs)``, closing its network client if the constructor raises."""
    clients: list[Any] = []

    def client_factory(**kw: Any) -> Any:
        client = KafkaNetClient(**kw)
        clients.append(client)
        return client

    try:
        return KafkaProducer(kafka_client=client_factory, **configs)
    except BaseException:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        raise


class KafkaSender:
    """A :class:`~collectors.delivery.queue.Sender` over kafka-python, bounded in memory and time.

    ``on_done`` runs on the Kafka client's I/O thread (or on the caller's thread when a
    record is refused at once), exactly once per :meth:`send`.
    """

    def __init__(self, bootstrap: str, client_id: str = "driftline-collector", *,
                 buffer_bytes: int = 4 * MIB, acks: Literal["all", 1] = "all", linger_ms: int = 20,
                 batch_bytes: int = 128 * 1024, max_request_bytes: int = MIB,
                 request_timeout_ms: int = 5_000, delivery_timeout_ms: int = 10_000, max_block_ms: int = 50,
                 connect_timeout_ms: int = 2_000, retry_connect_s: float = 1.0, retries: int = 0,
                 allow_auto_create_topics: bool = False, api_version: tuple[int, ...] | None = None) -> None:
        if buffer_bytes <= 0:
            raise ValueError("buffer_bytes must be positive")
        self.bootstrap = bootstrap
        self.buffer_bytes = buffer_bytes
        self.retry_connect_s = retry_connect_s
        self._configs: dict[str, Any] = dict(
            bootstrap_servers=bootstrap, client_id=client_id, acks=acks, retries=retries,
            enable_idempotence=False, compression_type=None, linger_ms=linger_ms, batch_size=batch_bytes,
            max_request_size=max_request_bytes, request_timeout_ms=request_timeout_ms,
            delivery_timeout_ms=delivery_timeout_ms, max_block_ms=max_block_ms,
            max_in_flight_requests_per_connection=5, reconnect_backoff_ms=50, reconnect_backoff_max_ms=1_000,
            metadata_max_age_ms=30_000, bootstrap_timeout_ms=connect_timeout_ms,
            allow_auto_create_topics=allow_auto_create_topics,
            proxy_url=f"{DIRECT_SCHEME}://", metrics_enabled=False)
        if api_version is not None:
            self._configs["api_version"] = api_version
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._buffered = 0  # bytes handed to the producer, not yet acknowledged or failed
        self._pending = 0  # records handed to the producer, not yet acknowledged or failed
        self._producer: Any = None
        self._connect_lock = threading.Lock()
        self._next_connect = 0.0
        self._last_error: Exception | None = None
        self._connect_timeout_s = connect_timeout_ms / 1000
        self._warm_topics: set[str] = set()  # topics whose metadata the current producer has
        self._cold_until: dict[str, float] = {}  # no new wait for a topic's metadata before then
        self._cold_s: dict[str, float] = {}  # the backoff after the last failed wait, doubling
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes handed to Kafka and not yet acknowledged or failed (at most ``buffer_bytes``)."""
        with self._lock:
            return self._buffered

    @property
    def connected(self) -> bool:
        """Whether a producer has been built (not whether the broker is up right now)."""
        return self._producer is not None

    def send(self, topic: str, key: bytes, value: bytes, on_done: Callable[[Exception | None], None]) -> None:
        size = len(key) + len(value)
        with self._lock:
            if self._closed:
                refused: Exception | None = SenderClosed("the sender is closed")
            elif self._buffered + size > self.buffer_bytes:
                refused = SenderBufferFull(f"{self._buffered} of {self.buffer_bytes} buffer bytes in use; "
                                           f"a record of {size} bytes does not fit")
            else:
                refused = None
                self._buffered += size
                self._pending += 1
        if refused is not None:
            on_done(refused)
            return
        done = _Once(self, size, on_done)
        try:
            producer = self._ensure_producer()
            if topic not in self._warm_topics and time.monotonic() >= self._cold_until.get(topic, 0.0):
                self._warm(producer, topic)
            future = producer.send(topic, key=key, value=value)
        except Exception as exc:  # no producer, no metadata within max_block_ms, record too large
            done(exc)
            return
        future.add_callback(lambda _metadata: done(None))
        future.add_errback(done)

    def _release(self, size: int) -> None:
        with self._lock:
            self._buffered -= size
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    def _ensure_producer(self) -> Any:
        producer = self._producer
        if producer is not None:
            return producer
        with self._connect_lock:
            if self._producer is not None:
                return self._producer
            now = time.monotonic()
            if now < self._next_connect:
                raise SenderUnavailable(f"Kafka at {self.bootstrap} is not reachable: {self._last_error}")
            try:
                # kafka-python logs every refused connection at ERROR; an outage is expected here
                with quiet_logger("kafka.net.manager", "kafka.net.connection"):
                    producer = _new_producer(**self._configs)
            except (KafkaError, OSError) as exc:
                self._last_error = exc
                self._next_connect = time.monotonic() + self.retry_connect_s
                log.warning("Kafka at %s is not reachable (%s); retrying in %g s",
                            self.bootstrap, named(exc), self.retry_connect_s)
                raise SenderUnavailable(f"Kafka at {self.bootstrap} is not reachable: {exc}") from None
            with self._lock:
                closed = self._closed
            if closed:
                _close_producer(producer, 0.0)
                raise SenderClosed("the sender is closed")
            self._producer = producer
            self._warm_topics = set()
            log.info("Kafka producer connected to %s", self.bootstrap)
            return producer

    def _warm(self, producer: Any, topic: str) -> None:
        """Wait up to ``connect_timeout_ms`` for the metadata of a topic the first time.

        ``send`` waits at most ``max_block_ms`` for it, too short for a first request on a
        fresh connection: without this the first batch after every (re)start would fail.
        When it does not come (the broker went down before it), the next wait is
        ``retry_connect_s`` away, doubling up to 30 s: meanwhile ``send`` fails within
        ``max_block_ms``, so an outage does not hold the delivery thread for
        ``connect_timeout_ms`` per batch.
        """
        deadline = time.monotonic() + self._connect_timeout_s
        while True:
            try:
                producer.partitions_for(topic)  # asks for the metadata, waits max_block_ms
            except KafkaTimeoutError:
                if time.monotonic() < deadline:
                    continue
            except KafkaError:
                pass
            else:
                self._warm_topics.add(topic)
                self._cold_s.pop(topic, None)
                return
            backoff = min(30.0, self._cold_s.get(topic, self.retry_connect_s / 2) * 2)
            self._cold_s[topic] = backoff
            self._cold_until[topic] = time.monotonic() + backoff
            return

    def flush(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every record handed over is acknowledged or failed."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._idle.wait(remaining)

    def close(self, timeout_s: float = 0.0) -> None:
        """Wait at most ``timeout_s`` for what is pending (see :meth:`flush`), then close;
        what is still unacknowledged fails through its ``on_done``
        (``IllegalStateError: Producer is closed forcefully``).  Idempotent."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        self.flush(timeout_s)
        with self._lock:
            self._closed = True
        with self._connect_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            _close_producer(producer, max(0.0, deadline - time.monotonic()))


class _Once:
    """Calls ``on_done`` once and gives the record's bytes back to the buffer."""

    __slots__ = ("_sender", "_size", "_on_done", "_lock", "_called")

    def __init__(self, sender: KafkaSender, size: int, on_done: Callable[[Exception | None], None]) -> None:
        self._sender, self._size, self._on_done = sender, size, on_done
        self._lock = threading.Lock()
        self._called = False

    def __call__(self, exc: Exception | None) -> None:
        with self._lock:
            if self._called:
                return
            self._called = True
        self._sender._release(self._size)
        try:
            self._on_done(exc)
        except Exception:  # the callback runs on Kafka's I/O thread: never let it escape there
            log.exception("delivery callback failed")


def _close_producer(producer: Any, timeout_s: float) -> None:
    """Close ``producer`` within about ``timeout_s``, whatever is still unacknowledged.

    ``KafkaProducer.close(timeout)`` first flushes, waiting up to ``timeout`` *per batch*,
    and raises instead of closing when one is still pending: with the broker away it would
    leave the producer's thread and sockets open.  So ask its I/O thread to stop without
    sending (``force_close``: pending records fail through their callbacks), wait for it,
    and only then close, which then finds nothing to flush.
    """
    sender = getattr(producer, "_sender", None)
    with quiet_logger("kafka.net.manager", "kafka.net.connection", "kafka.net.transport"):
        if sender is not None and hasattr(sender, "force_close"):
            sender.force_close()
            sender.join(max(1.0, timeout_s))
        try:
            producer.close(timeout=0)
        except KafkaError as exc:
            log.warning("closing the Kafka producer: %s", exc)
