"""Shared fixtures: small real and synthetic tables written to tmp files, and real servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.servers import Broker, Prometheus, ServerMissing, start_broker, start_prometheus

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


# --- real servers (tests/servers.py) -------------------------------------------------------
# Required in CI: a missing binary makes these fixtures fail, never skip.


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One Tansu broker for the whole session.  Create your own uniquely named topics
    (``broker.create_topics([f"t-{uuid4().hex}"])``); never kill this one: tests that crash
    a broker start their own with ``start_broker(tmp_path)``."""
    try:
        started = start_broker(tmp_path_factory.mktemp("tansu"))
    except ServerMissing as e:
        pytest.fail(str(e), pytrace=False)
    with started:
        yield started


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """``prometheus_factory(targets, scrape_interval="1s", **kwargs) -> Prometheus`` (started);
    every Prometheus it started is stopped after the test."""
    started: list[Prometheus] = []

    def factory(targets: Sequence[str], scrape_interval: str = "1s", **kwargs: Any) -> Prometheus:
        workdir = tmp_path / f"prometheus-{len(started)}"
        try:
            prom = start_prometheus(workdir, targets, scrape_interval, **kwargs)
        except ServerMissing as e:
            pytest.fail(str(e), pytrace=False)
        started.append(prom)
        return prom

    yield factory
    for prom in reversed(started):
        prom.stop()
