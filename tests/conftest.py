"""Shared fixtures: small real and synthetic tables written to tmp files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261128)


def make_frame(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Three numerical, one discrete, two categorical and one boolean column."""
    return pd.DataFrame({
        "income": rng.lognormal(10 + shift, 0.5, n),
        "age": rng.normal(40 + 10 * shift, 10, n),
        "score": rng.uniform(0, 1, n),
        "children": rng.integers(0, 4, n),
        "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "channel": rng.choice(["web", "app", "branch"], n),
        "is_member": rng.random(n) < 0.3,
    })


@pytest.fixture
def tables(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    ref = make_frame(rng, 3000)
    same = make_frame(rng, 2000)
    shifted = make_frame(rng, 2000, shift=0.5)
    paths = {"ref": tmp_path / "ref.parquet", "same": tmp_path / "same.csv",
             "shifted": tmp_path / "shifted.parquet"}
    ref.to_parquet(paths["ref"])
    same.to_csv(paths["same"], index=False)
    shifted.to_parquet(paths["shifted"])
    return paths
