"""From the config to each model's :class:`~monitor.streaming.model_state.ModelSetup`.

The edge where the service reads files: a model's reference is a saved
profile, or a CSV/Parquet file profiled here, at start-up or on reload.
The model's prediction is monitored like a feature when the reference has
its column.
"""

from __future__ import annotations

from monitor.batch import check as batch
from monitor.batch import profile_io, tabular
from monitor.config import Config
from monitor.engine.analysis import FeatureSpec
from monitor.engine.profiles import Profile
from monitor.engine.windows import WindowSpec
from monitor.errors import InputError
from monitor.streaming.model_state import ModelSetup


def window_spec(config: Config, model: str) -> WindowSpec:
    window = config.effective(model).window
    if window.size is not None:
        slide = None if window.slide is None else int(window.slide)
        return WindowSpec(size=window.size, slide=slide)
    return WindowSpec(duration_s=window.duration, slide=window.slide)


def _reference_columns(path: str) -> frozenset[str]:
    if profile_io.is_profile(path):
        return frozenset(profile_io.load(path).features)
    return frozenset(tabular.open_table(path).columns)


def model_setup(config: Config, model: str, *, created_at: str,
                reference: tuple[Profile, str] | None = None) -> ModelSetup:
    """The setup of ``model``; its reference is read from the config's path
    unless ``reference`` (a profile and where it came from) is given."""
    cfg = config.model(model)
    plan = batch.plan_for(config, model)
    assert plan.features is not None and plan.reference is not None
    reference_path: str = plan.reference
    features = plan.features
    prediction = cfg.prediction
    if reference is None:
        columns = _reference_columns(reference_path)
        if prediction is not None and prediction.name in columns:
            features = (*features, FeatureSpec(prediction.name, prediction.type, prediction.test,
                                               prediction.threshold))
        plan = batch.ModelPlan(plan.model, features, plan.settings, plan.profile, plan.reference,
                               plan.max_categories, plan.performance)
        profile, _, _, _ = batch.load_reference(reference_path, plan, created_at=created_at)
        source = reference_path
    else:
        profile, source = reference
        if prediction is not None and prediction.name in profile.features:
            features = (*features, FeatureSpec(prediction.name, prediction.type, prediction.test,
                                               prediction.threshold))
        absent = [f.name for f in features if f.name not in profile.features]
        if absent:
            raise InputError(f"{source}: the reference has no feature {absent[0]!r}")
    service = config.service
    return ModelSetup(
        name=model, features=features, prediction=None if prediction is None else prediction.name,
        window=window_spec(config, model), settings=plan.settings, profile=plan.profile,
        reference=profile, reference_source=source, performance=plan.performance,
        max_categories=plan.max_categories, history=service.history,
        join_cap=service.label_join.max_pending, join_ttl_s=service.label_join.ttl)
