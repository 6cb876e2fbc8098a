"""Data-quality findings for one window against the reference.

Findings are reported, never raised: a schema change in production data is
something to see on a dashboard, not a crash.

=====================  ===================================================
issue                  when
=====================  ===================================================
missing_column         a monitored feature is absent from the current data
extra_column           the current data has a column the reference lacks
all_missing            a feature has no values in the current data
missing_share          the missing share moved by the materiality floor
out_of_range           at least ``OUT_OF_RANGE_SHARE`` of values fall
                       outside the reference [min, max]
new_categories         categories never seen in the reference
vanished_categories    reference categories expected at least 5 times
                       that do not occur at all
type_mismatch          values of the wrong kind (text in a numerical
                       feature, a non-boolean in a boolean one)
non_finite             +/-inf in a numerical feature
prediction_absent      (streaming) no event of the window carries the
                       configured prediction; the detail names the
                       outputs the events carry instead
=====================  ===================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from monitor.engine.profiles import OTHER, CategoricalProfile, NumericProfile, Profile


class FeatureSpec(Protocol):
    """What the checks need of a monitored feature (analysis.FeatureSpec has it)."""

    @property
    def name(self) -> str: ...

#: share of current values outside the reference range worth reporting
OUT_OF_RANGE_SHARE = 0.01
#: change in missing share worth reporting
MISSING_SHARE_CHANGE = 0.01
#: list at most this many categories in a finding's detail
LIST_MAX = 10


@dataclass(frozen=True)
class Finding:
    feature: str
    issue: str
    detail: str
    value: float | None = None  # the number behind the finding (a share or a count)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "issue": self.issue, "detail": self.detail,
                "value": self.value}


def _list(items: Sequence[str]) -> str:
    shown = ", ".join(items[:LIST_MAX])
    return shown + (f" and {len(items) - LIST_MAX} more" if len(items) > LIST_MAX else "")


def check(reference: Profile, current: Profile, features: Sequence[FeatureSpec]) -> tuple[Finding, ...]:
    out: list[Finding] = []
    monitored = {spec.name for spec in features}
    if current.columns and reference.columns:
        known = set(reference.columns) | monitored
        for column in current.columns:
            if column not in known:
                out.append(Finding(column, "extra_column",
                                   f"column {column!r} is not in the reference"))
    for spec in features:
        ref = reference.features.get(spec.name)
        cur = current.features.get(spec.name)
        if ref is None:
            continue
        if cur is None:
            out.append(Finding(spec.name, "missing_column",
                               f"monitored column {spec.name!r} is missing from the current data"))
            continue
        if cur.invalid:
            kind = "numbers" if isinstance(cur, NumericProfile) else "booleans"
            out.append(Finding(spec.name, "type_mismatch",
                               f"{cur.invalid} values are not {kind}", float(cur.invalid)))
        if cur.count == 0:
            out.append(Finding(spec.name, "all_missing", "no values in the current data",
                               float(cur.rows)))
            continue
        delta = cur.missing_share - ref.missing_share
        if abs(delta) >= MISSING_SHARE_CHANGE:
            out.append(Finding(spec.name, "missing_share",
                               f"{cur.missing_share:.1%} missing vs {ref.missing_share:.1%} "
                               f"in the reference", cur.missing_share))
        if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
            out.extend(_numeric_findings(spec.name, ref, cur))
        elif isinstance(ref, CategoricalProfile) and isinstance(cur, CategoricalProfile):
            out.extend(_categorical_findings(spec.name, ref, cur))
    return tuple(out)


def _numeric_findings(name: str, ref: NumericProfile, cur: NumericProfile) -> list[Finding]:
    out: list[Finding] = []
    if cur.nonfinite:
        out.append(Finding(name, "non_finite", f"{cur.nonfinite} infinite values",
                           float(cur.nonfinite)))
    values = cur.sample.values
    below = int(np.searchsorted(values, ref.minimum, side="left"))
    above = int(values.size - np.searchsorted(values, ref.maximum, side="right"))
    share = (below + above) / values.size
    if share >= OUT_OF_RANGE_SHARE:
        out.append(Finding(
            name, "out_of_range",
            f"{share:.1%} of values outside the reference range [{ref.minimum:.6g}, "
            f"{ref.maximum:.6g}] ({below} below, {above} above)", share))
    return out


def new_categories(ref: CategoricalProfile, cur: CategoricalProfile) -> tuple[str, ...]:
    """Current categories the reference never had; unknowable when the reference
    folded some categories into "other"."""
    if ref.other:
        return ()
    known = set(ref.categories)
    return tuple(k for k in cur.categories if k not in known)


def _categorical_findings(name: str, ref: CategoricalProfile, cur: CategoricalProfile) -> list[Finding]:
    out: list[Finding] = []
    ref_map = ref.as_dict()
    cur_map = cur.as_dict()
    new = new_categories(ref, cur)
    if new:
        n_new = sum(cur_map[k] for k in new)
        out.append(Finding(name, "new_categories",
                           f"{len(new)} unseen categories ({n_new / cur.count:.1%} of values): "
                           f"{_list(new)}", float(len(new))))
    ref_total = ref.count
    vanished = [
        k for k, n in ref_map.items()
        if k != OTHER and k not in cur_map and n / ref_total * cur.count >= 5
    ]
    if vanished:
        out.append(Finding(name, "vanished_categories",
                           f"{len(vanished)} reference categories absent: {_list(vanished)}",
                           float(len(vanished))))
    return out
