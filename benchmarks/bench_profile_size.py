"""Saved-profile size and speed: ``np.savez`` (the format kept) and
``np.savez_compressed`` side by side in one run, on the sample reference and a
100k x 20 table.

    python benchmarks/bench_profile_size.py [--repeat 7]

Prints, per data set, the source file's size, each format's profile size and the
best-of-N time to save (``dumps``) and to load (``loads``), and the ratios compressed/kept.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._data import make_table  # noqa: E402
from monitor.batch import tabular  # noqa: E402
from monitor.batch.check import build_profile, plan_from_config  # noqa: E402
from monitor.engine import profile_codec  # noqa: E402
from monitor.engine.profiles import Profile  # noqa: E402


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(name: str, profile: Profile, source_bytes: int, repeat: int) -> None:
    rows = {}
    for label, compress in (("savez (kept)", False), ("savez_compressed", True)):
        data = profile_codec.dumps(profile, compress=compress)
        save = best(lambda c=compress: profile_codec.dumps(profile, compress=c), repeat)
        load = best(lambda d=data: profile_codec.loads(d), repeat)
        rows[label] = (len(data), save, load)
    print(f"\n{name}: source {source_bytes / 2**20:.2f} MiB, {profile.rows} rows, "
          f"{len(profile.features)} features")
    for label, (size, save, load) in rows.items():
        print(f"  {label:<26} {size / 2**20:7.2f} MiB  save {save * 1e3:7.1f} ms  "
              f"load {load * 1e3:7.1f} ms")
    (b_size, b_save, b_load), (a_size, a_save, a_load) = rows.values()
    print(f"  {'compressed / kept':<26} {a_size / b_size:7.2f}x     save {a_save / b_save:6.2f}x    "
          f"load {a_load / b_load:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sample = ROOT / "sample_data"
    with tempfile.TemporaryDirectory() as tmp:
        csv = sample / "flights" / "reference.csv"
        plan = plan_from_config(str(sample / "driftline.yaml"), None)
        flights = build_profile(str(csv), plan, str(Path(tmp) / "f.dlprofile"), created_at="")
        measure("sample reference (flights/reference.csv, config)", flights, csv.stat().st_size,
                args.repeat)
        big = Path(tmp) / "table.csv"
        make_table(100_000, seed=1, shift=False).to_csv(big, index=False)
        profile, _ = tabular.profile_inferred(tabular.open_table(big))
        measure("100k x 20 table (benchmarks/_data.py make_table, as CSV)", profile,
                big.stat().st_size, args.repeat)


if __name__ == "__main__":
    main()
