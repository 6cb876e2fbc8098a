"""What the running service shows: an immutable read model.

The consumer thread builds a new :class:`ServiceStatus` after each change
(a batch, a closed window, a checkpoint) and swaps it in; the API and the
Prometheus collector read whichever one is current, without locks.  Every
label value here comes from the config (model and feature names, test and
metric names) or from a fixed set (invalid reasons, topics), never from
event payloads.

:class:`ServiceControl` is what the HTTP API may ask of the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Why an event or message was rejected (``driftline_events_invalid_total{reason}``).
INVALID_REASONS: tuple[str, ...] = (
    "bad_json",        # not JSON / msgpack, or not an object
    "schema_version",  # "schema" missing or not a supported version
    "unknown_model",   # a model not in the config
    "wrong_types",     # a field of the wrong type, or a required field missing
    "oversize",        # a message larger than the configured limit
)

#: Data-quality issues exported as ``driftline_quality_issue{issue}`` (the vocabulary of
#: :mod:`monitor.engine.quality`).  ``extra_column`` is left out: its feature is a column name
#: taken from the data, not from the config, so it is never a label value.
QUALITY_ISSUES: tuple[str, ...] = (
    "missing_column",       # a monitored feature is absent from the window
    "all_missing",          # a feature has no values in the window
    "missing_share",        # the missing share moved by at least the reporting floor
    "out_of_range",         # at least 1% of values outside the reference [min, max]
    "new_categories",       # categories never seen in the reference
    "vanished_categories",  # reference categories expected at least 5 times, absent
    "type_mismatch",        # values of the wrong kind
    "non_finite",           # +/-inf in a numerical feature
    "prediction_absent",    # no event of the window carries the configured prediction
)

#: Upper bounds (seconds) of the evaluation-duration histogram.
EVALUATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


@dataclass(frozen=True)
class FeatureResult:
    """One feature's result in one evaluated window."""

    name: str
    test: str
    statistic: float | None  # the test statistic, or the distance for distance tests
    p_value: float | None  # None for distance tests
    drift: bool
    # the fields below came later: a report restored from an older checkpoint has the defaults
    threshold: float | None = None  # what the adjusted p-value or the distance is compared to
    effect_size: float | None = None
    materiality: float | None = None  # the effect-size floor (p-value tests only)
    missing_share: float | None = None  # of the window; None when the column is missing
    reference_missing_share: float | None = None
    new_categories: int | None = None  # categories not in the reference; None for numerical
    reason_code: str = ""  # one of monitor.engine.analysis.DRIFT_REASON_CODES; "" when unknown


@dataclass(frozen=True)
class WindowReport:
    """One evaluated window of one model.

    ``body`` is the JSON served by ``GET /models/{m}/drift``: the schema of
    ``driftline check --format json`` plus ``window`` (kind, start, end, rows),
    ``performance`` (when labels were joined) and ``unknown_fields``.
    """

    model: str
    window_start: int  # rows or epoch ms, as ``window_kind`` says
    window_end: int
    window_kind: str  # "count" | "time"
    rows: int
    evaluated_at: float  # epoch seconds
    duration_s: float  # time the evaluation took
    drift_detected: bool
    drifted_share: float
    features: tuple[FeatureResult, ...]
    performance: Mapping[str, float]  # metric -> value, of the latest labelled window
    body: Mapping[str, Any]
    # (feature, issue) of the window's data-quality findings: configured features and
    # QUALITY_ISSUES only; empty for a report restored from an older checkpoint
    quality: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ModelStatus:
    """One model as of now."""

    name: str
    latest: WindowReport | None
    window_rows: int  # rows in the window that closes next
    window_fill: float  # 0..1
    events_total: int  # events taken for this model
    unknown_fields: Mapping[str, int]  # field name (not a feature) -> rows carrying it
    labels_joined: int
    labels_unmatched: int  # labels dropped (TTL or cap) before their prediction came
    join_evictions: int  # predictions evicted from the join buffer (TTL or cap) unlabelled
    join_buffer_size: int
    performance: Mapping[str, float]  # latest performance metrics, metric -> value
    reference: str  # where the reference profile came from
    dataset_drift_streak: int = 0  # drifted windows in a row, up to the latest (0: it did not drift)
    feature_drift_streaks: Mapping[str, int] = field(default_factory=dict)  # the same, per feature
    # configured performance bounds: metric -> (min, max), either may be None
    performance_bounds: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram over :data:`EVALUATION_BUCKETS` (le buckets, then +Inf)."""

    buckets: tuple[float, ...] = EVALUATION_BUCKETS
    counts: tuple[int, ...] = (0,) * (len(EVALUATION_BUCKETS) + 1)  # per bucket, not cumulative
    total: float = 0.0  # sum of observations

    def observe(self, value: float) -> Histogram:
        index = next((i for i, upper in enumerate(self.buckets) if value <= upper),
                     len(self.buckets))
        counts = list(self.counts)
        counts[index] += 1
        return Histogram(self.buckets, tuple(counts), self.total + value)

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class ServiceStatus:
    """Everything the API and /metrics show, as of one moment."""

    models: Mapping[str, ModelStatus] = field(default_factory=dict)  # only models this replica owns
    configured_models: tuple[str, ...] = ()
    events_total: Mapping[str, int] = field(default_factory=dict)  # model -> events consumed
    # (model or "" when unknown/unreadable, reason) -> count
    invalid: Mapping[tuple[str, str], int] = field(default_factory=dict)
    lag: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> msgs
    last_checkpoint: float | None = None  # epoch seconds
    evaluation: Histogram = field(default_factory=Histogram)
    ready: bool = False
    now: float = 0.0  # epoch seconds when this status was built
    # configured models another replica consumes -> who, as precisely as known (e.g.
    # "partition 3 of driftline.predictions is assigned to another member of group driftline")
    owners: Mapping[str, str] = field(default_factory=dict)
    # owned model -> lag of the predictions partition its key hashes to (messages)
    model_lag: Mapping[str, int] = field(default_factory=dict)


class ServiceControl(Protocol):
    """What the HTTP API asks of the service.  Methods raise the typed errors of
    :mod:`monitor.errors`, which the API maps once:
    :class:`~monitor.errors.UnknownModel` (HTTP 404) for a model not in the config,
    :class:`~monitor.errors.NotOwnedHere` (HTTP 404, the owner named) for one
    another replica consumes, :class:`~monitor.errors.NotReady` (HTTP 503 with
    Retry-After) while not connected to Kafka yet,
    :class:`~monitor.errors.InputError` or :class:`~monitor.errors.ProfileError`
    (HTTP 400) for bad input, and :class:`~monitor.config.ConfigError` (HTTP 422)
    for a config that cannot be reloaded.  Any other exception is a bug (HTTP 500)."""

    def status(self) -> ServiceStatus: ...

    def history(self, model: str) -> list[WindowReport]: ...

    def submit_labels(self, body: bytes, content_type: str) -> Mapping[str, int]:
        """Decode and join a label batch; returns counts (accepted, joined, ...)."""
        ...

    def upload_reference(self, model: str, data: bytes) -> Mapping[str, Any]:
        """A new reference profile (profile_io bytes), used from the next window."""
        ...

    def reload_config(self) -> Mapping[str, Any]:
        """Reload the config file; raises ConfigError and keeps the old one if invalid."""
        ...

    def evidently_report(self, model: str) -> str:
        """HTML of an Evidently report of the latest window against the reference."""
        ...
