"""What the service needs of Kafka, as three small interfaces.

* :class:`Source`: one member of a consumer group.  Rebalance callbacks run
  inside :meth:`Source.poll` (and, for the final revocation, inside
  :meth:`Source.close`), on the thread that polls.
* :class:`Sink`: writes that are durable once :meth:`Sink.flush` returns.
* :class:`Connection`: where a Source and a Sink come from, plus the two calls
  that belong to no client: reading the state topic and creating topics.

:mod:`monitor.service.kafka` implements them with kafka-python;
``tests/kafka_twin.py`` in memory, with a log of every call, for tests of the
checkpoint protocol without a broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from monitor.wire.records import Record

TopicPartition = tuple[str, int]
#: called with the partitions assigned, or revoked (sorted)
Rebalance = Callable[[list[TopicPartition]], None]


class Source(Protocol):
    """A consumer-group member that reads records and commits offsets."""

    def subscribe(self, topics: Sequence[str], *, on_assigned: Rebalance,
                  on_revoked: Rebalance) -> None:
        """Join the group on ``topics``; the callbacks run inside :meth:`poll`."""
        ...

    def poll(self, timeout_s: float) -> list[Record]:
        """The next fetched records (in offset order within a partition), or none."""
        ...

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` next (call only for assigned partitions)."""
        ...

    def lag(self) -> dict[TopicPartition, int]:
        """Records behind the high-watermark, per assigned partition whose end is known."""
        ...

    def partition_for(self, topic: str, key: str) -> int | None:
        """The partition a producer's default partitioner puts ``key`` on, or None
        while the topic's partition count is unknown.  Call only from the polling thread."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int], timeout_s: float | None = None) -> None:
        """Commit ``offsets`` (the next record to read) and wait for the answer (at most
        ``timeout_s``, then TemporaryError)."""
        ...

    def commit_async(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit without waiting (safe in a rebalance callback); a failure is only logged."""
        ...

    def close(self) -> None:
        """Leave the group without committing."""
        ...


class Sink(Protocol):
    """A producer: what is sent is durable once :meth:`flush` returns."""

    def send(self, topic: str, key: str | bytes | None, value: bytes | None,
             headers: Sequence[tuple[str, bytes]] = ()) -> None: ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything sent is durable; TemporaryError if it is not in time
        (``timeout_s``, or the client's default)."""
        ...

    def close(self) -> None: ...


class Connection(Protocol):
    """Kafka as the service sees it: clients to open, a state topic to read, topics to create."""

    def ensure_topics(self, partitions: Mapping[str, int], *, compacted: Iterable[str] = ()
                      ) -> None:
        """Create the topics of ``partitions`` that do not exist yet (``compacted`` ones compacted)."""
        ...

    def read_state(self, topic: str) -> dict[str, bytes]:
        """The last value of every key of ``topic`` (a None value deletes the key)."""
        ...

    def source(self, group_id: str, *, client_id: str) -> Source: ...

    def sink(self, *, client_id: str) -> Sink: ...
