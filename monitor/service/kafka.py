"""Kafka at the edge: the only module that imports kafka-python.  It implements
the interfaces of :mod:`monitor.service.ports`.

* :class:`KafkaConnection` (a :class:`~monitor.service.ports.Connection`)
  opens the clients below, reads the state topic and creates topics.
* :class:`GroupConsumer` (a :class:`~monitor.service.ports.Source`) reads the
  predictions and labels topics in a consumer group and reports partition
  assignments and revocations to callbacks (which run inside
  :meth:`GroupConsumer.poll`, on the consumer's thread).  Lag is read from the
  fetch high-watermark, which is right on every broker (Tansu's
  ``end_offsets`` is not).
* :class:`Producer` (a :class:`~monitor.service.ports.Sink`) writes the DLQ,
  the checkpoints and HTTP-submitted labels with ``acks=all``;
  :meth:`Producer.flush` returns once they are durable.
* :func:`read_state` reads a compacted topic to its end and keeps the last
  value per key, so it is right whether or not the broker has compacted yet.
* :func:`ensure_topics` creates missing topics (the state topic compacted).

Connection problems raise :class:`~monitor.errors.TemporaryError` with one
line that names the bootstrap servers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from monitor.errors import TemporaryError, named
from monitor.runtime import quiet_logger
from monitor.wire.records import Record

log = logging.getLogger("driftline.kafka")

TP = tuple[str, int]
#: the state topic: compacted, and room for a model's checkpoint (a window of up to
#: exact_cap values per feature); real Kafka's default limit is 1 MiB
MAX_STATE_RECORD_BYTES = 64 * 1024 * 1024
_STATE_CONFIGS = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_STATE_RECORD_BYTES)}
Callback = Callable[[list[TP]], None]

# a group join takes ~3 s with these instead of ~23 s at the client's defaults
GROUP_TIMEOUTS = {"session_timeout_ms": 10_000, "heartbeat_interval_ms": 1_000,
                  "max_poll_interval_ms": 300_000}


def _unreachable(bootstrap: str, exc: Exception) -> TemporaryError:
    return TemporaryError(f"Kafka at {bootstrap} is not reachable: {named(exc)}")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assigned: Callback, revoked: Callback) -> None:
        self._assigned, self._revoked = assigned, revoked

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._revoked(sorted((tp.topic, tp.partition) for tp in revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._assigned(sorted((tp.topic, tp.partition) for tp in assigned))


class GroupConsumer:
    """A consumer-group member; it joins on :meth:`subscribe`."""

    def __init__(self, bootstrap: str, group_id: str, *, client_id: str = "driftline",
                 session_timeout_ms: int | None = None) -> None:
        timeouts = dict(GROUP_TIMEOUTS)
        if session_timeout_ms is not None:
            timeouts["session_timeout_ms"] = session_timeout_ms
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id,
                enable_auto_commit=False, auto_offset_reset="earliest",
                # the range assignor gives partition i of every topic to one member,
                # so a model's predictions and labels (both keyed by model) meet
                partition_assignment_strategy=(RangePartitionAssignor,),
                max_partition_fetch_bytes=8 * 1024 * 1024, **timeouts)
        except (KafkaError, OSError) as exc:
            raise _unreachable(bootstrap, exc) from None
        self.bootstrap = bootstrap

    def subscribe(self, topics: Sequence[str], *, on_assigned: Callback,
                  on_revoked: Callback) -> None:
        self._consumer.subscribe(list(topics), listener=_Listener(on_assigned, on_revoked))

    def poll(self, timeout_s: float, max_records: int = 2000) -> list[Record]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out: list[Record] = []
        for tp, records in batches.items():
            for r in records:
                headers = tuple((k, v or b"") for k, v in (r.headers or ()))
                out.append(Record(tp.topic, tp.partition, r.offset, r.key, r.value, headers))
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def partition_for(self, topic: str, key: str) -> int | None:
        """As kafka-python's default partitioner (murmur2 of the key), which the
        collector uses; None while the topic's metadata is unknown."""
        partitions = sorted(self._consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return None
        return int(partitions[(murmur2(key.encode()) & 0x7FFFFFFF) % len(partitions)])

    def commit(self, offsets: Mapping[TP, int], timeout_s: float | None = None) -> None:
        if not offsets:
            return
        timeout_ms = None if timeout_s is None else max(1, int(timeout_s * 1000))
        try:
            self._consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                   for (t, p), o in offsets.items()}, timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise TemporaryError(f"committing offsets failed: {named(exc)}") from None

    def commit_async(self, offsets: Mapping[TP, int]) -> None:
        """Commit without waiting (safe on the client's network thread, e.g. in a
        revocation callback); a failure is logged: the checkpoint's own offsets
        stay authoritative."""
        if not offsets:
            return

        def done(_offsets: object, response: object) -> None:
            if isinstance(response, Exception):
                log.warning("committing offsets on revocation failed: %s", response)

        self._consumer.commit_async({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                     for (t, p), o in offsets.items()}, callback=done)

    def lag(self) -> dict[TP, int]:
        """Messages behind the high-watermark per assigned partition (known ones)."""
        out: dict[TP, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=100)
            except KafkaError:
                continue
            if position is not None:
                out[(tp.topic, tp.partition)] = max(0, high - position)
        return out

    def close(self) -> None:
        with quiet_logger("kafka.net.transport"):  # it logs a traceback for a socket it just closed
            self._consumer.close(autocommit=False, timeout_ms=5000)


class Producer:
    """A :class:`~monitor.service.ports.Sink`: ``acks=all``, durable once flushed."""

    def __init__(self, bootstrap: str, *, client_id: str = "driftline") -> None:
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap, client_id=client_id, acks="all", linger_ms=5,
                max_request_size=MAX_STATE_RECORD_BYTES, retries=5)
        except (KafkaError, OSError) as exc:
            raise _unreachable(bootstrap, exc) from None

    def send(self, topic: str, key: str | bytes | None, value: bytes | None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        raw_key = key.encode() if isinstance(key, str) else key
        self._producer.send(topic, key=raw_key, value=value, headers=list(headers))

    def flush(self, timeout_s: float | None = None) -> None:
        timeout_s = 30.0 if timeout_s is None else timeout_s
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise TemporaryError(f"Kafka did not take the writes in {timeout_s:g} s: "
                                 f"{named(exc)}") from None

    def close(self) -> None:
        with quiet_logger("kafka.net.transport"):  # it logs a traceback for a socket it just closed
            self._producer.close(timeout=5)


def read_state(bootstrap: str, topic: str, *, timeout_s: float = 60.0) -> dict[str, bytes]:
    """The last value of every key of ``topic`` (a None value deletes the key)."""
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 group_id=None, max_partition_fetch_bytes=16 * 1024 * 1024,
                                 fetch_max_bytes=64 * 1024 * 1024)
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from None
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        state: dict[str, bytes] = {}
        pending = set(tps)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TemporaryError(f"reading {topic} took longer than {timeout_s:g} s")
            for _, records in consumer.poll(timeout_ms=200, max_records=10_000).items():
                for r in records:
                    key = (r.key or b"").decode("utf-8", "replace")
                    if r.value is None:
                        state.pop(key, None)
                    else:
                        state[key] = r.value
            for tp in list(pending):
                high = consumer.highwater(tp)
                if high is not None and consumer.position(tp) >= high:
                    pending.discard(tp)
        return state
    finally:
        consumer.close(autocommit=False)


def ensure_topics(bootstrap: str, topics: Mapping[str, int], *, compacted: Iterable[str] = ()
                  ) -> None:
    """Create the topics that do not exist yet, with the given partition counts."""
    compact = set(compacted)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="driftline-admin")
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from None
    try:
        existing = set(admin.list_topics())
        new = {name: {"num_partitions": partitions, "replication_factor": 1,
                      "configs": _STATE_CONFIGS if name in compact else {}}
               for name, partitions in topics.items() if name not in existing}
        if new:
            try:
                admin.create_topics(new, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass  # another replica was quicker
            log.info("created topics %s", ", ".join(new))
    finally:
        admin.close()


class KafkaConnection:
    """The :class:`~monitor.service.ports.Connection` to the brokers at ``bootstrap``;
    building it connects nowhere."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def ensure_topics(self, partitions: Mapping[str, int], *, compacted: Iterable[str] = ()
                      ) -> None:
        ensure_topics(self.bootstrap, partitions, compacted=compacted)

    def read_state(self, topic: str) -> dict[str, bytes]:
        return read_state(self.bootstrap, topic)

    def source(self, group_id: str, *, client_id: str) -> GroupConsumer:
        return GroupConsumer(self.bootstrap, group_id, client_id=client_id)

    def sink(self, *, client_id: str) -> Producer:
        return Producer(self.bootstrap, client_id=client_id)
