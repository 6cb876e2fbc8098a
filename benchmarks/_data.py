"""Synthetic 100k x 20 tables for the speed benchmarks (seeded)."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_NUMERICAL = 14
N_CATEGORICAL = 6


def numeric_shape(rng: np.random.Generator, index: int, rows: int) -> np.ndarray:
    """Column ``index``'s values: normal, lognormal, gamma or rounded uniform (many ties)."""
    kind = index % 4
    if kind == 0:
        return rng.normal(0.0, 1.0, rows)
    if kind == 1:
        return rng.lognormal(3.0, 0.7, rows)
    if kind == 2:
        return rng.gamma(2.0, 2.0, rows)
    return np.round(rng.uniform(0, 1000, rows), 1)


def make_table(rows: int, *, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(N_NUMERICAL):
        x = numeric_shape(rng, i, rows)
        if shift and i in (0, 5):
            x = x + 0.25 * x.std()
        x[rng.random(rows) < 0.01] = np.nan
        cols[f"num_{i:02d}"] = x
    for j in range(N_CATEGORICAL):
        k = [3, 5, 8, 12, 30, 100][j]
        p = rng.dirichlet(np.ones(k) * 2)
        if shift and j == 2:
            p = np.roll(p, 1)
        labels = np.array([f"c{j}_{v}" for v in range(k)])
        cols[f"cat_{j}"] = pd.Categorical(labels[rng.choice(k, rows, p=p)], categories=labels)
    return pd.DataFrame(cols)
