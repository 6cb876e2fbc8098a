"""What driftline does about drift, and where it reads from.

Prometheus alerting (:class:`AlertsConfig`), automated remediation
(:class:`ActionsConfig`: a retrain Job, a rollback; :class:`RemediateConfig`:
the receiver), the links put into alerts (:class:`LinksConfig`) and the Kafka
connection (:class:`KafkaConfig`) that brings predictions and labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, Strict

from monitor.config.fields import (
    DeploymentName,
    Duration,
    Namespace,
    NonEmptyStr,
    PositiveDuration,
    PositiveInt,
    ResolvedPath,
    SeverityField,
    StrictBool,
    Topic,
    _check_bootstrap,
)
from monitor.config.strict import Loc, _Strict

#: The alerts ``driftline rules`` generates (``alertname``), in the order it writes them.
ALERT_NAMES: tuple[str, ...] = (
    "DriftlineDatasetDrift",
    "DriftlineFeatureDrift",
    "DriftlinePerformanceBelowMin",
    "DriftlineEvaluationStale",
    "DriftlineCollectorDropping",
    "DriftlineConsumerLagHigh",
)


def _check_alert_names(overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(ALERT_NAMES))
    if unknown:
        raise ValueError(f"unknown alert {unknown[0]!r}; the alerts are: {', '.join(ALERT_NAMES)}")
    return overrides


class AlertOverride(_Strict):
    """One alert's own ``for``, ``severity``, or ``enabled: false`` to leave it out."""

    for_: Duration | None = Field(default=None, alias="for")
    severity: SeverityField | None = None
    enabled: StrictBool = True


class AlertsConfig(_Strict):
    """Prometheus alerting.  ``for``: how long a condition must hold before firing;
    ``consecutive_windows``: drifted windows in a row before a drift alert may fire
    (each window is a fresh test at ``alpha``, so one drifted window alone is often
    chance); ``stale_after``: how long without an evaluated window before
    ``DriftlineEvaluationStale`` fires (default: ``stale_windows`` window durations for
    a time window, one hour for a count window); ``max_consumer_lag``: messages behind
    before ``DriftlineConsumerLagHigh``; ``overrides``: per-alert ``for``/``severity``."""

    for_: Duration = Field(default=0.0, alias="for")
    severity: SeverityField = "warning"
    consecutive_windows: Annotated[int, Field(ge=1, le=1000), Strict()] = 3
    stale_after: PositiveDuration | None = None
    stale_windows: Annotated[int, Field(ge=1, le=1000), Strict()] = 3
    max_consumer_lag: PositiveInt = 10_000
    overrides: Annotated[dict[str, AlertOverride], AfterValidator(_check_alert_names)] = Field(
        default_factory=dict)

    def for_of(self, alert: str) -> float:
        override = self.overrides.get(alert)
        return self.for_ if override is None or override.for_ is None else override.for_

    def severity_of(self, alert: str) -> str:
        override = self.overrides.get(alert)
        return self.severity if override is None or override.severity is None else override.severity

    def enabled(self, alert: str) -> bool:
        override = self.overrides.get(alert)
        return override is None or override.enabled


class RetrainAction(_Strict):
    """Create the object in ``job_template`` (a ``batch/v1`` Job, an Argo Workflow, a
    Kubeflow PipelineRun, a PyTorchJob, ...: any kind, through the dynamic client)."""

    job_template: ResolvedPath
    namespace: Namespace | None = None


#: Which objects a rollback (or the action lock) can name: config key -> Kubernetes kind.
TARGET_KINDS: dict[str, str] = {
    "deployment": "Deployment",            # apps/v1: what `kubectl rollout undo` does
    "inference_service": "InferenceService",  # serving.kserve.io/v1beta1: canary to 0 %
    "rollout": "Rollout",                  # argoproj.io/v1alpha1: abort
}


class ObjectRef(_Strict):
    """A model's serving object: exactly one of ``deployment``, ``inference_service``
    or ``rollout`` (its name), and its ``namespace``."""

    deployment: DeploymentName | None = None
    inference_service: DeploymentName | None = None
    rollout: DeploymentName | None = None
    namespace: Namespace | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        given = [key for key in TARGET_KINDS if raw.get(key) is not None]
        if len(given) != 1:
            yield (), f"give exactly one of {', '.join(TARGET_KINDS)} (the object's name)"

    @property
    def kind(self) -> str:
        return next(TARGET_KINDS[key] for key in TARGET_KINDS if getattr(self, key) is not None)

    @property
    def name(self) -> str:
        return next(str(getattr(self, key)) for key in TARGET_KINDS if getattr(self, key) is not None)


class RollbackAction(ObjectRef):
    """Roll the serving object back: a Deployment to its previous revision (what
    ``kubectl rollout undo`` does), an InferenceService's canary to 0 % traffic, or an
    Argo Rollout aborted."""


class ActionSet(_Strict):
    retrain: RetrainAction | None = None
    rollback: RollbackAction | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        if all(raw.get(key) is None for key in cls.allowed_keys()):
            yield (), f"give at least one action: {', '.join(cls.allowed_keys())}"


class ActionsConfig(_Strict):
    """Automated remediation.  ``dry_run`` (the default) only records what would be
    done; ``approval: manual`` holds each decision as pending until approved;
    ``cooldown`` is the least time between two actions of one kind for one model.
    ``target`` is the model's serving object, where the receiver records its last
    action (annotation ``driftline.io/last-action``, written with a resourceVersion
    precondition so two receivers never both act); by default the rollback's object."""

    on_drift: ActionSet | None = None
    on_performance_drop: ActionSet | None = None
    cooldown: Duration = 3600.0
    dry_run: StrictBool = True
    approval: Literal["auto", "manual"] = "auto"
    target: ObjectRef | None = None

    def lock_target(self) -> ObjectRef | None:
        """Where the last action is recorded: ``target``, else a configured rollback's object."""
        if self.target is not None:
            return self.target
        for action_set in (self.on_performance_drop, self.on_drift):
            if action_set is not None and action_set.rollback is not None:
                return action_set.rollback
        return None


class LinksConfig(_Strict):
    """Base URLs put into alert annotations (and dashboards): Grafana, the monitor's
    API (``/models/{m}/report``) and the runbook."""

    grafana_url: Annotated[str, Field(min_length=1)] = "http://localhost:3000"
    monitor_url: Annotated[str, Field(min_length=1)] = "http://localhost:8000"
    runbook_url: Annotated[str, Field(min_length=1)] = (
        "https://github.com/driftline/driftline/blob/main/README.md#runbook")


class RemediateConfig(_Strict):
    """The Alertmanager receiver (``driftline remediate``).  ``token_file`` holds the
    bearer token Alertmanager sends (or set ``DRIFTLINE_REMEDIATE_TOKEN_FILE``);
    ``max_actions_per_hour`` bounds actions across every model; ``namespace`` is used
    by actions that name none; ``max_body_bytes`` bounds a webhook body; ``audit_size``
    is how many decisions ``GET /actions`` keeps."""

    token_file: ResolvedPath | None = None
    namespace: Namespace = "default"
    max_actions_per_hour: PositiveInt = 20
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024), Strict()] = 1_048_576
    audit_size: Annotated[int, Field(ge=1, le=1_000_000), Strict()] = 10_000


class KafkaTopics(_Strict):
    predictions: Topic = "driftline.predictions"
    labels: Topic = "driftline.labels"
    dlq: Topic = "driftline.dlq"
    state: Topic = "driftline.state"


class KafkaConfig(_Strict):
    bootstrap_servers: Annotated[str, AfterValidator(_check_bootstrap)] = "localhost:9092"
    topics: KafkaTopics = KafkaTopics()
    group_id: NonEmptyStr = "driftline"
    #: partitions of the topics driftline creates when they do not exist yet;
    #: predictions and labels need the same count (a model's two streams meet
    #: on one replica by partition number)
    partitions: Annotated[int, Field(ge=1, le=10_000)] = 4


class LabelJoinConfig(_Strict):
    """How long predictions wait for their label, and how many wait at most
    per model; older or surplus predictions are evicted and counted."""

    ttl: PositiveDuration = 7 * 86400.0
    max_pending: PositiveInt = 100_000


class ServiceConfig(_Strict):
    """The streaming service (``driftline serve``): reports kept per model,
    how often state is checkpointed, the largest message accepted and the
    label join."""

    history: Annotated[int, Field(ge=1, le=10_000)] = 50
    checkpoint_interval: PositiveDuration = 10.0
    #: how long a stop (SIGTERM) may take to write the last checkpoint and leave the
    #: group; past it the process exits non-zero and a restart replays from the last
    #: checkpoint.  Below Kubernetes' default terminationGracePeriodSeconds (30 s).
    shutdown_grace: PositiveDuration = 20.0
    max_message_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1_048_576
    label_join: LabelJoinConfig = LabelJoinConfig()
