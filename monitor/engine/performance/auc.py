"""ROC AUC over a bounded sample.

:func:`_mann_whitney_auc` is ROC AUC as the tie-aware Mann-Whitney U
statistic (equal to ``sklearn.metrics.roc_auc_score``); :class:`_Reservoir`
keeps the (label id, score) rows it needs: every row up to a cap, then a
uniform reservoir sample (Algorithm R, hypergeometric split on merge).
"""

from __future__ import annotations

import numpy as np

from monitor.engine.performance.inputs import BoolArray, FloatArray, IntArray


def _mann_whitney_auc(scores: FloatArray, positive: BoolArray) -> float:
    """ROC AUC as the Mann-Whitney U statistic with average ranks for ties."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)
    ranks = (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


class _Reservoir:
    """Label ids and scores of scored rows: all of them up to ``cap``, then a
    uniform reservoir sample (Algorithm R) of ``cap`` rows.  ``cap=None`` keeps
    every row."""

    def __init__(self, cap: int | None, rng: np.random.Generator, width: int | None) -> None:
        self.cap = cap
        self.rng = rng
        self.width = width
        self.seen = 0
        self.ids: IntArray = np.empty(0, dtype=np.int64)
        shape = (0,) if width is None else (0, width)
        self.values: FloatArray = np.empty(shape, dtype=np.float64)

    @property
    def estimated(self) -> bool:
        return self.seen > int(self.ids.shape[0])

    def add(self, ids: IntArray, values: FloatArray) -> None:
        if self.cap is None or self.seen + ids.shape[0] <= self.cap:
            self._append(ids, values)
            self.seen += ids.shape[0]
            return
        room = max(self.cap - self.ids.shape[0], 0)
        if room:
            self._append(ids[:room], values[:room])
            self.seen += room
            ids, values = ids[room:], values[room:]
        # Algorithm R: row t (0-based over the stream) replaces slot j ~ U{0..t} if j < cap.
        t = self.seen + np.arange(ids.shape[0], dtype=np.int64)
        slots = self.rng.integers(0, t + 1)
        take = slots < self.cap
        src = np.nonzero(take)[0]
        dst = slots[take]
        if dst.size:
            # Later rows overwrite earlier ones drawing the same slot.
            unique_dst, first_in_reversed = np.unique(dst[::-1], return_index=True)
            last_src = src[::-1][first_in_reversed]
            self.ids[unique_dst] = ids[last_src]
            self.values[unique_dst] = values[last_src]
        self.seen += ids.shape[0]

    def merge(self, other: _Reservoir, remap: IntArray) -> None:
        other_ids = remap[other.ids] if other.ids.size else other.ids
        if self.cap is None or self.seen + other.seen <= self.cap:
            self._append(other_ids, other.values)
            self.seen += other.seen
            return
        # Each side is a uniform sample of its stream; the count drawn from
        # each side of a uniform sample of the union is hypergeometric.
        size = self.cap
        from_self = int(self.rng.hypergeometric(self.seen, other.seen, size))
        mine = self.rng.choice(self.ids.shape[0], size=from_self, replace=False)
        theirs = self.rng.choice(other.ids.shape[0], size=size - from_self, replace=False)
        self.ids = np.concatenate([self.ids[mine], other_ids[theirs]])
        self.values = np.concatenate([self.values[mine], other.values[theirs]])
        self.seen += other.seen

    def _append(self, ids: IntArray, values: FloatArray) -> None:
        self.ids = np.concatenate([self.ids, ids])
        self.values = np.concatenate([self.values, values])
