"""An in-memory twin of the service's Kafka (:mod:`monitor.service.ports`).

:class:`KafkaTwin` is a :class:`~monitor.service.ports.Connection`: topics of
partitions that keep every record with its offset (the state topic too: an
uncompacted log, so a reader must take the last value per key), a committed
offset per partition, and one group whose rebalances a test triggers with
:meth:`KafkaTwin.rebalance`; the callbacks then run inside the next
:meth:`TwinSource.poll`, as kafka-python runs them.  Every call that matters to
the checkpoint protocol is appended to :attr:`KafkaTwin.calls`, in order.

What it leaves out: brokers, replication, consumer-group members other than
the latest source, fetch sizes and timeouts (a poll returns what is there at
once).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.errors import TemporaryError
from monitor.service.ports import Rebalance, TopicPartition
from monitor.wire.records import Record

MAX_POLL_RECORDS = 500


class Crash(Exception):
    """The process died here (raised by an armed :meth:`KafkaTwin.crash_on_send`)."""


@dataclass(frozen=True)
class Call:
    """One call in the log: ``who`` is "source", "sink" or "twin"."""

    who: str
    name: str
    args: tuple[Any, ...] = ()


@dataclass
class _Crash:
    topic: str
    sends_left: int


@dataclass
class _Member:
    topics: tuple[str, ...]
    on_assigned: Rebalance
    on_revoked: Rebalance
    pending: list[tuple[str, list[TopicPartition]]] = field(default_factory=list)


class KafkaTwin:
    """Topics, committed offsets and one consumer group, in memory."""

    def __init__(self, placement: Mapping[str, int] | None = None) -> None:
        """``placement``: the partition of some keys (the others go by a hash)."""
        self.logs: dict[str, list[list[Record]]] = {}  # topic -> partition -> records
        self.committed: dict[TopicPartition, int] = {}
        self.calls: list[Call] = []
        self._placement = dict(placement or {})
        self._crash: _Crash | None = None
        self._member: _Member | None = None  # the group's one member: the latest source
        self.observe: Callable[[Call], None] = lambda call: None  # a test's hook on every call
        self._stalls: dict[str, bool] = {}  # call name -> whether it honours its timeout
        self._released = threading.Event()

    def log(self, who: str, name: str, *args: Any) -> None:
        call = Call(who, name, args)
        self.calls.append(call)
        self.observe(call)

    # ---- what a test does

    def create(self, topic: str, partitions: int) -> None:
        self.logs.setdefault(topic, [[] for _ in range(partitions)])

    def partition_for(self, topic: str, key: str) -> int:
        count = len(self.logs[topic])
        return self._placement.get(key, zlib.crc32(key.encode())) % count

    def produce(self, topic: str, key: str | bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes]] = (), *, partition: int | None = None) -> Record:
        raw = key.encode() if isinstance(key, str) else key
        if partition is None:
            partition = self.partition_for(topic, (raw or b"").decode())
        records = self.logs[topic][partition]
        record = Record(topic, partition, len(records), raw, value, tuple(headers))
        records.append(record)
        return record

    def crash_on_send(self, topic: str, *, after: int) -> None:
        """Let ``after`` more sends to ``topic`` through, then raise :class:`Crash`."""
        self._crash = _Crash(topic, after)

    def stall(self, name: str, *, honours_timeout: bool = True) -> None:
        """Make every ``name`` call ("flush" or "commit") hang as with the broker down: until
        :meth:`release`, or, when it ``honours_timeout``, until its timeout passes, then
        TemporaryError as the Kafka clients of :mod:`monitor.service.kafka` raise."""
        self._stalls[name] = honours_timeout
        self._released.clear()

    def release(self) -> None:
        """The broker is back: stalled calls return."""
        self._stalls.clear()
        self._released.set()

    def _wait(self, name: str, timeout_s: float | None) -> None:
        if name not in self._stalls:
            return
        honours = self._stalls[name]
        started = time.monotonic()
        if self._released.wait(timeout_s if honours else None):
            return
        raise TemporaryError(f"Kafka did not answer the {name} in "
                             f"{time.monotonic() - started:.1f} s")

    def rebalance(self, *, revoke: Iterable[TopicPartition] = (),
                  assign: Iterable[TopicPartition] = ()) -> None:
        """Revoke, then assign, partitions of the current member on its next poll."""
        member = self._member
        assert member is not None, "no source has subscribed"
        for name, partitions in (("revoked", sorted(revoke)), ("assigned", sorted(assign))):
            if partitions:
                member.pending.append((name, partitions))

    def records(self, topic: str) -> list[Record]:
        return [r for partition in self.logs[topic] for r in partition]

    def state(self, topic: str) -> dict[str, bytes]:
        """The last value of every key, as a reader of a compacted topic sees it."""
        out: dict[str, bytes] = {}
        for record in self.records(topic):
            key = (record.key or b"").decode()
            if record.value is None:
                out.pop(key, None)
            else:
                out[key] = record.value
        return out

    def calls_of(self, *names: str) -> list[Call]:
        return [call for call in self.calls if call.name in names]

    # ---- Connection

    def ensure_topics(self, partitions: Mapping[str, int], *, compacted: Iterable[str] = ()
                      ) -> None:
        self.log("twin", "ensure_topics", dict(partitions), tuple(compacted))
        for topic, count in partitions.items():
            self.create(topic, count)

    def read_state(self, topic: str) -> dict[str, bytes]:
        self.log("twin", "read_state", topic)
        return self.state(topic)

    def source(self, group_id: str, *, client_id: str) -> TwinSource:
        return TwinSource(self)

    def sink(self, *, client_id: str) -> TwinSink:
        return TwinSink(self)

    def _send(self, topic: str, key: str | bytes | None, value: bytes | None,
              headers: Sequence[tuple[str, bytes]]) -> None:
        crash = self._crash
        if crash is not None and crash.topic == topic:
            if crash.sends_left == 0:
                self._crash = None
                self.log("sink", "crash", topic)
                raise Crash(f"crashed while sending to {topic}")
            crash.sends_left -= 1
        # written at once: a crash after a send but before its flush may still
        # leave the record in the topic, as with a real producer
        self.produce(topic, key, value, headers)


class TwinSource:
    """The group's only member (a new one takes over from the last, as after a crash)."""

    def __init__(self, twin: KafkaTwin) -> None:
        self._twin = twin
        self._positions: dict[TopicPartition, int] = {}
        self.closed = False

    @property
    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def subscribe(self, topics: Sequence[str], *, on_assigned: Rebalance,
                  on_revoked: Rebalance) -> None:
        twin = self._twin
        member = twin._member = _Member(tuple(topics), on_assigned, on_revoked)
        member.pending.append(("assigned", sorted(
            (t, p) for t in topics for p in range(len(twin.logs[t])))))

    def poll(self, timeout_s: float) -> list[Record]:
        twin, member = self._twin, self._twin._member
        assert not self.closed and member is not None
        while member.pending:
            name, partitions = member.pending.pop(0)
            twin.log("source", name, partitions)
            if name == "revoked":
                member.on_revoked(partitions)
                for tp in partitions:
                    self._positions.pop(tp, None)
            else:
                for tp in partitions:
                    self._positions[tp] = twin.committed.get(tp, 0)
                member.on_assigned(partitions)
        out: list[Record] = []
        for (topic, partition), position in sorted(self._positions.items()):
            fetched = twin.logs[topic][partition][position:position + MAX_POLL_RECORDS - len(out)]
            out += fetched
            self._positions[(topic, partition)] = position + len(fetched)
        return out

    def seek(self, topic: str, partition: int, offset: int) -> None:
        assert (topic, partition) in self._positions, f"{topic}[{partition}] is not assigned"
        self._twin.log("source", "seek", (topic, partition), offset)
        self._positions[(topic, partition)] = offset

    def lag(self) -> dict[TopicPartition, int]:
        logs = self._twin.logs
        return {(t, p): len(logs[t][p]) - position for (t, p), position in self._positions.items()}

    def partition_for(self, topic: str, key: str) -> int | None:
        return self._twin.partition_for(topic, key)

    def commit(self, offsets: Mapping[TopicPartition, int], timeout_s: float | None = None) -> None:
        self._twin._wait("commit", timeout_s)
        self._commit("commit", offsets)

    def commit_async(self, offsets: Mapping[TopicPartition, int]) -> None:
        self._commit("commit_async", offsets)

    def _commit(self, name: str, offsets: Mapping[TopicPartition, int]) -> None:
        self._twin.log("source", name, dict(offsets))
        if not self.closed:  # a closed consumer commits nothing; the log shows the attempt
            self._twin.committed.update(offsets)

    def close(self) -> None:
        """Leave the group: the member's partitions are revoked first, as kafka-python does."""
        twin, member = self._twin, self._twin._member
        twin.log("source", "close")
        if member is not None and self._positions:
            twin.log("source", "revoked", sorted(self._positions))
            member.on_revoked(sorted(self._positions))
        self._positions.clear()
        self.closed = True


class TwinSink:
    def __init__(self, twin: KafkaTwin) -> None:
        self._twin = twin

    def send(self, topic: str, key: str | bytes | None, value: bytes | None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self._twin.log("sink", "send", topic, key)
        self._twin._send(topic, key, value, headers)

    def flush(self, timeout_s: float | None = None) -> None:
        self._twin.log("sink", "flush")
        self._twin._wait("flush", timeout_s)

    def close(self) -> None:
        self._twin.log("sink", "close")
