"""driftline's configuration: one YAML file, validated in one pass.

:func:`load_config` reads the file, :func:`validate_file` reports every problem
in it at once, each as a :class:`ConfigIssue` with the file, the key path
(``models[0].features.region.test``) and the line number::

    driftline.yaml:12: models[0].features.region.test: unknown test 'pssi'; did you mean 'psi'?

How it works: the YAML is composed into a node tree whose walk records the line
of every mapping key and sequence item, and any duplicate key
(:mod:`~monitor.config.yaml_positions`).  The constructed data is then
validated by the pydantic models, which share one base
(:mod:`~monitor.config.strict`) that turns "extra inputs are not permitted"
into "unknown key 'x'; did you mean 'y'?" and runs each model's cross-field
checks even when another part fails, so that one run reports every error.
Each pydantic error ``loc`` is finally mapped back to a line
(:mod:`~monitor.config.loader`).

Durations are Prometheus-style strings (``30s``, ``5m``, ``1h30m``, ``1d``) or
plain numbers of seconds; they are stored as float seconds.  Relative paths
(``reference``, ``job_template``) resolve against the config file's directory.

Modules: :mod:`~monitor.config.errors` (issues and their wording),
:mod:`~monitor.config.durations`, :mod:`~monitor.config.fields` (field
types), :mod:`~monitor.config.settings` (window, dataset drift, materiality,
profiles), :mod:`~monitor.config.features` (features, prediction, target,
performance), :mod:`~monitor.config.integrations` (alerts, actions, Kafka),
:mod:`~monitor.config.models` (the document), :mod:`~monitor.config.loader`,
:mod:`~monitor.config.starter` (a first config from inferred types, for ``driftline init``).
"""

from __future__ import annotations

from monitor.config.durations import format_duration, parse_duration
from monitor.config.errors import ConfigError, ConfigIssue, format_issues, format_path
from monitor.config.features import FeatureSpec, MetricBounds, PerformanceSpec, PredictionSpec, TargetSpec
from monitor.config.fields import ResolvedPath
from monitor.config.integrations import (
    ALERT_NAMES,
    TARGET_KINDS,
    ActionsConfig,
    ActionSet,
    AlertOverride,
    AlertsConfig,
    KafkaConfig,
    KafkaTopics,
    LabelJoinConfig,
    LinksConfig,
    ObjectRef,
    RemediateConfig,
    RetrainAction,
    RollbackAction,
    ServiceConfig,
)
from monitor.config.loader import load_config, validate_file, validate_text
from monitor.config.models import Config, DefaultsConfig, EffectiveModelSettings, ModelConfig
from monitor.config.settings import DatasetDriftRule, Materiality, ProfileSettings, WindowSpec

__all__ = [
    "ALERT_NAMES",
    "TARGET_KINDS",
    "ActionSet",
    "AlertOverride",
    "LinksConfig",
    "ObjectRef",
    "RemediateConfig",
    "ActionsConfig",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "DatasetDriftRule",
    "DefaultsConfig",
    "EffectiveModelSettings",
    "FeatureSpec",
    "KafkaConfig",
    "KafkaTopics",
    "Materiality",
    "MetricBounds",
    "ModelConfig",
    "PerformanceSpec",
    "PredictionSpec",
    "ProfileSettings",
    "ResolvedPath",
    "RetrainAction",
    "RollbackAction",
    "ServiceConfig",
    "LabelJoinConfig",
    "TargetSpec",
    "WindowSpec",
    "format_duration",
    "format_issues",
    "format_path",
    "load_config",
    "parse_duration",
    "validate_file",
    "validate_text",
]
