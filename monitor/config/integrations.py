"""What driftline does about drift, and where it reads from.

Prometheus alerting (:class:`AlertsConfig`), automated remediation
(:class:`ActionsConfig`: a retrain Job, a rollback) and the Kafka connection
(:class:`KafkaConfig`) that brings predictions and labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field

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


class AlertsConfig(_Strict):
    """Prometheus alerting: ``for`` how long a condition must hold before firing."""

    for_: Duration = Field(default=0.0, alias="for")
    severity: SeverityField = "warning"


class RetrainAction(_Strict):
    """Create a Kubernetes Job from ``job_template`` (a Job manifest)."""

    job_template: ResolvedPath
    namespace: Namespace | None = None


class RollbackAction(_Strict):
    """Roll ``deployment`` back to its previous revision."""

    deployment: DeploymentName
    namespace: Namespace | None = None


class ActionSet(_Strict):
    retrain: RetrainAction | None = None
    rollback: RollbackAction | None = None

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        if all(raw.get(key) is None for key in cls.allowed_keys()):
            yield (), f"give at least one action: {', '.join(cls.allowed_keys())}"


class ActionsConfig(_Strict):
    """Automated remediation.  ``dry_run`` (the default) only logs what would be
    done; ``cooldown`` is the least time between two actions for one model."""

    on_drift: ActionSet | None = None
    on_performance_drop: ActionSet | None = None
    cooldown: Duration = 3600.0
    dry_run: StrictBool = True


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
