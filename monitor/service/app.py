"""``driftline serve``: the composition root of the streaming service.

It wires Kafka (:mod:`monitor.service.kafka`) to the stream engine
(:mod:`monitor.streaming.engine`), the engine to the read model the API and
``/metrics`` show (:mod:`monitor.service.api`, :mod:`monitor.service.export`), and runs the
API with uvicorn.

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
checkpoint, which is replayed from Kafka.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from monitor.config import Config, load_config
from monitor.engine import profile_codec
from monitor.engine.profiles import Profile
from monitor.errors import InputError, ProfileError
from monitor.service import kafka
from monitor.streaming.engine import CONTROL_HEADER, REFERENCE_KEY, StreamEngine, TopicPartition, Topics
from monitor.streaming.model_state import ModelSetup
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
    """The monitor service: Kafka in, windows evaluated, state checkpointed."""

    def __init__(self, config_path: str, *, clock: Clock = time.time,
                 client_id: str | None = None) -> None:
        self.config_path = config_path
        self._clock = clock
        self.config: Config = load_config(config_path)
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
                                   load_reference=self._load_reference)
        self._status = self.engine.status()
        self._consumer: kafka.GroupConsumer | None = None
        self._producer: kafka.Producer | None = None
        self._last_checkpoint = clock()
        self._last_lag = 0.0
        self._closing = False

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
        cfg = self.config.kafka
        kafka.ensure_topics(cfg.bootstrap_servers,
                            {t: cfg.partitions for t in (cfg.topics.predictions, cfg.topics.labels,
                                                         cfg.topics.dlq, cfg.topics.state)},
                            compacted=[cfg.topics.state])
        self._producer = kafka.Producer(cfg.bootstrap_servers, client_id=self.client_id)
        self._consumer = kafka.GroupConsumer(
            cfg.bootstrap_servers, cfg.group_id, [cfg.topics.predictions, cfg.topics.labels],
            on_assigned=self._assigned, on_revoked=self._revoked, client_id=self.client_id)
        self._thread = threading.Thread(target=self._run, name="driftline-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Checkpoint everything owned, leave the group and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        interval = self.config.service.checkpoint_interval
        try:
            while not self._stop.is_set():
                records = consumer.poll(0.2)
                offsets: dict[TopicPartition, int] | None = None
                with self._lock:
                    for letter in self.engine.process(records):
                        record = letter.record
                        producer.send(
                            self.config.kafka.topics.dlq, record.key, record.value,
                            [*record.headers, (REASON_HEADER, letter.reason.encode()),
                             (ERROR_HEADER, letter.detail.encode()[:1000]),
                             (ORIGIN_HEADER,
                              f"{record.topic}/{record.partition}/{record.offset}".encode())])
                    now = self._clock()
                    if not records:
                        self.engine.tick(now)
                    if now - self._last_checkpoint >= interval:
                        offsets = self._checkpoint(self.engine.assigned)
                    self._publish()
                # calls that wait on the consumer's network loop run outside the lock
                if offsets is not None:
                    consumer.commit(offsets)
                if now - self._last_lag >= 1.0 or not records:
                    lag = consumer.lag()
                    with self._lock:
                        self.engine.lag = {tp: n for tp, n in lag.items() if tp in self.engine.assigned}
                    self._last_lag = now
            with self._lock:
                offsets = self._checkpoint(self.engine.assigned)
            consumer.commit(offsets)
            log.info("stopped cleanly: state checkpointed, offsets committed")
        except Exception as exc:  # the consumer cannot go on: say why, let k8s restart us
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("the consumer stopped: %s", self.failure)
            self.engine.ready = False
            self._publish()
        finally:
            self._closing = True  # leaving the group revokes everything: already checkpointed
            consumer.close()
            producer.close()

    def _publish(self) -> None:
        self._status = self.engine.status()

    # ---- partitions

    def _assigned(self, partitions: list[TopicPartition]) -> None:
        assert self._consumer is not None
        with self._lock:
            cfg = self.config.kafka
            stored = kafka.read_state(cfg.bootstrap_servers, cfg.topics.state) if partitions else {}
            for model in list(self.engine.setups):
                loaded = self._stored_reference(stored, model)
                if loaded is not None:
                    try:
                        self.engine.set_reference(model, *loaded)
                    except ProfileError as exc:
                        log.warning("model %s: the uploaded reference is not used: %s", model, exc)
            seeks = self.engine.assign(partitions, stored)
            for (topic, partition), offset in seeks.items():
                self._consumer.seek(topic, partition, offset)
            self.engine.ready = True
            log.info("assigned %s; %d model(s) restored",
                     ", ".join(f"{t}[{p}]" for t, p in partitions) or "no partitions",
                     len(self.engine.models_on(partitions)))
            self._publish()

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        # runs on the client's network thread: no blocking consumer calls here,
        # so the commit is asynchronous; the checkpoint's own offsets are what
        # the next owner seeks to in any case
        if self._closing:
            return
        assert self._consumer is not None
        with self._lock:
            self._consumer.commit_async(self._checkpoint(set(partitions) & self.engine.assigned))
            self.engine.revoke(partitions)
            log.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in partitions) or "nothing")
            self._publish()

    def _checkpoint(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Write the state of ``partitions`` to the state topic and wait until it is
        durable; returns the offsets to commit next (only after this returns)."""
        producer = self._producer
        assert producer is not None
        records = self.engine.checkpoint(partitions)
        for key, value in records.items():
            producer.send(self.config.kafka.topics.state, key, value)
        producer.flush()  # the checkpoints and any DLQ records are durable
        self._last_checkpoint = self._clock()
        self.engine.last_checkpoint = self._last_checkpoint
        return self.engine.positions(partitions)

    # ---- ServiceControl

    def status(self) -> ServiceStatus:
        return self._status

    def history(self, model: str) -> list[WindowReport]:
        self.config.model(model)  # KeyError for an unknown model
        with self._lock:
            monitor = self.engine.monitors.get(model)
            return [] if monitor is None else list(monitor.history)

    def submit_labels(self, body: bytes, content_type: str) -> Mapping[str, int]:
        encoding = MSGPACK if "msgpack" in content_type else "application/json"
        batch = decode_labels(body, encoding=encoding,
                              max_bytes=self.config.service.max_message_bytes)
        self.config.model(batch.model)
        producer = self._producer
        if producer is None:
            raise InputError("the service is not connected to Kafka yet")
        producer.send(self.config.kafka.topics.labels, batch.model, body,
                      [(CONTENT_TYPE_HEADER, encoding.encode())])
        producer.flush()
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
        producer = self._producer
        if producer is None:
            raise InputError("the service is not connected to Kafka yet")
        topics = self.config.kafka.topics
        producer.send(topics.state, f"{self.engine.namespace}{REFERENCE_KEY}{model}", data)
        producer.flush()  # stored before anyone is told to load it
        producer.send(topics.predictions, model, b"", [(CONTROL_HEADER, b"reference")])
        producer.flush()
        log.warning("AUDIT: model %s: new reference uploaded (%d rows, created %s); the replica "
                    "that owns the model uses it from its next window", model, profile.rows,
                    profile.created_at or "undated")
        return {"model": model, "rows": profile.rows, "owned_here": model in self.engine.monitors,
                "applies": "from the next window, on the replica that owns the model"}

    def _stored_reference(self, stored: Mapping[str, bytes], model: str) -> tuple[Profile, str] | None:
        value = stored.get(f"{self.engine.namespace}{REFERENCE_KEY}{model}")
        if value is None:
            return None
        try:
            profile = profile_codec.loads(value)
        except ProfileError as exc:
            log.warning("model %s: the stored reference is unreadable: %s", model, exc)
            return None
        source = f"uploaded profile ({profile.created_at or 'undated'}, {profile.rows} rows)"
        self._uploaded[model] = (profile, source)  # kept across config reloads
        return profile, source

    def _load_reference(self, model: str) -> tuple[Profile, str] | None:
        """The model's uploaded reference, read from the state topic (on a control record)."""
        cfg = self.config.kafka
        return self._stored_reference(kafka.read_state(cfg.bootstrap_servers, cfg.topics.state), model)

    def reload_config(self) -> Mapping[str, Any]:
        config = load_config(self.config_path)  # ConfigError: the old config stays
        try:
            setups = self._setups(config)
        except InputError as exc:
            raise InputError(f"config is valid but a reference cannot be read: {exc}") from None
        notes: list[str] = []
        if config.kafka != self.config.kafka:
            notes.append("kafka settings changed: restart the service to apply them")
        with self._lock:
            changes = self.engine.reconfigure(setups)
            self.engine.max_bytes = config.service.max_message_bytes
            self.config = config
            self._publish()
        for change in changes + notes:
            log.warning("AUDIT: config reload: %s", change)
        return {"reloaded": True, "changes": changes, "notes": notes}

    def evidently_report(self, model: str) -> str:
        self.config.model(model)
        with self._lock:
            monitor = self.engine.monitors.get(model)
            if monitor is None or monitor.latest_window is None:
                raise KeyError(f"model {model!r} has no window evaluated on this replica yet")
            reference, current = monitor.setup.reference, monitor.latest_window
            features = [f for f in monitor.setup.features if f.name in reference.features]
        from monitor.batch.evidently_report import render_html

        return render_html(reference, current, features, title=f"driftline: {model}")
