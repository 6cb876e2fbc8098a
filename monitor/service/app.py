"""``driftline serve``: the composition root of the streaming service.

It wires Kafka (a :class:`~monitor.service.ports.Connection`: real Kafka from
:mod:`monitor.service.kafka` in :meth:`Service.from_config`, an in-memory twin
in tests) to the stream engine (:mod:`monitor.streaming.engine`), the engine
to the read model the API and ``/metrics`` show (:mod:`monitor.service.api`,
:mod:`monitor.service.export`), and runs the API with uvicorn.

Threads: one consumer thread polls Kafka and owns the engine; rebalance
callbacks run inside its poll.  The API runs on uvicorn's event loop and
reads the latest :class:`~monitor.streaming.status.ServiceStatus`, swapped in
whole after each batch; the few calls that touch the engine (labels, a new
reference, a reload, history) take the engine lock, which the consumer holds
only while it processes one fetched batch.

Checkpoints: every ``service.checkpoint_interval``, when partitions are
revoked, and on shutdown the engine's state of the partitions goes to the
state topic (``acks=all``, flushed) and then the consumer offsets are
committed.  On assignment the state topic is read to its end and each
partition is sought to where its checkpoint stops; ``/readyz`` turns ready
once that is done.  A crash (even ``kill -9``) loses only work since the last
checkpoint, which is replayed from Kafka.  A stop takes at most
``service.shutdown_grace``; when Kafka does not take the last checkpoint in that
time, :meth:`Service.stop` raises :class:`~monitor.errors.CheckpointNotWritten`,
which says what a restart replays.

Ownership: producers key events by model name, so a model's partition is known
from Kafka's default partitioner; a replica owns the models of its assigned
partitions from the assignment on, before their first event.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from monitor.config import Config, load_config
from monitor.engine import profile_codec
from monitor.engine.profiles import Profile
from monitor.errors import (
    CheckpointNotWritten,
    DriftlineError,
    InputError,
    NotOwnedHere,
    NotReady,
    ProfileError,
    TemporaryError,
    named,
    one_line,
)
from monitor.service import kafka
from monitor.service.ports import Connection, Sink, Source
from monitor.streaming.engine import CONTROL_HEADER, REFERENCE_KEY, StreamEngine, TopicPartition, Topics
from monitor.streaming.model_state import ModelMonitor, ModelSetup
from monitor.streaming.setups import model_setup
from monitor.streaming.status import ServiceStatus, WindowReport
from monitor.wire.decode import CONTENT_TYPE_HEADER, MSGPACK, decode_labels

log = logging.getLogger("driftline.service")
Clock = Callable[[], float]
REASON_HEADER = "driftline-reason"
ERROR_HEADER = "driftline-error"
ORIGIN_HEADER = "driftline-origin"


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


class Service:
    """The monitor service: Kafka in, windows evaluated, state checkpointed.

    It opens its clients from ``connection`` in :meth:`connect`.  :meth:`start`
    runs :meth:`step` on a consumer thread until :meth:`stop`; tests call
    :meth:`connect`, :meth:`step` and :meth:`close` themselves."""

    def __init__(self, config: Config, connection: Connection, *, clock: Clock = time.time,
                 client_id: str | None = None) -> None:
        self.config = config
        self._connection = connection
        self._clock = clock
        self.client_id = client_id or f"driftline-{os.getpid()}"
        self._uploaded: dict[str, tuple[Any, str]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: str | None = None
        topics = self.config.kafka.topics
        self.engine = StreamEngine(self._setups(self.config), Topics(topics.predictions, topics.labels),
                                   max_bytes=self.config.service.max_message_bytes, clock=clock,
                                   namespace=f"{self.config.kafka.group_id}/",
                                   load_reference=self._load_reference,
                                   on_reference=self._reference_taken)
        self._source: Source | None = None
        self._sink: Sink | None = None
        self._last_checkpoint = clock()
        self._last_lag = 0.0
        self._closing = False
        self._partition_of: dict[str, int | None] = {}  # model -> its predictions partition
        self._owners_stale = False  # assignment or models changed: look the partitions up
        self._owners: dict[str, str] = {}
        self._status = self.engine.status()
        # where a restart would resume each partition: the offsets of the last durable
        # checkpoint (written here, or restored on assignment); for the shutdown's log
        self._durable: dict[TopicPartition, int] = {}
        self._durable_at: float | None = None
        self._deadline: float | None = None  # monotonic: when a stop must be done
        self._last_written = False  # the stop's checkpoint is durable
        self.shutdown_error: CheckpointNotWritten | None = None

    @classmethod
    def from_config(cls, config_path: str, *, clock: Clock = time.time,
                    client_id: str | None = None) -> Service:
        """The service of the config file at ``config_path``, on the Kafka it names."""
        config = load_config(config_path)
        return cls(config, kafka.KafkaConnection(config.kafka.bootstrap_servers), clock=clock,
                   client_id=client_id)

    def _setups(self, config: Config) -> dict[str, ModelSetup]:
        now = _stamp(self._clock())
        return {m.name: model_setup(config, m.name, created_at=now,
                                    reference=self._uploaded.get(m.name))
                for m in config.models}

    # ---- lifecycle

    def start(self) -> None:
        """Connect to Kafka and start consuming in a background thread."""
        from monitor.engine.stats import ks

        ks.preload()  # scipy.stats now, not in the first window's evaluation
        self.connect()
        self._thread = threading.Thread(target=self._run, name="driftline-consumer", daemon=True)
        self._thread.start()

    def connect(self) -> None:
        """Create missing topics, open the sink and the source, join the group."""
        cfg = self.config.kafka
        self._connection.ensure_topics(
            {t: cfg.partitions for t in (cfg.topics.predictions, cfg.topics.labels,
                                         cfg.topics.dlq, cfg.topics.state)},
            compacted=[cfg.topics.state])
        self._sink = self._connection.sink(client_id=self.client_id)
        source = self._connection.source(cfg.group_id, client_id=self.client_id)
        source.subscribe([cfg.topics.predictions, cfg.topics.labels],
                         on_assigned=self._assigned, on_revoked=self._revoked)
        self._source = source

    def stop(self, grace_s: float | None = None) -> None:
        """Checkpoint everything owned, leave the group and stop, all within ``grace_s``
        (``service.shutdown_grace``).  Raises :class:`CheckpointNotWritten` (logged as one
        line, saying what a restart replays) when the last checkpoint was not written in
        that time: the process should then exit non-zero."""
        grace = self.config.service.shutdown_grace if grace_s is None else grace_s
        self._deadline = time.monotonic() + grace
        self._stop.set()
        thread = self._thread
        if thread is None:
            return
        thread.join(grace)
        if thread.is_alive():  # stuck in a Kafka call that does not time out in time
            if self._last_written:
                log.warning("the last checkpoint is written, but leaving the consumer group took "
                            "longer than the shutdown grace of %g s", grace)
                return
            error = CheckpointNotWritten(
                f"the last checkpoint was not written within the shutdown grace of {grace:g} s "
                f"(service.shutdown_grace): Kafka did not answer; {self._replay_note()}")
            log.error("%s", error)
            raise error
        if self.shutdown_error is not None:
            raise self.shutdown_error

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
            # the clients' timeouts end a little before the grace, so their error is the one told
            left = None if self._deadline is None else self._deadline - time.monotonic() - 0.25
            self.close(None if left is None else max(0.1, left))
        except CheckpointNotWritten as exc:  # stopping: say what a restart replays, no traceback
            self.shutdown_error = exc
            log.error("%s", exc)
        except Exception as exc:  # the consumer cannot go on: say why, let k8s restart us
            reason = named(exc)
            if self._stop.is_set():  # it failed while stopping: the last checkpoint is not written
                self.shutdown_error = CheckpointNotWritten(
                    f"the last checkpoint could not be written: {reason}; {self._replay_note()}")
                log.error("%s", self.shutdown_error)
            else:
                self.failure = reason
                if isinstance(exc, DriftlineError):  # a known condition: one line is enough
                    log.error("the consumer stopped: %s", self.failure)
                else:  # a bug: its traceback
                    log.exception("the consumer stopped: %s", self.failure)
            self.engine.set_ready(False)
            self._publish()
        finally:
            self._disconnect()

    def step(self, timeout_s: float = 0.2) -> None:
        """One poll: process the records, set rejects aside in the DLQ, close quiet
        time windows, and checkpoint then commit when the interval has passed."""
        source, sink = self._source, self._sink
        assert source is not None and sink is not None, "connect() first"
        records = source.poll(timeout_s)
        if self._owners_stale:  # after the poll: an assignment made in it is seen at once
            self._look_up_owners()
        offsets: dict[TopicPartition, int] | None = None
        with self._lock:
            for letter in self.engine.process(records):
                record = letter.record
                sink.send(
                    self.config.kafka.topics.dlq, record.key, record.value,
                    [*record.headers, (REASON_HEADER, letter.reason.encode()),
                     (ERROR_HEADER, letter.detail.encode()[:1000]),
                     (ORIGIN_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode())])
            now = self._clock()
            if not records:
                self.engine.tick(now)
            if now - self._last_checkpoint >= self.config.service.checkpoint_interval:
                offsets = self._checkpoint(self.engine.assigned)
            self._publish()
        # calls that wait on the consumer's network loop run outside the lock
        if offsets is not None:
            source.commit(offsets)
        if now - self._last_lag >= 1.0 or not records:
            lag = source.lag()
            with self._lock:
                self.engine.set_lag(lag)
            self._last_lag = now

    def close(self, timeout_s: float | None = None) -> None:
        """Checkpoint every assigned partition, commit, leave the group.  The checkpoint
        and the commit wait at most ``timeout_s`` (``service.shutdown_grace``) together;
        :class:`CheckpointNotWritten` when the checkpoint is not durable by then (a
        commit that fails after it is only logged: the checkpoint says where to resume)."""
        source = self._source
        assert source is not None, "connect() first"
        timeout = self.config.service.shutdown_grace if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        try:
            try:
                with self._lock:
                    offsets = self._checkpoint(self.engine.assigned, timeout_s=timeout)
            except Exception as exc:
                reason = one_line(exc) if isinstance(exc, DriftlineError) else named(exc)
                raise CheckpointNotWritten(f"the last checkpoint could not be written: {reason}; "
                                           f"{self._replay_note()}") from None
            self._last_written = True
            try:
                source.commit(offsets, timeout_s=max(0.1, deadline - time.monotonic()))
            except TemporaryError as exc:
                log.warning("stopped with the state checkpointed, but the offsets were not "
                            "committed (%s): the checkpoint says where to resume, nothing is "
                            "replayed", one_line(exc))
            else:
                log.info("stopped cleanly: state checkpointed, offsets committed")
        finally:
            self._disconnect()

    def _replay_note(self) -> str:
        """What a restart replays: each partition from its last durable checkpoint."""
        positions = self.engine.positions(set(self.engine.assigned))  # a note: no lock needed
        parts = []
        for (topic, partition), position in sorted(positions.items()):
            start = self._durable.get((topic, partition))
            if start is None:
                parts.append(f"{topic}[{partition}] from the group's committed offset")
            elif position > start:
                parts.append(f"{topic}[{partition}] from offset {start} ({position - start} records)")
        last = ("the last checkpoint" if self._durable_at is None
                else f"the last checkpoint ({_stamp(self._durable_at)})")
        if not parts:
            return f"a restart replays nothing: no record was taken after {last}"
        more = f" and {len(parts) - 8} more partitions" if len(parts) > 8 else ""
        return f"a restart replays what came after {last}: {', '.join(parts[:8])}{more}"

    def _disconnect(self) -> None:
        """Close the clients (once); the sink stays set, so a late API call is refused
        by Kafka rather than told "not connected yet"."""
        if self._closing:
            return
        self._closing = True  # leaving the group revokes everything: already checkpointed
        for client in (self._source, self._sink):
            if client is not None:
                client.close()

    def _publish(self) -> None:
        status = self.engine.status()
        self._status = replace(status, owners=self._owners, model_lag=self._model_lag(status))

    def _model_lag(self, status: ServiceStatus) -> dict[str, int]:
        """Each owned model's lag: that of the predictions partition its key hashes to."""
        topic = self.config.kafka.topics.predictions
        lag: dict[str, int] = {}
        for model in status.models:
            partition = self._partition_of.get(model)
            if partition is not None and (topic, partition) in status.lag:
                lag[model] = status.lag[(topic, partition)]
        return lag

    # ---- partitions

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        source = self._source
        assert source is not None
        with self._lock:
            cfg = self.config.kafka
            stored = self._connection.read_state(cfg.topics.state) if partitions else {}
            for model in list(self.engine.setups):
                loaded = self._stored_reference(stored, model)
                if loaded is not None:
                    try:
                        self.engine.set_reference(model, *loaded)
                    except ProfileError as exc:
                        log.warning("model %s: the uploaded reference is not used: %s", model, exc)
            seeks = self.engine.assign(partitions, stored)
            self._durable.update(seeks)
            for (topic, partition), offset in seeks.items():
                source.seek(topic, partition, offset)
            self.engine.set_ready(True)
            log.info("assigned %s; %d model(s) restored",
                     ", ".join(f"{t}[{p}]" for t, p in partitions) or "no partitions",
                     len(self.engine.models_on(partitions)))
            self._owners_stale = True  # looked up after this poll: not from inside a callback
            self._publish()

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        # may run on the client's network thread: no blocking consumer calls here,
        # so the commit is asynchronous; the checkpoint's own offsets are what
        # the next owner seeks to in any case
        if self._closing:
            return
        source = self._source
        assert source is not None
        with self._lock:
            source.commit_async(self._checkpoint(set(partitions) & self.engine.assigned))
            self.engine.revoke(partitions)
            for tp in partitions:
                self._durable.pop(tp, None)
            log.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in partitions) or "nothing")
            self._owners = self._owners_now()
            self._publish()

    def _checkpoint(self, partitions: set[TopicPartition], timeout_s: float | None = None
                    ) -> dict[TopicPartition, int]:
        """Write the state of ``partitions`` to the state topic and wait until it is
        durable (at most ``timeout_s``); returns the offsets to commit next (only after
        this returns)."""
        sink = self._sink
        assert sink is not None
        records = self.engine.checkpoint(partitions)
        for key, value in records.items():
            sink.send(self.config.kafka.topics.state, key, value)
        sink.flush(timeout_s)  # the checkpoints and any DLQ records are durable
        self._last_checkpoint = self._clock()
        self.engine.checkpoint_written(self._last_checkpoint)
        positions = self.engine.positions(partitions)
        self._durable.update(positions)
        self._durable_at = self._last_checkpoint
        return positions

    # ---- who owns a model

    def _look_up_owners(self) -> None:
        """Where each configured model's predictions go (producers key them by model
        name, so Kafka's default partitioner decides), which models this replica owns
        from its assignment alone (before their first record), and who owns each
        model this replica does not.  On the polling thread (the source is not thread-safe), between
        polls (a metadata fetch must not run inside a rebalance callback)."""
        source = self._source
        assert source is not None
        topic = self.config.kafka.topics.predictions
        with self._lock:
            self._partition_of = {model: source.partition_for(topic, model)
                                  for model in self.engine.setups}
            # the metadata may not be there yet: look again after the next poll
            self._owners_stale = None in self._partition_of.values()
            for model, partition in self._partition_of.items():
                if partition is not None and self.engine.adopt(model, (topic, partition)):
                    log.info("model %s: owned here (%s[%d] is assigned here); no window yet",
                             model, topic, partition)
            self._owners = self._owners_now()
            self._publish()

    def _owners_now(self) -> dict[str, str]:
        if not self.engine.ready:
            return {}  # nothing assigned yet: no one to name
        cfg = self.config.kafka
        owners: dict[str, str] = {}
        for model in self.engine.setups:
            partition = self._partition_of.get(model)
            if partition is None:  # not looked up yet, or the topic's metadata is unknown
                continue
            tp = (cfg.topics.predictions, partition)
            if model in self.engine.monitors or tp in self.engine.assigned:
                continue
            owners[model] = (f"partition {partition} of {cfg.topics.predictions} is assigned to "
                             f"another member of group {cfg.group_id}")
        return owners

    def _monitor(self, model: str) -> ModelMonitor | None:
        """The monitor of ``model`` (hold the lock); None when the model is configured
        but has had no record here yet and no other owner is known.  UnknownModel or
        NotOwnedHere otherwise."""
        self.config.model(model)
        monitor = self.engine.monitors.get(model)
        owner = None if monitor is not None else self._owners_now().get(model)
        if owner is not None:
            raise NotOwnedHere(model, owner)
        return monitor

    # ---- ServiceControl

    def status(self) -> ServiceStatus:
        return self._status

    def history(self, model: str) -> list[WindowReport]:
        with self._lock:
            monitor = self._monitor(model)
            return [] if monitor is None else list(monitor.history)

    def submit_labels(self, body: bytes, content_type: str) -> Mapping[str, int]:
        encoding = MSGPACK if "msgpack" in content_type else "application/json"
        batch = decode_labels(body, encoding=encoding,
                              max_bytes=self.config.service.max_message_bytes)
        self.config.model(batch.model)
        sink = self._connected_sink()
        sink.send(self.config.kafka.topics.labels, batch.model, body,
                  [(CONTENT_TYPE_HEADER, encoding.encode())])
        sink.flush()
        return {"accepted": len(batch.labels)}

    def upload_reference(self, model: str, data: bytes) -> Mapping[str, Any]:
        """Store the profile in the state topic, then tell the model's owner (a
        control record on its predictions partition), whichever replica that is."""
        self.config.model(model)
        profile = profile_codec.loads(data)
        probe = self.engine.setups[model]
        missing = [f.name for f in probe.features if f.name not in profile.features]
        if missing:
            raise InputError(f"the profile has no feature {missing[0]!r}, which model {model!r} "
                             "monitors")
        wrong = [f for f in probe.features if profile.features[f.name].type != f.type]
        if wrong:
            raise InputError(f"feature {wrong[0].name!r} is {profile.features[wrong[0].name].type} "
                             f"in the profile but {wrong[0].type} in the config")
        sink = self._connected_sink()
        topics = self.config.kafka.topics
        sink.send(topics.state, f"{self.engine.namespace}{REFERENCE_KEY}{model}", data)
        sink.flush()  # stored before anyone is told to load it
        sink.send(topics.predictions, model, b"", [(CONTROL_HEADER, b"reference")])
        sink.flush()
        log.warning("AUDIT: model %s: new reference uploaded (%d rows, created %s); the replica "
                    "that owns the model uses it from its next window", model, profile.rows,
                    profile.created_at or "undated")
        return {"model": model, "rows": profile.rows, "owned_here": model in self.engine.monitors,
                "applies": "from the next window, on the replica that owns the model"}

    def _connected_sink(self) -> Sink:
        sink = self._sink
        if sink is None:
            raise NotReady("the service is not connected to Kafka yet", delay_s=5.0)
        return sink

    def _stored_reference(self, stored: Mapping[str, bytes], model: str) -> tuple[Profile, str] | None:
        value = stored.get(f"{self.engine.namespace}{REFERENCE_KEY}{model}")
        if value is None:
            return None
        try:
            profile = profile_codec.loads(value)
        except ProfileError as exc:
            log.warning("model %s: the stored reference is unreadable: %s", model, exc)
            return None
        return profile, f"uploaded profile ({profile.created_at or 'undated'}, {profile.rows} rows)"

    def _reference_taken(self, model: str, profile: Profile, source: str) -> None:
        """The engine took an uploaded ``profile`` as the model's reference: keep it
        across config reloads.  A refused one is not kept, so a reload does not retry it."""
        self._uploaded[model] = (profile, source)

    def _load_reference(self, model: str) -> tuple[Profile, str] | None:
        """The model's uploaded reference, read from the state topic (on a control record)."""
        return self._stored_reference(self._connection.read_state(self.config.kafka.topics.state),
                                      model)

    def reload_config(self) -> Mapping[str, Any]:
        path = self.config.source
        if path is None:
            raise InputError("the config was not read from a file: there is nothing to reload")
        config = load_config(path)  # ConfigError: the old config stays
        try:
            setups = self._setups(config)
        except InputError as exc:
            raise InputError(f"config is valid but a reference cannot be read: {exc}") from None
        notes: list[str] = []
        if config.kafka != self.config.kafka:
            notes.append("kafka settings changed: restart the service to apply them")
        with self._lock:
            changes = self.engine.reconfigure(setups, max_bytes=config.service.max_message_bytes)
            self.config = config
            self._owners_stale = True  # looked up on the consumer thread, which owns the source
            self._publish()
        for change in changes + notes:
            log.warning("AUDIT: config reload: %s", change)
        return {"reloaded": True, "changes": changes, "notes": notes}

    def evidently_report(self, model: str) -> str:
        with self._lock:
            monitor = self._monitor(model)
            if monitor is None or monitor.latest_window is None:
                raise InputError(f"model {model!r} has no window evaluated on this replica yet")
            reference, current = monitor.setup.reference, monitor.latest_window
            features = [f for f in monitor.setup.features if f.name in reference.features]
        from monitor.batch.evidently_report import render_html

        return render_html(reference, current, features, title=f"driftline: {model}",
                           dataset_share=monitor.setup.settings.dataset_share)
