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

    for_: Duration | None = Field(
        default=None, alias="for", description="This alert's own for; unset: the model's alerts.for.")
    severity: SeverityField | None = Field(
        default=None, description="This alert's own severity; unset: the model's alerts.severity.")
    enabled: StrictBool = Field(
        default=True, description="false leaves the alert out of the rules `driftline rules` writes.")


class AlertsConfig(_Strict):
    """Prometheus alerting.  ``for``: how long a condition must hold before firing;
    ``consecutive_windows``: drifted windows in a row before a drift alert may fire
    (each window is a fresh test at ``alpha``, so one drifted window alone is often
    chance); ``stale_after``: how long without an evaluated window before
    ``DriftlineEvaluationStale`` fires (default: ``stale_windows`` window durations for
    a time window, one hour for a count window); ``max_consumer_lag``: messages behind
    before ``DriftlineConsumerLagHigh``; ``overrides``: per-alert ``for``/``severity``."""

    for_: Duration = Field(
        default=0.0, alias="for",
        description="How long a condition must hold before its alert fires (the rules' for).")
    severity: SeverityField = Field(default="warning", description="The alerts' severity label.")
    consecutive_windows: Annotated[int, Field(ge=1, le=1000), Strict()] = Field(
        default=3, description="Drifted windows in a row before a drift alert may fire (each window is a "
        "fresh test at alpha, so one drifted window alone is often chance).")
    stale_after: PositiveDuration | None = Field(
        default=None, description="How long without an evaluated window before DriftlineEvaluationStale "
        "fires; unset: stale_windows window durations for a time window, 1h for a count window.")
    stale_windows: Annotated[int, Field(ge=1, le=1000), Strict()] = Field(
        default=3, description="Windows without an evaluation before DriftlineEvaluationStale fires, when "
        "stale_after is unset and the window is a time window.")
    max_consumer_lag: PositiveInt = Field(
        default=10_000, description="Messages behind before DriftlineConsumerLagHigh fires.")
    overrides: Annotated[dict[str, AlertOverride], AfterValidator(_check_alert_names)] = Field(
        default_factory=dict,
        description="Per alert, by its name (e.g. DriftlineConsumerLagHigh): its own for, "
        "severity, or enabled: false.")

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

    job_template: ResolvedPath = Field(
        description="YAML of the object to create (a Job, an Argo Workflow, a PipelineRun, ...: "
        "any kind); relative to the config file.")
    namespace: Namespace | None = Field(
        default=None, description="Namespace to create it in; unset: remediate.namespace.")


#: Which objects a rollback (or the action lock) can name: config key -> Kubernetes kind.
TARGET_KINDS: dict[str, str] = {
    "deployment": "Deployment",            # apps/v1: what `kubectl rollout undo` does
    "inference_service": "InferenceService",  # serving.kserve.io/v1beta1: canary to 0 %
    "rollout": "Rollout",                  # argoproj.io/v1alpha1: abort
}


class ObjectRef(_Strict):
    """A model's serving object: exactly one of ``deployment``, ``inference_service``
    or ``rollout`` (its name), and its ``namespace``."""

    deployment: DeploymentName | None = Field(
        default=None, description="A Deployment's name (a rollback undoes its last rollout, as "
        "`kubectl rollout undo` does).")
    inference_service: DeploymentName | None = Field(
        default=None, description="A KServe InferenceService's name (a rollback sets its canary to 0 %).")
    rollout: DeploymentName | None = Field(
        default=None, description="An Argo Rollout's name (a rollback aborts it).")
    namespace: Namespace | None = Field(
        default=None, description="The object's namespace; unset: remediate.namespace.")

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
    retrain: RetrainAction | None = Field(
        default=None, description="Create an object (a retraining Job, ...) from a template.")
    rollback: RollbackAction | None = Field(
        default=None, description="Roll the serving object back (exactly one of its three kinds).")

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

    on_drift: ActionSet | None = Field(
        default=None, description="What to do when a drift alert (dataset or feature) fires.")
    on_performance_drop: ActionSet | None = Field(
        default=None,
        description="What to do when the performance alert fires; needs performance thresholds.")
    cooldown: Duration = Field(
        default=3600.0, description="Least time between two actions of one kind for the model.")
    dry_run: StrictBool = Field(
        default=True, description="Only record the decisions (GET /actions), change nothing; false to act.")
    approval: Literal["auto", "manual"] = Field(
        default="auto", description="auto acts at once; manual holds each decision as pending in /actions "
        "until it is approved.")
    target: ObjectRef | None = Field(
        default=None, description="The model's serving object, which carries the driftline.io/last-action "
        "annotation (so two receivers never both act); unset: the rollback's object.")

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

    grafana_url: Annotated[str, Field(min_length=1)] = Field(
        default="http://localhost:3000", description="Grafana's base URL, for the dashboard links in alerts.")
    monitor_url: Annotated[str, Field(min_length=1)] = Field(
        default="http://localhost:8000",
        description="The monitor API's base URL, for the report links (/models/{m}/report) in alerts.")
    runbook_url: Annotated[str, Field(min_length=1)] = Field(
        default="https://github.com/driftline/driftline/blob/main/README.md#runbook",
        description="The runbook's URL, put into every alert's annotations.")


class RemediateConfig(_Strict):
    """The Alertmanager receiver (``driftline remediate``).  ``token_file`` holds the
    bearer token Alertmanager sends (or set ``DRIFTLINE_REMEDIATE_TOKEN_FILE``);
    ``max_actions_per_hour`` bounds actions across every model; ``namespace`` is used
    by actions that name none; ``max_body_bytes`` bounds a webhook body; ``audit_size``
    is how many decisions ``GET /actions`` keeps."""

    token_file: ResolvedPath | None = Field(
        default=None, description="File holding the bearer token Alertmanager sends (or set "
        "DRIFTLINE_REMEDIATE_TOKEN_FILE); relative to the config file.")
    namespace: Namespace = Field(default="default", description="Namespace for actions that name none.")
    max_actions_per_hour: PositiveInt = Field(
        default=20, description="Actions carried out per hour at most, across every model.")
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024), Strict()] = Field(
        default=1_048_576, description="Largest webhook body accepted, in bytes.")
    audit_size: Annotated[int, Field(ge=1, le=1_000_000), Strict()] = Field(
        default=10_000, description="Decisions kept for GET /actions.")


class KafkaTopics(_Strict):
    predictions: Topic = Field(
        default="driftline.predictions", description="Prediction events, keyed by model name.")
    labels: Topic = Field(
        default="driftline.labels",
        description="Ground-truth labels, keyed by model name (POST /labels writes here).")
    dlq: Topic = Field(
        default="driftline.dlq",
        description="Messages that break the wire contract, unchanged, with the reason "
        "in headers.")
    state: Topic = Field(
        default="driftline.state", description="The service's checkpoints and uploaded reference profiles "
        "(compacted).")


class KafkaConfig(_Strict):
    bootstrap_servers: Annotated[str, AfterValidator(_check_bootstrap)] = Field(
        default="localhost:9092", description="The brokers, as host:port (comma-separate several).")
    topics: KafkaTopics = Field(default=KafkaTopics(), description="The four topics' names.")
    group_id: NonEmptyStr = Field(
        default="driftline",
        description="The consumer group `driftline serve` joins; it also keys the checkpoints.")
    partitions: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=4, description="Partitions of each topic driftline creates when it is missing; predictions "
        "and labels need the same count (a model's two streams meet on one replica).")


class LabelJoinConfig(_Strict):
    """How long predictions wait for their label, and how many wait at most
    per model; older or surplus predictions are evicted and counted."""

    ttl: PositiveDuration = Field(
        default=7 * 86400.0, description="How long, in event time, a prediction or a label waits for the "
        "other; older ones are evicted and counted.")
    max_pending: PositiveInt = Field(
        default=100_000, description="Predictions (and labels) waiting at most per model; surplus ones are "
        "evicted and counted.")


class ServiceConfig(_Strict):
    """The streaming service (``driftline serve``): reports kept per model,
    how often state is checkpointed, the largest message accepted and the
    label join."""

    history: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=50, description="Reports kept per model (GET /models/{m}/history).")
    checkpoint_interval: PositiveDuration = Field(
        default=10.0, description="How often each model's state is checkpointed to the state topic.")
    shutdown_grace: PositiveDuration = Field(
        default=20.0, description="How long a stop (SIGTERM) may take to write the last checkpoint and leave "
        "the group; keep it below the pod's terminationGracePeriodSeconds.")
    max_message_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = Field(
        default=1_048_576, description="Largest message taken; larger ones go to the DLQ as 'oversize'.")
    label_join: LabelJoinConfig = Field(
        default=LabelJoinConfig(), description="How predictions wait for their labels.")
