"""Panes: the accumulators of one slide's rows, and their merge.

A window is the merge of its last ``size / slide`` panes (one when
tumbling), so each row is summarised once however many windows hold it:
:class:`_Pane` ingests a slice of a batch, :func:`_merge_features` and
:func:`_merge_unknown` combine the panes of one window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from monitor.engine.profiles import (
    CategoricalAccumulator,
    FeatureProfile,
    FeatureType,
    NumericAccumulator,
    ProfileSettings,
)
from monitor.engine.windows.columns import _INVALID, _MISSING, _Batch, _count_field


class _Pane:
    """Accumulators for the rows of one pane."""

    def __init__(self, start: int, features: Mapping[str, FeatureType],
                 settings: ProfileSettings) -> None:
        self.start = start  # row number (count) or pane number (time)
        self.rows = 0
        self.numeric: dict[str, NumericAccumulator] = {}
        self.categorical: dict[str, CategoricalAccumulator] = {}
        for name, kind in features.items():
            if kind == "numerical":
                self.numeric[name] = NumericAccumulator(settings)
            else:
                self.categorical[name] = CategoricalAccumulator(settings, feature_type=kind)
        self.unknown: Counter[str] = Counter()

    def ingest(self, batch: _Batch, lo: int, hi: int) -> None:
        for name, num in batch.numeric.items():
            values = num.values[lo:hi]
            invalid = 0
            if num.invalid is not None:
                mask = num.invalid[lo:hi]
                invalid = int(mask.sum())
                if invalid:
                    values = values[~mask]
            self.numeric[name].update(values, invalid=invalid)
        for name, cat in batch.categorical.items():
            codes = cat.codes[lo:hi]
            valid = codes[codes >= 0]
            counts: dict[str, int] = {}
            if valid.size:
                found, tally = np.unique(valid, return_counts=True)
                counts = {cat.labels[c]: k for c, k in zip(found.tolist(), tally.tolist(),
                                                           strict=True)}
            self.categorical[name].update_counts(
                counts,
                missing=int(np.count_nonzero(codes == _MISSING)),
                invalid=int(np.count_nonzero(codes == _INVALID)),
            )
        for name in batch.unknown_all:
            _count_field(self.unknown, name, hi - lo)
        if batch.unknown_rows.size:
            inside = (batch.unknown_rows >= lo) & (batch.unknown_rows < hi)
            for name, ok in zip(batch.unknown_names, inside.tolist(), strict=True):
                if ok:
                    _count_field(self.unknown, name, 1)
        self.rows += hi - lo

    def held(self) -> int:
        numeric = sum(acc.held_values for acc in self.numeric.values())
        categories = sum(len(acc.freeze().categories) for acc in self.categorical.values())
        return numeric + categories + len(self.unknown)


def _merge_features(panes: Sequence[_Pane], kinds: Mapping[str, FeatureType],
                    settings: ProfileSettings) -> dict[str, FeatureProfile]:
    """Each feature's profile over the rows of all ``panes`` (left as they are)."""
    features: dict[str, FeatureProfile] = {}
    for name, kind in kinds.items():
        if kind == "numerical":
            if len(panes) == 1:
                features[name] = panes[0].numeric[name].freeze()
            else:
                num = NumericAccumulator(settings)
                for pane in panes:  # merging into a fresh accumulator leaves panes as are
                    num.merge(pane.numeric[name])
                features[name] = num.freeze()
        else:
            cat = CategoricalAccumulator(settings, feature_type=kind)
            for pane in panes:
                cat.merge(pane.categorical[name])
            features[name] = cat.freeze()
    return features


def _merge_unknown(panes: Sequence[_Pane]) -> Counter[str]:
    """The unknown field counts of all ``panes``, bounded as one pane's are."""
    unknown: Counter[str] = Counter()
    for pane in panes:
        for field_name, count in pane.unknown.items():
            _count_field(unknown, field_name, count)
    return unknown
