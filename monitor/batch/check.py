"""The batch drift check behind ``driftline check`` and ``driftline profile``.

Composition only: read the files, pick the features and settings (from the
config, or inferred), build profiles, run the analysis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.batch import profile_io, tabular
from monitor.engine.analysis import DriftReport, DriftSettings, FeatureSpec, Materiality, analyze
from monitor.engine.performance.check import Bound, PerformancePlan, PerformanceResult, evaluate
from monitor.engine.profiles import Profile, ProfileSettings
from monitor.errors import InputError, UsageError

if TYPE_CHECKING:
    from monitor.config import Config

Step = Callable[[str], None]


@dataclass(frozen=True)
class ModelPlan:
    """What to monitor and how: from a config model, or inferred."""

    model: str
    features: tuple[FeatureSpec, ...] | None  # None: infer from the reference
    settings: DriftSettings = field(default_factory=DriftSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    reference: str | None = None  # the config's reference, when it names one
    max_categories: dict[str, int] = field(default_factory=dict)  # per-feature category caps
    performance: PerformancePlan | None = None  # target, prediction and metric bounds
    # the model's output, monitored like a feature where the reference has its column
    prediction: FeatureSpec | None = None


@dataclass(frozen=True)
class CheckResult:
    report: DriftReport
    inferred: dict[str, str]  # feature -> why it got its type (no config)
    skipped: dict[str, str]  # column -> why it is not monitored
    performance: PerformanceResult | None = None
    performance_note: str = ""  # why performance was not evaluated, when configured


def plan_from_config(config_path: str, model: str | None) -> ModelPlan:
    from monitor.config import load_config

    config = load_config(config_path)
    names = [m.name for m in config.models]
    if model is None:
        if len(names) != 1:
            raise UsageError(
                f"{config_path} defines {len(names)} models ({', '.join(names)}); choose one with --model"
            )
        model = names[0]
    elif model not in names:
        raise UsageError(f"{config_path}: no model named {model!r} (models: {', '.join(names)})")
    return plan_for(config, model)


def plan_for(config: Config, model: str) -> ModelPlan:
    """The plan of one model of a loaded config."""
    cfg = config.model(model)
    eff = config.effective(model)
    specs = tuple(
        FeatureSpec(name, f.type, f.test, f.threshold) for name, f in cfg.features.items()
    )
    share = eff.dataset_drift.share
    settings = DriftSettings(
        alpha=eff.alpha,
        correction=eff.correction,
        dataset_share=share,
        materiality=Materiality(
            numerical=eff.materiality.numerical,
            categorical=eff.materiality.categorical,
            missing_share=eff.materiality.missing_share,
        ),
    )
    profile = ProfileSettings(
        exact_cap=eff.profile.exact_cap,
        sketch_k=eff.profile.sketch_k,
        max_categories=eff.profile.max_categories,
    )
    caps = {name: f.max_categories for name, f in cfg.features.items() if f.max_categories}
    perf = None
    if cfg.target is not None and cfg.prediction is not None:
        bounds = {name: Bound(b.min, b.max)
                  for name, b in (cfg.performance.metrics() if cfg.performance else {}).items()}
        perf = PerformancePlan(cfg.target.name, cfg.target.task, cfg.prediction.name,
                               cfg.prediction.type, bounds)
    prediction = None
    if cfg.prediction is not None:
        prediction = FeatureSpec(cfg.prediction.name, cfg.prediction.type, cfg.prediction.test,
                                 cfg.prediction.threshold)
    return ModelPlan(model, specs, settings, profile, str(cfg.reference.path), caps, perf,
                     prediction)


def load_reference(
    path: str, plan: ModelPlan, *, step: Step | None = None, created_at: str = "",
    exact: bool = False, with_prediction: bool = False,
) -> tuple[Profile, tuple[FeatureSpec, ...], dict[str, str], dict[str, str]]:
    """The reference profile and the features to check against it.

    ``with_prediction`` adds the configured prediction column, where the data
    has it, as the service does (:mod:`monitor.streaming.setups`)."""
    if profile_io.is_profile(path):
        if step:
            step("loading reference profile")
        profile = profile_io.load(path)
        if plan.features is None:
            specs = tuple(FeatureSpec(n, f.type) for n, f in profile.features.items())
        else:
            specs = plan.features
            absent = [s.name for s in specs if s.name not in profile.features]
            if absent:
                raise InputError(f"{path}: profile has no feature {absent[0]!r} named in the config")
            for s in specs:
                if profile.features[s.name].type != s.type:
                    kind = profile.features[s.name].type
                    raise InputError(
                        f"{path}: feature {s.name!r} is {kind} in the profile but {s.type} in the config"
                    )
        return profile, specs, {}, {}
    if step:
        step("reading reference")
    frame = tabular.open_table(path)
    # a check against raw data keeps every value (results equal scipy's);
    # a saved profile applies the cap so the file stays small
    settings = replace(plan.profile, exact_cap=None) if exact else plan.profile
    inferred: dict[str, str] = {}
    skipped: dict[str, str] = {}
    source = str(Path(path).name)
    if plan.features is None:
        if step:
            step("profiling reference")
        profile, guesses = tabular.profile_inferred(
            frame, settings=settings, file=path, source=source, created_at=created_at,
            progress=step)
        for name, guess in guesses.items():
            if guess.type is None:
                skipped[name] = guess.reason
            else:
                inferred[name] = guess.reason
        specs = tuple(FeatureSpec(n, f.type) for n, f in profile.features.items())
        if not specs:
            raise InputError(f"{path}: no column can be monitored")
    else:
        specs = plan.features
        prediction = plan.prediction
        if (with_prediction and prediction is not None and prediction.name in frame.columns
                and prediction.name not in {s.name for s in specs}):
            specs = (*specs, prediction)
        absent = [s.name for s in specs if s.name not in frame.columns]
        if absent:
            raise InputError(f"{path}: no column {absent[0]!r}, which the config monitors")
        if step:
            step("profiling reference")
        profile = tabular.profile_frame(
            frame, {s.name: s.type for s in specs}, settings=settings, file=path,
            source=source, created_at=created_at, progress=step,
            max_categories=plan.max_categories,
        )
    tabular.require_values(profile, file=path)
    return profile, specs, inferred, skipped


@dataclass(frozen=True)
class InferredColumns:
    """What ``check`` makes of a reference without a config: each monitored column's
    type, each column left out and why, and every column of the file."""

    types: dict[str, str]
    skipped: dict[str, str]
    columns: tuple[str, ...]


def infer_columns(path: str, *, step: Step | None = None) -> InferredColumns:
    """The feature types ``check`` infers from the reference at ``path`` (the same code:
    :func:`load_reference` with no features given)."""
    profile, specs, _, skipped = load_reference(path, ModelPlan("", None), step=step)
    return InferredColumns({s.name: s.type for s in specs}, dict(skipped), tuple(profile.columns))


def run_check(
    reference_path: str, current_path: str, plan: ModelPlan, *, step: Step | None = None,
    evaluated_at: str | None = None,
) -> CheckResult:
    reference, specs, inferred, skipped = load_reference(reference_path, plan, step=step,
                                                         exact=True)
    if step:
        step("reading current")
    frame = tabular.open_table(current_path)
    common = [s for s in specs if s.name in frame.columns]
    if not common:
        raise InputError(
            f"{current_path}: no columns in common with {reference_path} "
            f"(expected some of: {', '.join(s.name for s in specs[:8])})"
        )
    if step:
        step("profiling current")
    current = tabular.profile_frame(
        frame, {s.name: s.type for s in specs}, settings=ProfileSettings(exact_cap=None),
        file=current_path, source=str(Path(current_path).name), progress=step,
        max_categories=plan.max_categories,
    )
    if step:
        step("testing")
    report = analyze(reference, current, specs, plan.settings, model=plan.model,
                     evaluated_at=evaluated_at)
    performance, note = _performance(plan.performance, frame, current_path)
    return CheckResult(report, inferred, skipped, performance, note)


def _performance(
    plan: PerformancePlan | None, table: tabular.Table, path: str
) -> tuple[PerformanceResult | None, str]:
    """Metrics on the current data when it carries the target and the prediction."""
    if plan is None:
        return None, ""
    absent = [c for c in (plan.target, plan.prediction) if c not in table.columns]
    if absent:
        return None, f"performance not evaluated: {path} has no column {absent[0]!r}"
    y_true = tabular.label_values(table.column(plan.target))
    y_pred = tabular.label_values(table.column(plan.prediction))
    return evaluate(plan, y_true, y_pred), ""


def build_profile(reference_path: str, plan: ModelPlan, out: str, *, created_at: str,
                  step: Step | None = None) -> Profile:
    if profile_io.is_profile(reference_path):
        raise InputError(f"{reference_path}: is already a profile; give a CSV or Parquet file")
    # the service monitors the prediction too: a profile to upload must hold it
    profile, _, _, _ = load_reference(reference_path, plan, step=step, created_at=created_at,
                                      with_prediction=True)
    if step:
        step("writing profile")
    try:
        profile_io.save(profile, out)
    except OSError as exc:
        raise InputError(f"{out}: cannot write profile: {exc.strerror or exc}") from None
    return profile
