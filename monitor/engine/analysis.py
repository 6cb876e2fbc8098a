"""Window + reference profile -> DriftReport.  Pure: no I/O, no clock.

The decision, stated in every report's ``rule``:

* A feature drifts when its distribution test is **significant and
  material**: the p-value, adjusted across all features of the report
  (Benjamini-Hochberg by default), is below ``alpha`` (or the feature's own
  threshold), and its effect size is at least the materiality floor.
* A significant and material change in a feature's missing share
  (two-proportion z-test, adjusted in the same family) is drift of that
  feature too.
* A distance test chosen explicitly drifts when its statistic reaches its
  threshold; it is not part of the corrected family.
* A feature with no values at all in the current data (or whose column is
  gone) drifts, with that reason.
* The dataset drifts when any feature drifts (``any``, which keeps the
  dataset-level false-alarm rate near ``alpha``), or when the share of drifted
  features reaches ``share``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from monitor.engine import quality
from monitor.engine.parallel import parallel_map
from monitor.engine.profiles import (
    CategoricalProfile,
    FeatureProfile,
    FeatureType,
    NumericProfile,
    Profile,
)
from monitor.engine.stats import registry
from monitor.engine.stats.base import Score, TestKind
from monitor.engine.stats.corrections import adjust
from monitor.engine.stats.ecdf import compare
from monitor.engine.stats.ks import ks_p_value
from monitor.engine.stats.samples import NumericSample, union_weights
from monitor.engine.stats.select import Choice, choose, pool_rare, total_variation
from monitor.engine.stats.wasserstein import MIN_NORM
from monitor.engine.stats.ztest import two_proportion_z

Correction = Literal["none", "bonferroni", "bh"]

#: ``FeatureDrift.reason_code``: why a feature did or did not drift, one code from a fixed set
#: (``reason`` says the same in words, with the numbers).  When several hold, the first in this
#: order wins: a missing or empty column, then the distribution test's drift, then the
#: missing-share change, then the distribution test's no-drift verdict.
DRIFT_REASON_CODES: tuple[str, ...] = (
    "column_missing",            # drift: the column is absent from the current data
    "all_missing",               # drift: the column has no values in the current data
    "significant_and_material",  # drift: adjusted p-value < threshold and effect >= floor
    "distance_over_threshold",   # drift: distance test statistic >= threshold
    "missing_share_changed",     # drift: the missing share changed significantly and materially
    "significant_not_material",  # no drift: adjusted p-value < threshold, effect < floor
    "not_significant",           # no drift: adjusted p-value >= threshold
    "distance_under_threshold",  # no drift: distance test statistic < threshold
    "not_computed",              # no drift: the test gave no usable statistic or p-value (NaN)
)
#: the codes of :data:`DRIFT_REASON_CODES` that mean the feature drifted
DRIFTING_REASON_CODES: frozenset[str] = frozenset(DRIFT_REASON_CODES[:5])


@dataclass(frozen=True)
class Materiality:
    """Effect-size floors below which a significant difference is not drift."""

    numerical: float = 0.1  # normed Wasserstein: W1 / reference std
    categorical: float = 0.05  # total variation distance: share of rows that moved
    missing_share: float = 0.01  # absolute change in the share of missing values


@dataclass(frozen=True)
class DriftSettings:
    alpha: float = 0.05
    correction: Correction = "bh"
    dataset_share: float | None = None  # None: "any feature"; else share of features
    materiality: Materiality = field(default_factory=Materiality)


@dataclass(frozen=True)
class FeatureSpec:
    """A monitored feature: its type and an optional test and threshold."""

    name: str
    type: FeatureType
    test: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    type: FeatureType
    test: str
    kind: str  # "p_value" or "distance"
    statistic: float | None
    p_value: float | None  # raw p-value of the distribution test
    p_value_adjusted: float | None
    threshold: float
    effect_size: float | None
    effect_measure: str
    materiality: float | None
    drift: bool
    reason: str
    rows: int
    missing_share: float | None
    reference_missing_share: float
    missing_p_value_adjusted: float | None = None
    new_categories: tuple[str, ...] = ()
    test_reason: str = ""
    reason_code: str = ""  # one of DRIFT_REASON_CODES ("" only when built elsewhere)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "test": self.test,
            "kind": self.kind,
            "statistic": _clean(self.statistic),
            "p_value": _clean(self.p_value),
            "p_value_adjusted": _clean(self.p_value_adjusted),
            "threshold": self.threshold,
            "drift": self.drift,
            "reason": self.reason,
            "effect_size": _clean(self.effect_size),
            "effect_measure": self.effect_measure,
            "materiality": self.materiality,
            "rows": self.rows,
            "missing_share": _clean(self.missing_share),
            "reference_missing_share": _clean(self.reference_missing_share),
            "missing_p_value_adjusted": _clean(self.missing_p_value_adjusted),
            "new_categories": list(self.new_categories),
            "test_reason": self.test_reason,
            "reason_code": self.reason_code,
        }


@dataclass(frozen=True)
class DriftReport:
    model: str
    drift_detected: bool
    drifted_features: int
    total_features: int
    drifted_share: float
    rule: str
    correction: str
    alpha: float
    rows_reference: int
    rows_current: int
    features: tuple[FeatureDrift, ...]
    quality: tuple[quality.Finding, ...]
    evaluated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "drift_detected": self.drift_detected,
            "drifted_features": self.drifted_features,
            "total_features": self.total_features,
            "drifted_share": self.drifted_share,
            "rule": self.rule,
            "correction": self.correction,
            "alpha": self.alpha,
            "rows_reference": self.rows_reference,
            "rows_current": self.rows_current,
            "evaluated_at": self.evaluated_at,
            "features": {f.name: f.to_dict() for f in self.features},
            "quality": [q.to_dict() for q in self.quality],
        }


def _clean(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def describe_rule(settings: DriftSettings) -> str:
    corr = {"bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni", "none": "unadjusted"}
    m = settings.materiality
    dataset = ("any feature drifts" if settings.dataset_share is None
               else f"at least {settings.dataset_share:.0%} of features drift")
    return (
        f"dataset drift when {dataset}; a feature drifts when its {corr[settings.correction]} "
        f"adjusted p-value < {settings.alpha:g} and its effect size reaches the materiality floor "
        f"(normed Wasserstein {m.numerical:g}, total variation {m.categorical:g}), when its "
        f"missing share changes significantly by at least {m.missing_share:g}, when an explicit "
        f"distance test reaches its threshold, or when it has no values"
    )


# --------------------------------------------------------------------------


@dataclass
class _Pending:
    """A feature's scores before the multiple-testing correction."""

    spec: FeatureSpec
    choice: Choice
    kind: TestKind
    threshold: float
    score: Score | None
    effect: float | None
    floor: float | None
    rows: int
    missing_share: float | None
    ref_missing_share: float
    missing_p: float | None = None
    missing_delta: float = 0.0
    forced_reason: str | None = None
    new_categories: tuple[str, ...] = ()


def analyze(
    reference: Profile,
    current: Profile,
    features: Sequence[FeatureSpec],
    settings: DriftSettings | None = None,
    *,
    model: str = "",
    evaluated_at: str | None = None,
) -> DriftReport:
    """Compare a current profile with the reference, feature by feature."""
    settings = settings or DriftSettings()
    todo = [spec for spec in features if spec.name in reference.features]

    def score(spec: FeatureSpec) -> _Pending:
        return _score_feature(spec, reference.features[spec.name],
                              current.features.get(spec.name), settings)

    # the numerical kernels and sorts release the GIL: features run in parallel
    pending = parallel_map(score, todo)
    # one correction family: every p-value test of the report
    family: list[tuple[int, str]] = []
    raw: list[float] = []
    for i, p in enumerate(pending):
        if p.kind is TestKind.P_VALUE and p.score is not None and p.score.p_value is not None:
            family.append((i, "dist"))
            raw.append(p.score.p_value)
        if p.missing_p is not None:
            family.append((i, "miss"))
            raw.append(p.missing_p)
    adjusted = adjust(raw, settings.correction) if raw else np.empty(0)
    dist_adj: dict[int, float] = {}
    miss_adj: dict[int, float] = {}
    for (i, which), value in zip(family, adjusted, strict=True):
        (dist_adj if which == "dist" else miss_adj)[i] = float(value)

    results = tuple(
        _decide(p, dist_adj.get(i), miss_adj.get(i), settings) for i, p in enumerate(pending)
    )
    drifted = sum(r.drift for r in results)
    total = len(results)
    share = drifted / total if total else 0.0
    if settings.dataset_share is None:
        dataset_drift = drifted > 0
    else:
        dataset_drift = total > 0 and share >= settings.dataset_share
    findings = quality.check(reference, current, features)
    return DriftReport(
        model=model,
        drift_detected=dataset_drift,
        drifted_features=drifted,
        total_features=total,
        drifted_share=share,
        rule=describe_rule(settings),
        correction=settings.correction,
        alpha=settings.alpha,
        rows_reference=reference.rows,
        rows_current=current.rows,
        features=results,
        quality=findings,
        evaluated_at=evaluated_at,
    )


def _distinct(profile: FeatureProfile) -> int:
    if isinstance(profile, NumericProfile):
        return profile.sample.distinct_count
    return len(profile.categories) + (1 if profile.other else 0)


def _score_feature(
    spec: FeatureSpec, ref: FeatureProfile, cur: FeatureProfile | None, settings: DriftSettings
) -> _Pending:
    mat = settings.materiality
    auto = choose(spec.type, reference_distinct=_distinct(ref))
    if spec.test is not None:
        test = registry.get(spec.test)
        effect = auto.effect if test.kind is TestKind.P_VALUE else spec.test
        choice = Choice(spec.test, effect, "chosen in config")
    else:
        test = registry.get(auto.test)
        choice = auto
    threshold = spec.threshold if spec.threshold is not None else (
        settings.alpha if test.kind is TestKind.P_VALUE else test.default_threshold)
    floor = None
    if test.kind is TestKind.P_VALUE:
        floor = mat.numerical if choice.effect == "wasserstein" else mat.categorical
    base = _Pending(spec, choice, test.kind, threshold, None, None, floor, 0, None,
                    ref.missing_share)
    if cur is None:
        base.forced_reason = "column missing from current data"
        return base
    base.rows = cur.rows
    base.missing_share = cur.missing_share
    if cur.count == 0:
        base.forced_reason = "no values in current data (all missing)"
        return base
    # missingness drift, tested whenever either side has missing values
    if ref.missing or cur.missing:
        z = two_proportion_z(ref.missing, ref.rows, cur.missing, cur.rows)
        base.missing_p = z.p_value
        base.missing_delta = abs(cur.missing_share - ref.missing_share)

    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        _score_numeric(base, test.name, ref, cur)
    elif isinstance(ref, CategoricalProfile) and isinstance(cur, CategoricalProfile):
        _score_categorical(base, test.name, ref, cur, pooled=spec.test is None)
    else:  # pragma: no cover - profiles are built from the same specs
        raise TypeError(f"feature {spec.name!r}: reference and current types differ")
    return base


def _score_numeric(p: _Pending, test_name: str, ref: NumericProfile, cur: NumericProfile) -> None:
    test = registry.get(test_name)
    if test.name == "chisquare" and p.spec.test is None:
        # discrete numerical feature: compare the value frequencies
        _, rc, cc = union_weights(ref.sample, cur.sample)
        p.effect = total_variation(rc, cc)
        pr, pc = pool_rare(rc, cc)
        p.score = _categorical_score(pr, pc)
        return
    if test.name == "ks":
        # one pass over both samples gives the KS statistic and the W1 effect
        gap = compare(ref.sample, cur.sample)
        p.score = Score(gap.ks, ks_p_value(gap.ks, ref.sample.n, cur.sample.n))
        p.effect = _normed(gap.l1, ref)
        return
    assert test.numerical is not None
    p.score = test.numerical(ref.sample, cur.sample)
    if p.kind is TestKind.P_VALUE:
        p.effect = normed_wasserstein(ref, cur.sample)
    else:
        p.effect = p.score.statistic


def normed_wasserstein(ref: NumericProfile, current: NumericSample) -> float:
    """W1 between the samples over the reference's standard deviation (floor 0.001)."""
    return _normed(compare(ref.sample, current).l1, ref)


def _normed(w1: float, ref: NumericProfile) -> float:
    # the profile's std is exact even when its sample is a sketch's grid
    return w1 / max(ref.std, MIN_NORM)


def aligned_counts(
    ref: CategoricalProfile, cur: CategoricalProfile
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both sides' counts over the union of categories ("other" included)."""
    ref_map, cur_map = ref.as_dict(), cur.as_dict()
    keys = list(dict.fromkeys([*ref_map, *cur_map]))
    rc = np.array([ref_map.get(k, 0) for k in keys], dtype=np.float64)
    cc = np.array([cur_map.get(k, 0) for k in keys], dtype=np.float64)
    return keys, rc, cc


def _categorical_score(rc: np.ndarray, cc: np.ndarray) -> Score:
    test = registry.get("chisquare") if rc.size > 2 else registry.get("z")
    assert test.categorical is not None
    if rc.size < 2:
        return Score(0.0, 1.0)
    return test.categorical(rc, cc)


def _score_categorical(
    p: _Pending, test_name: str, ref: CategoricalProfile, cur: CategoricalProfile, *, pooled: bool
) -> None:
    _, rc, cc = aligned_counts(ref, cur)
    p.new_categories = quality.new_categories(ref, cur)
    if pooled:  # the automatic choice: chi-square or z on the pooled counts
        p.effect = total_variation(rc, cc)
        p.score = _categorical_score(*pool_rare(rc, cc))
        return
    test = registry.get(test_name)
    assert test.categorical is not None
    p.score = test.categorical(rc, cc)
    p.effect = total_variation(rc, cc) if p.kind is TestKind.P_VALUE else p.score.statistic


def _decide(p: _Pending, dist_adj: float | None, miss_adj: float | None,
            settings: DriftSettings) -> FeatureDrift:
    alpha_missing = settings.alpha
    reasons: list[str] = []
    drift = False
    code = "not_computed"
    if p.forced_reason is not None:
        drift = True
        reasons.append(p.forced_reason)
        code = "column_missing" if p.missing_share is None else "all_missing"
    elif p.score is not None:
        if p.kind is TestKind.P_VALUE:
            significant = dist_adj is not None and dist_adj < p.threshold
            material = p.effect is not None and p.floor is not None and p.effect >= p.floor
            if significant and material:
                drift = True
                code = "significant_and_material"
                reasons.append(f"adjusted p={dist_adj:.3g} < {p.threshold:g} and "
                               f"{p.choice.effect} {p.effect:.3g} >= {p.floor:g}")
            elif significant:
                code = "significant_not_material"
                reasons.append(f"significant (adjusted p={dist_adj:.3g}) but {p.choice.effect} "
                               f"{_fmt(p.effect)} < materiality floor {p.floor:g}")
            elif dist_adj is not None and not math.isnan(dist_adj):
                code = "not_significant"
        else:
            stat = p.score.statistic
            if not math.isnan(stat) and stat >= p.threshold:
                drift = True
                code = "distance_over_threshold"
                reasons.append(f"{p.choice.test} {stat:.3g} >= threshold {p.threshold:g}")
            elif not math.isnan(stat):
                code = "distance_under_threshold"
    if miss_adj is not None and miss_adj < alpha_missing and \
            p.missing_delta >= settings.materiality.missing_share:
        if not drift:
            code = "missing_share_changed"
        drift = True
        reasons.append(
            f"missing share {_fmt(p.missing_share)} vs {p.ref_missing_share:.3g} in reference "
            f"(adjusted p={miss_adj:.3g})"
        )
    test = registry.get(p.choice.test)
    return FeatureDrift(
        name=p.spec.name,
        type=p.spec.type,
        test=p.choice.test,
        kind=test.kind.value,
        statistic=None if p.score is None else p.score.statistic,
        p_value=None if p.score is None else p.score.p_value,
        p_value_adjusted=dist_adj,
        threshold=p.threshold,
        effect_size=p.effect,
        effect_measure=p.choice.effect,
        materiality=p.floor,
        drift=drift,
        reason="; ".join(reasons) if reasons else "no drift",
        rows=p.rows,
        missing_share=p.missing_share,
        reference_missing_share=p.ref_missing_share,
        missing_p_value_adjusted=miss_adj,
        new_categories=p.new_categories,
        test_reason=p.choice.reason,
        reason_code=code,
    )


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3g}"


def specs_from_types(types: Mapping[str, FeatureType]) -> list[FeatureSpec]:
    return [FeatureSpec(name, t) for name, t in types.items()]
