"""The config document.

:class:`Config` is the whole file: the Kafka connection, the
:class:`DefaultsConfig` and one :class:`ModelConfig` per monitored model,
with the checks that span keys (names that clash, metrics that do not fit
the task, actions without what they need).  :meth:`Config.effective` merges
the defaults with a model's overrides into :class:`EffectiveModelSettings`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field, PrivateAttr

from monitor.config.features import FeatureSpec, PerformanceSpec, PredictionSpec, TargetSpec
from monitor.config.fields import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    TASKS,
    Alpha,
    Correction,
    CorrectionField,
    ModelName,
    NonEmptyStr,
    ResolvedPath,
    Version,
)
from monitor.config.integrations import (
    ActionsConfig,
    AlertsConfig,
    KafkaConfig,
    LinksConfig,
    RemediateConfig,
    ServiceConfig,
)
from monitor.config.settings import DatasetDriftRule, Materiality, ProfileSettings, WindowSpec
from monitor.config.strict import Loc, _get, _Strict
from monitor.errors import UnknownModel


class DefaultsConfig(_Strict):
    """Settings every model inherits unless it overrides them."""

    window: WindowSpec = Field(
        default=WindowSpec(size=1000), description="The window drift is tested on: {size: N} events, or "
        "{duration: 5m} of event time; add slide: for sliding windows.")
    alpha: Alpha = Field(default=0.05, description="Significance level of the p-value tests.")
    correction: CorrectionField = Field(
        default="bh", description="Multiple-testing correction across a model's features (bh: "
        "Benjamini-Hochberg).")
    dataset_drift: DatasetDriftRule = Field(
        default=DatasetDriftRule(), description="When the dataset counts as drifted: `any` drifted feature, "
        "or {share: 0.3} of them.")
    materiality: Materiality = Field(
        default=Materiality(),
        description="Effect-size floors below which a significant change is not drift.")
    profile: ProfileSettings = Field(
        default=ProfileSettings(), description="How reference and window profiles are built.")


class EffectiveModelSettings(_Strict):
    """A model's settings with the defaults applied (see :meth:`Config.effective`).

    ``window`` and ``dataset_drift`` come whole from the model when it sets
    them; ``materiality`` and ``profile`` merge key by key.
    """

    window: WindowSpec
    alpha: float
    correction: Correction
    dataset_drift: DatasetDriftRule
    materiality: Materiality
    profile: ProfileSettings

    def max_categories(self, feature: FeatureSpec) -> int:
        """Categories kept for ``feature``: its own cap, else the profile's."""
        if feature.max_categories is not None:
            return feature.max_categories
        return self.profile.max_categories


class ModelConfig(_Strict):
    """One monitored model.  ``window`` ... ``profile`` are optional overrides
    of ``defaults``; read the merged values from :meth:`Config.effective`."""

    name: ModelName = Field(
        description="The model's name: lowercase letters, digits, '-', '_' and '.', at most 63 "
        "characters, unique (a label value in metrics).")
    version: Version | None = Field(default=None, description="The model's version, a string (quote it).")
    reference: ResolvedPath = Field(
        description="The reference data: CSV, Parquet or a saved profile; relative to the config file.")
    window: WindowSpec | None = Field(
        default=None,
        description="This model's own window; unset: defaults.window.")
    alpha: Alpha | None = Field(default=None, description="This model's own alpha; unset: defaults.alpha.")
    correction: CorrectionField | None = Field(
        default=None, description="This model's own correction; unset: defaults.correction.")
    dataset_drift: DatasetDriftRule | None = Field(
        default=None, description="This model's own dataset_drift; unset: defaults.dataset_drift.")
    materiality: Materiality | None = Field(
        default=None, description="This model's own materiality floors, merged key by key into "
        "defaults.materiality.")
    profile: ProfileSettings | None = Field(
        default=None,
        description="This model's own profile settings, merged key by key into defaults.profile.")
    features: Annotated[dict[NonEmptyStr, FeatureSpec], Field(min_length=1)] = Field(
        description="The monitored input features, by name.")
    prediction: PredictionSpec | None = Field(
        default=None, description="The model's output, monitored for drift like a feature.")
    target: TargetSpec | None = Field(
        default=None, description="The ground-truth label (from the labels topic) and the task.")
    performance: PerformanceSpec | None = Field(
        default=None, description="Performance bounds by metric, over predictions joined with labels; "
        "needs prediction and target.")
    alerts: AlertsConfig = Field(
        default=AlertsConfig(), description="Prometheus alerting (see \"Alerts and remediation\").")
    actions: ActionsConfig | None = Field(
        default=None, description="Automated remediation, carried out by `driftline remediate`; unset: none.")

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        features = raw.get("features")
        feature_names = set(features) if isinstance(features, Mapping) else set()
        prediction_name = _get(raw, "prediction", "name")
        target_name = _get(raw, "target", "name")
        if isinstance(prediction_name, str) and prediction_name in feature_names:
            yield (
                ("prediction", "name"),
                (f"prediction {prediction_name!r} is also a feature name; give it another name"),
            )
        if isinstance(target_name, str) and target_name in feature_names:
            yield (
                ("target", "name"),
                (f"target {target_name!r} is also a feature name (that would leak the label)"),
            )
        elif isinstance(target_name, str) and target_name == prediction_name:
            yield ("target", "name"), f"target {target_name!r} has the prediction's name"

        task = _get(raw, "target", "task")
        prediction_type = _get(raw, "prediction", "type")
        if task == "regression" and prediction_type == "categorical":
            yield ("prediction", "type"), "a regression model's prediction must be numerical"

        performance = raw.get("performance")
        if isinstance(performance, Mapping) and performance:
            if raw.get("target") is None:
                yield ("performance",), "performance thresholds need a 'target' (name and task)"
            if raw.get("prediction") is None:
                yield ("performance",), "performance thresholds need a 'prediction'"
            if task in TASKS:
                fitting = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
                for metric in performance:
                    if metric in CLASSIFICATION_METRICS + REGRESSION_METRICS and (
                        metric not in fitting
                    ):
                        yield (
                            ("performance", metric),
                            (
                                f"metric {metric!r} does not fit task {task!r}; "
                                f"metrics for it: {', '.join(fitting)}"
                            ),
                        )
        if _get(raw, "actions", "on_performance_drop") is not None and not performance:
            yield (
                ("actions", "on_performance_drop"),
                ("on_performance_drop needs 'performance' thresholds to detect a drop"),
            )


class Config(_Strict):
    """driftline's whole configuration file."""

    kafka: KafkaConfig = Field(
        default=KafkaConfig(), description="The Kafka connection `driftline serve` reads from.")
    service: ServiceConfig = Field(
        default=ServiceConfig(), description="The streaming service, `driftline serve`.")
    links: LinksConfig = Field(default=LinksConfig(), description="Base URLs put into alert annotations.")
    remediate: RemediateConfig = Field(
        default=RemediateConfig(), description="The Alertmanager receiver, `driftline remediate`.")
    defaults: DefaultsConfig = Field(
        default=DefaultsConfig(), description="Settings every model inherits unless it sets its own.")
    models: Annotated[list[ModelConfig], Field(min_length=1)] = Field(
        description="The monitored models, at least one.")

    _source: Path | None = PrivateAttr(default=None)

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        models = raw.get("models")
        if not isinstance(models, list):
            return
        first: dict[str, int] = {}
        for index, model in enumerate(models):
            name = _get(model, "name")
            if not isinstance(name, str):
                continue
            if name in first:
                yield (
                    ("models", index, "name"),
                    (f"duplicate model name {name!r}; models[{first[name]}] has it already"),
                )
            else:
                first[name] = index

    @property
    def source(self) -> Path | None:
        """The file this config was loaded from (absolute), if any."""
        return self._source

    @property
    def base_dir(self) -> Path | None:
        """The directory relative paths resolve against, if loaded from a file."""
        return None if self._source is None else self._source.parent

    def model_names(self) -> list[str]:
        return [model.name for model in self.models]

    def model(self, name: str) -> ModelConfig:
        """The model called ``name``; :class:`~monitor.errors.UnknownModel` (naming the
        configured models, with a "did you mean") otherwise."""
        for model in self.models:
            if model.name == name:
                return model
        raise UnknownModel(name, self.model_names())

    def effective(self, model_name: str) -> EffectiveModelSettings:
        """``defaults`` with the model's overrides applied."""
        model, defaults = self.model(model_name), self.defaults
        return EffectiveModelSettings(
            window=model.window if model.window is not None else defaults.window,
            alpha=model.alpha if model.alpha is not None else defaults.alpha,
            correction=model.correction if model.correction is not None else defaults.correction,
            dataset_drift=(
                model.dataset_drift if model.dataset_drift is not None else defaults.dataset_drift
            ),
            materiality=_merge(defaults.materiality, model.materiality),
            profile=_merge(defaults.profile, model.profile),
        )


_M = TypeVar("_M", bound=BaseModel)


def _merge(base: _M, override: _M | None) -> _M:
    """``base`` with the fields ``override`` set explicitly."""
    if override is None:
        return base
    return base.model_copy(
        update={name: getattr(override, name) for name in override.model_fields_set}
    )
