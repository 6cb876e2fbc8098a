"""One model's live state: its windows, label join and reports.

A :class:`ModelMonitor` takes decoded prediction and label batches of one
model, cuts the rows into windows, evaluates each closed window against the
reference profile (drift, data quality, and performance on joined labels)
and keeps the latest reports.  It does no I/O and reads time only from the
injected clock (for report stamps); window boundaries use event time or
row counts, so replaying the same records gives the same windows.

Its whole state snapshots to bytes (:meth:`ModelMonitor.snapshot`) and is
put back with :meth:`ModelMonitor.restore`, which is how checkpoints move a
model between replicas.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from monitor.engine import profile_codec
from monitor.engine.analysis import DriftReport, DriftSettings, FeatureDrift, FeatureSpec, analyze
from monitor.engine.performance.check import PerformancePlan, PerformanceResult
from monitor.engine.profiles import Profile, ProfileSettings
from monitor.engine.quality import Finding
from monitor.engine.windows import ClosedWindow, Windower, WindowSpec
from monitor.errors import ProfileError
from monitor.streaming.joiner import JoinResult, LabelJoin, PerformanceWindow, Scalar
from monitor.streaming.status import QUALITY_ISSUES, FeatureResult, ModelStatus, WindowReport
from monitor.wire.decode import LabelBatch, PredictionBatch

Clock = Callable[[], float]
SNAPSHOT_VERSION = 1
#: how outputs that are not the configured prediction appear among a window's unknown fields
OUTPUT_FIELD_PREFIX = "outputs."
#: the latest window's profile goes into the checkpoint up to this size (a window of
#: ``exact_cap`` values per feature); a larger one is left out, and logged
MAX_LATEST_WINDOW_BYTES = 16 * 1024 * 1024
log = logging.getLogger("driftline.engine")


@dataclass(frozen=True)
class ModelSetup:
    """Everything a model's monitor needs, resolved from the config."""

    name: str
    features: tuple[FeatureSpec, ...]  # monitored columns: inputs, plus the prediction
    prediction: str | None  # the output monitored (and joined with labels), if any
    window: WindowSpec
    settings: DriftSettings
    profile: ProfileSettings
    reference: Profile
    reference_source: str
    performance: PerformancePlan | None = None
    max_categories: Mapping[str, int] = field(default_factory=dict)
    history: int = 50  # reports kept
    join_cap: int = 100_000  # predictions held for labels
    join_ttl_s: float = 7 * 86400.0

    def layout(self) -> dict[str, Any]:
        """What a snapshot must match to be restored into this setup."""
        return {"window": self.window.as_dict(),
                "features": [[f.name, f.type] for f in self.features],
                "profile": [self.profile.exact_cap, self.profile.sketch_k,
                            self.profile.max_categories],
                "prediction": self.prediction,
                "performance": None if self.performance is None else [
                    self.performance.target, self.performance.task]}


def _report_to_dict(r: WindowReport) -> dict[str, Any]:
    return {"model": r.model, "window": [r.window_kind, r.window_start, r.window_end, r.rows],
            "evaluated_at": r.evaluated_at, "duration_s": r.duration_s,
            "drift": [r.drift_detected, r.drifted_share],
            "features": [[f.name, f.test, f.statistic, f.p_value, f.drift] for f in r.features],
            # added later, in their own keys so that older readers and checkpoints still fit
            "feature_details": [[f.threshold, f.effect_size, f.materiality, f.missing_share,
                                 f.reference_missing_share, f.new_categories, f.reason_code]
                                for f in r.features],
            "quality": [list(q) for q in r.quality],
            "performance": dict(r.performance), "body": dict(r.body)}


def _report_from_dict(d: Mapping[str, Any]) -> WindowReport:
    kind, start, end, rows = d["window"]
    drift, share = d["drift"]
    features = [FeatureResult(str(n), str(t), s, p, bool(x)) for n, t, s, p, x in d["features"]]
    details = d.get("feature_details")  # absent from checkpoints of older versions
    if details is not None and len(details) == len(features):
        features = [replace(f, threshold=_opt(th), effect_size=_opt(es), materiality=_opt(mt),
                            missing_share=_opt(ms), reference_missing_share=_opt(rm),
                            new_categories=None if nc is None else int(nc), reason_code=str(rc))
                    for f, (th, es, mt, ms, rm, nc, rc) in zip(features, details, strict=True)]
    return WindowReport(
        model=str(d["model"]), window_start=int(start), window_end=int(end),
        window_kind=str(kind), rows=int(rows), evaluated_at=float(d["evaluated_at"]),
        duration_s=float(d["duration_s"]), drift_detected=bool(drift), drifted_share=float(share),
        features=tuple(features),
        performance={str(k): float(v) for k, v in d["performance"].items()}, body=d["body"],
        quality=tuple((str(f), str(i)) for f, i in d.get("quality", ())))


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _feature_result(f: FeatureDrift) -> FeatureResult:
    return FeatureResult(
        f.name, f.test, f.statistic, f.p_value, f.drift, threshold=f.threshold,
        effect_size=f.effect_size, materiality=f.materiality, missing_share=f.missing_share,
        reference_missing_share=f.reference_missing_share,
        new_categories=None if f.type == "numerical" else len(f.new_categories),
        reason_code=f.reason_code)


def _quality(findings: Sequence[Finding], features: Sequence[FeatureSpec]
             ) -> tuple[tuple[str, str], ...]:
    """(feature, issue) of the findings whose feature is configured and whose issue is in
    QUALITY_ISSUES (``extra_column`` names a column of the data: never a label value)."""
    names = {f.name for f in features}
    return tuple(dict.fromkeys((q.feature, q.issue) for q in findings
                               if q.feature in names and q.issue in QUALITY_ISSUES))


class ModelMonitor:
    """Windows, label join and reports of one model (not thread-safe)."""

    def __init__(self, setup: ModelSetup, *, clock: Clock = time.time) -> None:
        self.setup = setup
        self._clock = clock
        types = {f.name: f.type for f in setup.features}
        self.windower = Windower(setup.window, types, settings=setup.profile, clock=clock,
                                 source=f"{setup.name} window")
        self.join = LabelJoin(cap=setup.join_cap, ttl_ms=max(1, round(setup.join_ttl_s * 1000)))
        self.performance: PerformanceWindow | None = None
        if setup.performance is not None:
            if setup.window.size is not None:
                self.performance = PerformanceWindow(setup.performance, size=setup.window.size)
            else:
                assert setup.window.duration_s is not None
                self.performance = PerformanceWindow(
                    setup.performance, duration_ms=round(setup.window.duration_s * 1000))
        self.history: deque[WindowReport] = deque(maxlen=setup.history)
        self.events = 0
        self.latest_window: Profile | None = None  # the last closed window (its report's input)
        self.last_performance: PerformanceResult | None = None
        # drifted windows in a row, up to and including the latest one (0 when it did
        # not drift): what the alert rules read, so that one unlucky window never pages
        self.dataset_streak = 0
        self.feature_streaks: dict[str, int] = {}

    # ---- feeding

    def add(self, batch: PredictionBatch) -> list[WindowReport]:
        """Take a batch of predictions; returns the reports of the windows it closed."""
        self.events += batch.n
        prediction = self.setup.prediction
        rows: Sequence[Mapping[str, object]] = [
            _row(inputs, outputs, prediction) if outputs else inputs
            for inputs, outputs in zip(batch.inputs, batch.outputs, strict=True)]
        if self.performance is not None and prediction is not None:
            numeric = self.performance.plan.prediction_type == "numerical"
            values = [(_number if numeric else _scalar)(o.get(prediction)) for o in batch.outputs]
            self._joined(self.join.add_predictions(batch.request_ids, batch.ts_ms, values))
        return self._evaluate(self.windower.add(rows, batch.ts_ms))

    def add_labels(self, batch: LabelBatch) -> int:
        """Join a batch of labels; returns how many found their prediction (the
        others wait for it)."""
        if self.performance is None:
            self.join.unmatched += len(batch.labels)
            return 0
        numeric = self.performance.plan.task == "regression"
        return self._joined(self.join.add_labels(
            [x.request_id for x in batch.labels], [x.ts_ms for x in batch.labels],
            [(_number if numeric else _scalar)(x.target) for x in batch.labels]))

    def _joined(self, joined: JoinResult) -> int:
        assert self.performance is not None
        for result in self.performance.add(joined):
            self.last_performance = result
        return len(joined.y_true)

    def tick(self, now: float) -> list[WindowReport]:
        """Close time windows that ended before ``now`` (a quiet stream)."""
        return self._evaluate(self.windower.tick(now))

    def set_reference(self, reference: Profile, source: str) -> None:
        """Use another reference profile from the next window on."""
        absent = [f.name for f in self.setup.features if f.name not in reference.features]
        if absent:
            raise ProfileError(f"the new reference has no feature {absent[0]!r}")
        for f in self.setup.features:
            if reference.features[f.name].type != f.type:
                raise ProfileError(f"feature {f.name!r} is {reference.features[f.name].type} in "
                                   f"the new reference but {f.type} in the config")
        self.setup = replace(self.setup, reference=reference, reference_source=source)

    # ---- evaluation

    def _evaluate(self, windows: list[ClosedWindow]) -> list[WindowReport]:
        return [self._report(w) for w in windows]

    def _report(self, window: ClosedWindow) -> WindowReport:
        setup = self.setup
        started = time.perf_counter()
        now = self._clock()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        specs = [f for f in setup.features if f.name in setup.reference.features]
        absent = _prediction_absent(setup.prediction, window)
        if absent is not None:  # a data-quality finding, not a drift verdict
            specs = [f for f in specs if f.name != setup.prediction]
        report: DriftReport = analyze(setup.reference, window.profile, specs, setup.settings,
                                      model=setup.name, evaluated_at=stamp)
        body = report.to_dict()
        if absent is not None:
            body["quality"].append(absent.to_dict())
        body["window"] = {"kind": window.kind, "start": window.start, "end": window.end,
                          "rows": window.rows}
        body["unknown_fields"] = dict(window.unknown_fields)
        performance: dict[str, float] = {}
        if self.last_performance is not None:
            body["performance"] = self.last_performance.to_dict()
            performance = {k: float(v) for k, v in self.last_performance.metrics.items()}
        features = tuple(_feature_result(f) for f in report.features)
        findings = [*report.quality, *([] if absent is None else [absent])]
        body = msgspec.json.decode(msgspec.json.encode(body))  # plain JSON types only
        result = WindowReport(
            model=setup.name, window_start=window.start, window_end=window.end,
            window_kind=window.kind, rows=window.rows, evaluated_at=now,
            duration_s=time.perf_counter() - started, drift_detected=report.drift_detected,
            drifted_share=report.drifted_share, features=features, performance=performance,
            body=body, quality=_quality(findings, setup.features))
        self.history.append(result)
        self.latest_window = window.profile
        self._count_streaks(result)
        return result

    def _count_streaks(self, report: WindowReport) -> None:
        self.dataset_streak = self.dataset_streak + 1 if report.drift_detected else 0
        self.feature_streaks = {f.name: self.feature_streaks.get(f.name, 0) + 1 if f.drift else 0
                                for f in report.features}

    # ---- reading

    def status(self) -> ModelStatus:
        latest = self.history[-1] if self.history else None
        performance = ({k: float(v) for k, v in self.last_performance.metrics.items()}
                       if self.last_performance is not None else {})
        return ModelStatus(
            name=self.setup.name, latest=latest, window_rows=self.windower.open_rows,
            window_fill=self.windower.fill, events_total=self.events,
            unknown_fields=dict(self.windower.unknown_fields), labels_joined=self.join.joined,
            labels_unmatched=self.join.unmatched, join_evictions=self.join.evicted,
            join_buffer_size=len(self.join), performance=performance,
            reference=self.setup.reference_source, dataset_drift_streak=self.dataset_streak,
            feature_drift_streaks=dict(self.feature_streaks),
            performance_bounds=({} if self.setup.performance is None else {
                metric: (bound.min, bound.max)
                for metric, bound in self.setup.performance.bounds.items()}))

    # ---- checkpoints

    def snapshot(self) -> bytes:
        state = {
            "version": SNAPSHOT_VERSION, "model": self.setup.name, "layout": self.setup.layout(),
            "windower": self.windower.snapshot(), "join": self.join.snapshot(),
            "performance": None if self.performance is None else self.performance.snapshot(),
            "last_performance": None if self.last_performance is None
            else self.last_performance.to_dict(),
            "history": [_report_to_dict(r) for r in self.history], "events": self.events,
            "latest_window": self._latest_window_bytes(),
            "streaks": {"dataset": self.dataset_streak, "features": self.feature_streaks},
        }
        return msgspec.msgpack.encode(state)

    def _latest_window_bytes(self) -> bytes | None:
        """The last closed window's profile for the checkpoint (``/report`` after a restart),
        or None when there is none or it is larger than :data:`MAX_LATEST_WINDOW_BYTES`."""
        if self.latest_window is None:
            return None
        data = profile_codec.dumps(self.latest_window)
        if len(data) > MAX_LATEST_WINDOW_BYTES:
            log.warning("model %s: the latest window's profile (%d bytes) is not checkpointed "
                        "(over %d): its report is unavailable after a restart until the next "
                        "window closes", self.setup.name, len(data), MAX_LATEST_WINDOW_BYTES)
            return None
        return data

    def restore(self, data: bytes) -> None:
        """Put a snapshot back.  One taken with another window, features or
        profile settings raises :class:`ProfileError` (the caller starts afresh)."""
        try:
            state = msgspec.msgpack.decode(data)
            if state["version"] != SNAPSHOT_VERSION:
                raise ProfileError(f"model snapshot version {state['version']} is not supported")
            mine = msgspec.msgpack.decode(msgspec.msgpack.encode(self.setup.layout()))
            if state["layout"] != mine:
                raise ProfileError(f"model {self.setup.name!r}: the checkpoint was taken with "
                                   "another window, features or profile settings")
            self.windower.restore(bytes(state["windower"]))
            self.join.restore(state["join"])
            if self.performance is not None and state["performance"] is not None:
                self.performance.restore(state["performance"])
            last = state["last_performance"]
            self.last_performance = None if last is None else PerformanceResult(
                rows=int(last["rows"]), dropped=int(last["dropped"]), metrics=last["metrics"],
                undefined=last["undefined"], violations=tuple(last["violations"]))
            self.history.clear()
            self.history.extend(_report_from_dict(r) for r in state["history"])
            self.events = int(state["events"])
            streaks = state.get("streaks") or {}  # absent from checkpoints of older versions
            self.dataset_streak = int(streaks.get("dataset", 0))
            self.feature_streaks = {str(k): int(v) for k, v in streaks.get("features", {}).items()}
            latest = state.get("latest_window")  # absent from checkpoints of older versions
            self.latest_window = None if latest is None else profile_codec.loads(
                bytes(latest), f"model {self.setup.name!r} latest window")
        except ProfileError:
            raise
        except (KeyError, TypeError, ValueError, msgspec.DecodeError) as exc:
            raise ProfileError(f"model {self.setup.name!r}: checkpoint is malformed "
                               f"({type(exc).__name__}: {exc})") from None


def _number(value: object) -> float | None:
    """A numerical prediction or regression target; anything else is missing
    (and dropped from the metrics, counted in their ``dropped``)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _scalar(value: object) -> Scalar:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _row(inputs: Mapping[str, object], outputs: Mapping[str, object], prediction: str | None
         ) -> Mapping[str, object]:
    """One event's windowed row: its inputs, the configured prediction, and every other
    output as ``outputs.<name>``, which the windower counts as an unknown field."""
    row = dict(inputs)
    for name, value in outputs.items():
        if name == prediction:
            row[name] = value
        else:
            row[OUTPUT_FIELD_PREFIX + name] = None
    return row


def _prediction_absent(prediction: str | None, window: ClosedWindow) -> Finding | None:
    """The finding for a configured prediction that has no value in any event of the
    window (absent, or null everywhere), naming the outputs the events carry instead."""
    if prediction is None:
        return None
    profile = window.profile.features.get(prediction)
    if profile is not None and profile.count > 0:
        return None
    carried = [name[len(OUTPUT_FIELD_PREFIX):] for name in window.unknown_fields
               if name.startswith(OUTPUT_FIELD_PREFIX)]
    if carried:
        detail = f"prediction field {prediction!r} absent; events carry outputs: {', '.join(carried)}"
    else:
        detail = (f"prediction field {prediction!r} has no values in the window's {window.rows} events; "
                  "events carry no outputs")
    return Finding(prediction, "prediction_absent", detail, float(window.rows))
