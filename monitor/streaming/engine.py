"""The stream engine: records in, windows evaluated, checkpoints out.

It routes each Kafka record (already fetched; no client here) to the monitor
of its model, counts and sets aside what is invalid, and turns the state of
the models on a set of partitions into checkpoint records and back.

Checkpoints, and why nothing is lost or counted twice
    A checkpoint holds, per model, the model's whole state and, for every
    partition the model's records came from, the offset of the next record
    that state has not seen.  Every model of a partition is checkpointed at
    once with the same offsets.  On assignment the consumer seeks each
    partition to the smallest offset its models' checkpoints name, and a
    model ignores records below its own offset; so a checkpoint whose write
    was cut short by a crash (some models new, some old) still replays each
    record into each model exactly once.  Consumer offsets are committed
    after the checkpoint is written, for lag and as the fallback of a
    partition no checkpoint names.

Not thread-safe: the service calls it from its consumer thread, or holds its
lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from monitor.engine.profiles import Profile
from monitor.errors import ProfileError
from monitor.streaming.model_state import ModelMonitor, ModelSetup
from monitor.streaming.status import Histogram, ServiceStatus, WindowReport
from monitor.wire.decode import DecodeError, decode_labels, decode_predictions, encoding
from monitor.wire.records import Record

log = logging.getLogger("driftline.engine")

TopicPartition = tuple[str, int]
Clock = Callable[[], float]
CHECKPOINT_VERSION = 1
MODEL_KEY = "model/"
REFERENCE_KEY = "reference/"
#: header of a control record on the predictions topic (not an event):
#: ``reference`` means "the model's reference in the state topic changed"
CONTROL_HEADER = "driftline-control"


@dataclass(frozen=True)
class DeadLetter:
    """A rejected record, to forward to the DLQ topic with its reason."""

    record: Record
    reason: str
    detail: str


@dataclass(frozen=True)
class Topics:
    predictions: str
    labels: str


@dataclass
class _Counters:
    invalid: dict[tuple[str, str], int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    evaluation: Histogram = field(default_factory=Histogram)


class StreamEngine:
    """Routes records to model monitors and checkpoints them by partition."""

    def __init__(self, setups: Mapping[str, ModelSetup], topics: Topics, *, max_bytes: int,
                 clock: Clock = time.time, namespace: str = "",
                 on_report: Callable[[WindowReport], None] | None = None,
                 load_reference: Callable[[str], tuple[Profile, str] | None] | None = None,
                 on_reference: Callable[[str, Profile, str], None] | None = None) -> None:
        self.namespace = namespace  # prefix of state keys: several groups may share a topic
        self._load_reference = load_reference  # model -> its uploaded reference (state topic)
        self._on_reference = on_reference  # told of each reference taken (not of one refused)
        self.setups: dict[str, ModelSetup] = dict(setups)
        self.topics = topics
        self._max_bytes = max_bytes  # larger messages are rejected as "oversize"
        self._clock = clock
        self._on_report = on_report
        self.monitors: dict[str, ModelMonitor] = {}
        self._partitions: dict[str, set[TopicPartition]] = {}  # model -> partitions seen
        self._floor: dict[tuple[str, TopicPartition], int] = {}  # (model, tp) -> first new offset
        self._position: dict[TopicPartition, int] = {}  # next offset to process
        self.assigned: set[TopicPartition] = set()
        self._counters = _Counters()
        self._lag: dict[TopicPartition, int] = {}
        self._last_checkpoint: float | None = None  # epoch seconds the last one was durable
        self._ready = False

    # ---- what the service tells the engine

    @property
    def ready(self) -> bool:
        """Whether the assigned partitions are restored and sought (``/readyz``)."""
        return self._ready

    def set_ready(self, ready: bool) -> None:
        """Ready once the service has sought the partitions :meth:`assign` named;
        not ready when the consumer stops."""
        self._ready = ready

    @property
    def lag(self) -> Mapping[TopicPartition, int]:
        return self._lag

    def set_lag(self, lag: Mapping[TopicPartition, int]) -> None:
        """The consumer's lag; kept only for the partitions assigned here."""
        self._lag = {tp: n for tp, n in lag.items() if tp in self.assigned}

    @property
    def last_checkpoint(self) -> float | None:
        return self._last_checkpoint

    def checkpoint_written(self, at: float) -> None:
        """The records of :meth:`checkpoint` are durable as of ``at`` (epoch seconds)."""
        self._last_checkpoint = at

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    # ---- records

    def process(self, records: Iterable[Record]) -> list[DeadLetter]:
        """Feed fetched records (any order across partitions, in order within one)."""
        dead: list[DeadLetter] = []
        for record in records:
            tp = (record.topic, record.partition)
            if tp not in self.assigned:
                continue  # fetched before a revocation; the new owner reads it
            letter = self._one(record, tp)
            if letter is not None:
                dead.append(letter)
            self._position[tp] = record.offset + 1
        return dead

    def _one(self, record: Record, tp: TopicPartition) -> DeadLetter | None:
        is_labels = record.topic == self.topics.labels
        control = next((v for k, v in record.headers if k == CONTROL_HEADER), None)
        if control is not None:
            return self._control(record, control)
        try:
            if record.value is None:
                raise DecodeError("bad_json", "empty record (a tombstone)")
            kind = encoding(record.headers)
            if is_labels:
                labels = decode_labels(record.value, encoding=kind, max_bytes=self._max_bytes)
                model, count = labels.model, len(labels.labels)
            else:
                predictions = decode_predictions(record.value, encoding=kind,
                                                 max_bytes=self._max_bytes)
                model, count = predictions.model, predictions.n
            if model not in self.setups:
                raise DecodeError("unknown_model", f"model {model!r} is not in the config "
                                  f"(models: {', '.join(sorted(self.setups))})", model=None,
                                  events=max(count, 1))
        except DecodeError as exc:
            counted = exc.model if exc.model in self.setups else ""
            key = (counted, exc.reason)
            # a rejected message counts at least once, even when it held no events
            self._counters.invalid[key] = self._counters.invalid.get(key, 0) + max(exc.events, 1)
            return DeadLetter(record, exc.reason, str(exc))
        if record.offset < self._floor.get((model, tp), -1):
            return None  # already in the model's checkpointed state
        monitor = self._monitor(model)
        self._partitions.setdefault(model, set()).add(tp)
        try:
            if is_labels:
                monitor.add_labels(labels)
            else:
                reports = monitor.add(predictions)
                self._counters.events[model] = self._counters.events.get(model, 0) + predictions.n
                self._reported(reports)
        except Exception as exc:  # a bug, not bad input: never let one record stop the stream
            log.exception("model %s: record %s[%d]@%d could not be processed", model,
                          record.topic, record.partition, record.offset)
            key = (model, "wrong_types")
            self._counters.invalid[key] = self._counters.invalid.get(key, 0) + max(count, 1)
            return DeadLetter(record, "wrong_types",
                              f"wrong_types: could not be processed: {type(exc).__name__}: {exc}")
        return None

    def _control(self, record: Record, kind: bytes) -> DeadLetter | None:
        model = (record.key or b"").decode("utf-8", "replace")
        if kind != b"reference" or model not in self.setups:
            return DeadLetter(record, "wrong_types",
                              f"wrong_types: control record {kind!r} for model {model!r} not understood")
        # applied here, in stream order: the records after it see the new reference
        loaded = self._load_reference(model) if self._load_reference is not None else None
        if loaded is None:
            log.warning("model %s: a reference change was announced but none is stored", model)
            return None
        try:
            self.set_reference(model, *loaded)
        except ProfileError as exc:
            log.warning("AUDIT: model %s: the uploaded reference is not used: %s", model, exc)
            return None
        log.warning("AUDIT: model %s: reference is now the %s", model, loaded[1])
        return None

    def _monitor(self, model: str) -> ModelMonitor:
        monitor = self.monitors.get(model)
        if monitor is None:
            monitor = self.monitors[model] = ModelMonitor(self.setups[model], clock=self._clock)
        return monitor

    def _reported(self, reports: list[WindowReport]) -> None:
        for report in reports:
            self._counters.evaluation = self._counters.evaluation.observe(report.duration_s)
            log.info("model %s: window [%d, %d) of %d rows: %s (%d of %d features drifted) in %.0f ms",
                     report.model, report.window_start, report.window_end, report.rows,
                     "DRIFT" if report.drift_detected else "no drift",
                     sum(f.drift for f in report.features), len(report.features),
                     report.duration_s * 1000)
            if self._on_report is not None:
                self._on_report(report)

    def tick(self, now: float) -> None:
        """Close time windows that ended before ``now`` (call when the stream is quiet)."""
        for monitor in list(self.monitors.values()):
            self._reported(monitor.tick(now))

    # ---- partitions and checkpoints

    def adopt(self, model: str, tp: TopicPartition) -> bool:
        """Own ``model`` before its first record: its predictions go to ``tp`` (as the
        producers' partitioner puts them), which is assigned here.  It gets an empty
        monitor (shown as owned, with no window yet) and is checkpointed with ``tp``.
        False when there is nothing to do."""
        if model not in self.setups or model in self.monitors or tp not in self.assigned:
            return False
        self._monitor(model)
        self._partitions.setdefault(model, set()).add(tp)
        return True

    def models_on(self, partitions: Iterable[TopicPartition]) -> list[str]:
        wanted = set(partitions)
        return sorted(m for m, tps in self._partitions.items() if tps & wanted)

    def checkpoint(self, partitions: Iterable[TopicPartition]) -> dict[str, bytes]:
        """Checkpoint records (key -> value) of every model on ``partitions``."""
        wanted = set(partitions)
        now = self._clock()
        out: dict[str, bytes] = {}
        for model in self.models_on(wanted):
            offsets = [[t, p, self._position[(t, p)]]
                       for t, p in sorted(self._partitions[model] & wanted)
                       if (t, p) in self._position]
            out[self.namespace + MODEL_KEY + model] = msgspec.msgpack.encode({
                "version": CHECKPOINT_VERSION, "model": model, "offsets": offsets,
                "state": self.monitors[model].snapshot(), "at": now,
            })
        return out

    def positions(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._position[tp] for tp in partitions if tp in self._position}

    def assign(self, partitions: Iterable[TopicPartition], stored: Mapping[str, bytes]
               ) -> dict[TopicPartition, int]:
        """Take ``partitions`` with the state records read from the state topic;
        returns where to seek each partition a checkpoint names (the others
        start at the group's committed offset)."""
        new = set(partitions) - self.assigned
        self.assigned |= new
        ns = self.namespace
        stored = {k[len(ns):]: v for k, v in stored.items() if k.startswith(ns)}
        seeks: dict[TopicPartition, int] = {}
        for key, value in sorted(stored.items()):
            if not key.startswith(MODEL_KEY):
                continue
            model = key[len(MODEL_KEY):]
            try:
                entry = msgspec.msgpack.decode(value)
                offsets = {(str(t), int(p)): int(o) for t, p, o in entry["offsets"]}
            except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a malformed checkpoint of %r: %s", model, exc)
                continue
            mine = {tp: o for tp, o in offsets.items() if tp in new}
            if not mine or model not in self.setups:
                continue
            monitor = ModelMonitor(self.setups[model], clock=self._clock)
            try:
                monitor.restore(bytes(entry["state"]))
            except (ProfileError, KeyError, TypeError) as exc:
                log.warning("model %s starts afresh: %s", model, exc)
                continue
            self.monitors[model] = monitor
            self._partitions[model] = set(mine)
            for tp, offset in mine.items():
                self._floor[(model, tp)] = offset
                seeks[tp] = min(offset, seeks.get(tp, offset))
            log.info("model %s restored from its checkpoint at %s", model,
                     ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(mine.items())))
        for tp, offset in seeks.items():
            self._position[tp] = offset
        return seeks

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the models of ``partitions`` (checkpoint them first)."""
        gone = set(partitions)
        for model in self.models_on(gone):
            left = self._partitions[model] - gone
            if left:
                self._partitions[model] = left
                continue
            del self._partitions[model]
            self.monitors.pop(model, None)
        self.assigned -= gone
        for tp in gone:
            self._position.pop(tp, None)
            self._lag.pop(tp, None)
        self._floor = {k: v for k, v in self._floor.items() if k[1] not in gone}

    # ---- references and config

    def set_reference(self, model: str, profile: Profile, source: str) -> None:
        """Use ``profile`` as the model's reference from its next window on;
        :class:`ProfileError` when it lacks a feature or types differ (and then
        ``on_reference`` is not told)."""
        setup = self.setups[model]
        probe = ModelMonitor(setup, clock=self._clock)
        probe.set_reference(profile, source)  # raises ProfileError when it does not fit
        self.setups[model] = probe.setup
        if model in self.monitors:
            self.monitors[model].set_reference(profile, source)
        if self._on_reference is not None:
            self._on_reference(model, profile, source)

    def reconfigure(self, setups: Mapping[str, ModelSetup], *, max_bytes: int | None = None
                    ) -> list[str]:
        """Apply a reloaded config (and its message size limit); returns what
        changed, for the audit log."""
        if max_bytes is not None:
            self._max_bytes = max_bytes
        changes: list[str] = []
        for model in sorted(set(self.setups) - set(setups)):
            changes.append(f"model {model} removed")
            self.monitors.pop(model, None)
            self._partitions.pop(model, None)
        for model, setup in setups.items():
            old = self.setups.get(model)
            if old is None:
                changes.append(f"model {model} added")
            elif model in self.monitors:
                monitor = self.monitors[model]
                if old.layout() == setup.layout():
                    monitor.setup = setup
                    changes.append(f"model {model} settings updated, window kept")
                else:
                    fresh = ModelMonitor(setup, clock=self._clock)
                    fresh.history.extend(monitor.history)
                    fresh.events = monitor.events  # the exact count goes on
                    self.monitors[model] = fresh
                    changes.append(f"model {model}: window, features or profile settings "
                                   "changed; its open window restarts")
        self.setups = dict(setups)
        return changes

    # ---- reading

    def status(self) -> ServiceStatus:
        return ServiceStatus(
            models={name: m.status() for name, m in self.monitors.items()},
            configured_models=tuple(self.setups),
            events_total={m: self._counters.events.get(m, 0) for m in self.setups},
            invalid=dict(self._counters.invalid), lag=dict(self._lag),
            last_checkpoint=self._last_checkpoint, evaluation=self._counters.evaluation,
            ready=self._ready, now=self._clock())
