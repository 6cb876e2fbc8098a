"""An Evidently drift report rebuilt from two driftline profiles.

The streaming service keeps no raw rows, only a reference :class:`Profile`
and the latest window's.  Evidently needs rows, so :func:`reconstruct` builds
a stand-in DataFrame per side whose every column has the profile's marginal
distribution, and :func:`render_html` runs Evidently's ``DataDriftPreset`` on
the two frames for root-cause analysis.

How a side is rebuilt (``n = min(max_rows, profile.rows)`` rows):

* numerical: the ``n`` rows are split between values and missing values in
  proportion to the profile's value and missing counts (largest remainder).
  The ``k`` values are the profile's quantiles at the evenly spaced
  probabilities ``(i + 0.5) / k``, read off :attr:`NumericProfile.sample`
  with the inverse ECDF: the exact sorted sample, or for a sketched feature
  the KLL quantile grid, whose points carry equal weight.  No interpolation,
  so an integer feature stays integer; and an exact sample rebuilt at its own
  size is the data itself, reordered.
* categorical and boolean: the category counts, the "other" bucket (label
  ``__other__``) and the missing count are apportioned to ``n`` rows by
  largest remainder, so each share is within ``1/n`` of the profile's.
* every column is then shuffled with its own seeded permutation (seeded by
  the feature name and the side), so the report is the same on every call.

Limits, which the report's banner states:

* only marginals survive.  Rows are not records: the columns are independent
  of each other, so cross-feature correlations, scatter plots against other
  columns and anything multivariate mean nothing here;
* a sketched feature is exact only up to the sketch's rank error (~0.3% at
  the default ``k``), and a side is rebuilt at ``max_rows`` rows at most;
  Evidently picks its tests by row count (p-value tests up to 1000 rows,
  distances above), so p-values reflect the rebuilt size, not the original;
* non-finite (+/-inf) and invalid values are not reproduced: the values that
  were kept stand for those rows too.  Categories folded into "other" show as
  one ``__other__`` category, which may hold different values on each side;
* a feature without any value on one side (or absent from a profile) cannot
  be given to Evidently, which rejects empty columns; it is left out of the
  report and named in the banner.

Evidently is an optional extra and is imported only inside
:func:`render_html`, so the service starts without it.
"""

from __future__ import annotations

import html
import re
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from monitor.engine.analysis import FeatureSpec
from monitor.engine.profiles import OTHER, CategoricalProfile, FeatureProfile, NumericProfile, Profile
from monitor.errors import InputError

MISSING_EXTRA = "the Evidently report needs the 'evidently' extra: pip install 'driftline[evidently]'"
#: base seed of the per-column shuffles
SEED = 20_240_601
_SIDES = {"reference": 0, "current": 1}
#: Evidently's drift_share for the rule "any drifted feature": one column in a million
ANY_SHARE = 1e-6


def apportion(weights: Sequence[int], n: int) -> NDArray[np.int64]:
    """Split ``n`` into parts proportional to ``weights`` (largest remainder).

    Each part is within one of its exact quota ``n * w / sum(w)``; ties in the
    remainders go to the earlier weight.  All zero weights give all zeros.
    """
    w = np.asarray(weights, dtype=np.int64)
    total = int(w.sum())
    if total <= 0 or n <= 0:
        return np.zeros(w.size, dtype=np.int64)
    # exact integer arithmetic: Python ints, no float rounding of the quotas
    scaled = [n * int(x) for x in w]
    parts = np.array([s // total for s in scaled], dtype=np.int64)
    remainders = np.array([s % total for s in scaled], dtype=np.int64)
    left = n - int(parts.sum())
    if left:
        order = np.argsort(-remainders, kind="stable")
        parts[order[:left]] += 1
    return parts


def inverse_cdf(values: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """Quantiles of ascending, equally weighted ``values`` at ``(i + 0.5) / k``.

    The inverse ECDF: the value at index ``ceil(p * m) - 1`` for ``m`` values,
    computed in integers.
    """
    m = int(values.size)
    if k <= 0 or m == 0:
        return np.empty(0, dtype=np.float64)
    i = np.arange(k, dtype=np.int64)
    # ceil((2i + 1) m / 2k) - 1
    idx = ((2 * i + 1) * m + 2 * k - 1) // (2 * k) - 1
    out: NDArray[np.float64] = values[np.clip(idx, 0, m - 1)]
    return out


def _rng(name: str, side: str) -> np.random.Generator:
    return np.random.default_rng([SEED, _SIDES[side], zlib.crc32(name.encode("utf-8"))])


def _numeric_column(profile: NumericProfile, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    k, _missing = (int(x) for x in apportion([profile.count, profile.missing], n))
    column = np.full(n, np.nan)
    column[:k] = inverse_cdf(profile.sample.values, k)
    out: NDArray[np.float64] = rng.permutation(column)
    return out


def _categorical_column(profile: CategoricalProfile, n: int, rng: np.random.Generator) -> NDArray[Any]:
    labels: list[str | None] = [*profile.categories, OTHER, None]
    weights = [*(int(c) for c in profile.counts), profile.other, profile.missing]
    parts = apportion(weights, n)
    column = np.empty(n, dtype=object)
    start = 0
    for label, part in zip(labels, parts, strict=True):
        column[start:start + int(part)] = label
        start += int(part)
    out: NDArray[Any] = rng.permutation(column)
    return out


def _check_kind(spec: FeatureSpec, feature: FeatureProfile) -> None:
    numeric_spec = spec.type == "numerical"
    if numeric_spec != isinstance(feature, NumericProfile):
        raise InputError(
            f"feature {spec.name!r} is configured as {spec.type} but profiled as {feature.type}")


def reconstruct(profile: Profile, features: Sequence[FeatureSpec], *, side: str = "current",
                max_rows: int = 5000) -> pd.DataFrame:
    """Rows standing for ``profile``: one column per feature the profile holds,
    each with the profile's marginal distribution (see the module docstring).

    ``side`` ("reference" or "current") only picks the shuffle seeds.
    """
    if side not in _SIDES:
        raise ValueError(f"side must be 'reference' or 'current', not {side!r}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")
    n = min(max_rows, profile.rows)
    columns: dict[str, NDArray[Any]] = {}
    for spec in features:
        feature = profile.features.get(spec.name)
        if feature is None or spec.name in columns:
            continue
        _check_kind(spec, feature)
        rng = _rng(spec.name, side)
        if isinstance(feature, NumericProfile):
            columns[spec.name] = _numeric_column(feature, n, rng)
        else:
            columns[spec.name] = _categorical_column(feature, n, rng)
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


def _comparable(reference: Profile, current: Profile,
                features: Sequence[FeatureSpec]) -> tuple[list[FeatureSpec], list[str]]:
    """Features with values on both sides, and the names of those without."""
    shown: list[FeatureSpec] = []
    left_out: list[str] = []
    seen: set[str] = set()
    for spec in features:
        if spec.name in seen:
            continue
        seen.add(spec.name)
        ref, cur = reference.features.get(spec.name), current.features.get(spec.name)
        if ref is None or cur is None or ref.count == 0 or cur.count == 0:
            left_out.append(spec.name)
        else:
            shown.append(spec)
    return shown, left_out


def _exact(feature: FeatureProfile) -> bool:
    return not isinstance(feature, NumericProfile) or feature.exact


def _banner(title: str, shown: Sequence[FeatureSpec], left_out: Sequence[str], reference: Profile,
            current: Profile, n_ref: int, n_cur: int) -> str:
    e = html.escape
    sketched = [s.name for s in shown
                if not (_exact(reference.features[s.name]) and _exact(current.features[s.name]))]
    items = [
        "<p><strong>Reconstructed data.</strong> driftline keeps profiles, not rows: each column "
        "below is reconstructed per feature from the driftline profiles so that its distribution "
        "(quantiles, category shares, missing share) matches the profile. Rows are not real records "
        "and the columns are independent of each other, so cross-feature correlations are not shown "
        "and any plot of one feature against another is meaningless.</p>",
        f"<p>Reference: {reference.rows:,} rows profiled, {n_ref:,} rebuilt. "
        f"Current window: {current.rows:,} rows profiled, {n_cur:,} rebuilt. "
        f"Features ({len(shown)}): {e(', '.join(s.name for s in shown))}.</p>",
    ]
    if sketched:
        items.append(f"<p>Sketched (quantiles within the sketch's rank error): "
                     f"{e(', '.join(sketched))}.</p>")
    if left_out:
        items.append(f"<p>Not in this report (no values on one side): {e(', '.join(left_out))}.</p>")
    return ('<div id="driftline-banner" style="font-family: sans-serif; background: #fff4ce; '
            'border-bottom: 2px solid #e0b000; padding: 8px 16px; line-height: 1.4">'
            f"<h2 style=\"margin: 4px 0\">{e(title)}</h2>{''.join(items)}</div>")


_BODY = re.compile(r"</head>\s*<body[^>]*>")


def _inject(document: str, title: str, banner: str) -> str:
    """The banner first in the body, and the title in the head."""
    match = _BODY.search(document)
    if match is None:  # an unexpected layout: keep the banner visible anyway
        return f"<!DOCTYPE html>\n<html><body>{banner}\n{document}</body></html>"
    head = f"<title>{html.escape(title)}</title>\n"
    return document[:match.start()] + head + match.group(0) + banner + document[match.end():]


def _evidently() -> Any:
    """The evidently names we use, imported quietly (its import touches
    ``numpy.core`` and deprecated litestar names, which would fail under
    ``-W error``)."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"numpy\.core is deprecated",
                                    category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"litestar(\.|$)")
            import evidently
            from evidently.presets import DataDriftPreset
    except ImportError as exc:
        raise RuntimeError(MISSING_EXTRA) from exc
    return evidently, DataDriftPreset


def render_html(reference: Profile, current: Profile, features: Sequence[FeatureSpec], *, title: str,
                max_rows: int = 5000, dataset_share: float | None = None) -> str:
    """A standalone HTML Evidently data drift report of ``current`` against
    ``reference``, on columns rebuilt from the profiles, with a banner saying so.

    ``dataset_share`` is the model's dataset-drift rule (None: any drifted
    feature), so Evidently's dataset verdict follows the same rule as
    driftline's rather than its own default of half the columns.

    Raises :class:`RuntimeError` without the ``evidently`` extra, and
    :class:`~monitor.errors.InputError` when no feature has values on both sides.
    """
    evidently, data_drift_preset = _evidently()
    shown, left_out = _comparable(reference, current, features)
    if not shown:
        raise InputError("no monitored feature has values in both the reference and the current window")
    ref = reconstruct(reference, shown, side="reference", max_rows=max_rows)
    cur = reconstruct(current, shown, side="current", max_rows=max_rows)
    definition = evidently.DataDefinition(
        numerical_columns=[s.name for s in shown if s.type == "numerical"],
        categorical_columns=[s.name for s in shown if s.type != "numerical"],
    )
    # Evidently: dataset drift when the drifted share >= drift_share; "any" is the smallest share above 0
    share = dataset_share if dataset_share is not None else ANY_SHARE
    report = evidently.Report([data_drift_preset(drift_share=share)])
    snapshot = report.run(evidently.Dataset.from_pandas(cur, data_definition=definition),
                          evidently.Dataset.from_pandas(ref, data_definition=definition))
    document: str = snapshot.get_html_str(as_iframe=False)
    banner = _banner(title, shown, left_out, reference, current, len(ref), len(cur))
    return _inject(document, title, banner)
