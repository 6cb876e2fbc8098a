"""Speed and memory of the drift engine against Evidently and a scipy loop.

One run, side by side, on the same 100k x 20 tables (14 numerical with 1%
missing, 6 categorical; seeded, see _data.py):

1. in process, DataFrames already loaded: driftline (profile both sides +
   analysis) vs Evidently's DataDriftPreset vs a scipy per-column loop
   (ks_2samp per numerical column, chi2_contingency per categorical one);
2. one 100k x 20 window against a saved profile (target <= 100 ms);
3. ``driftline check`` end to end from Parquet, process start included
   (target <= 2 s), and its peak RSS against the input size (target <= 3x).

Usage: python benchmarks/bench_engine.py [--rows 100000] [--no-evidently]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._data import make_table  # noqa: E402
from monitor.batch import profile_io  # noqa: E402
from monitor.batch.tabular import profile_frame  # noqa: E402
from monitor.engine.analysis import FeatureSpec, analyze  # noqa: E402
from monitor.engine.profiles import ProfileSettings  # noqa: E402
from monitor.runtime import tune_allocator  # noqa: E402

EXE = Path(sys.executable).parent / "driftline"


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def scipy_loop(ref: pd.DataFrame, cur: pd.DataFrame, types: dict[str, str]) -> dict[str, float]:
    out = {}
    for name, kind in types.items():
        if kind == "numerical":
            out[name] = stats.ks_2samp(ref[name].dropna(), cur[name].dropna()).pvalue
        else:
            a = ref[name].value_counts()
            b = cur[name].value_counts().reindex(a.index, fill_value=0)
            table = np.array([a.to_numpy(), b.to_numpy()])
            table = table[:, table.sum(axis=0) > 0]
            out[name] = stats.chi2_contingency(table, correction=False)[1]
    return out


def evidently_run(ref: pd.DataFrame, cur: pd.DataFrame, types: dict[str, str]) -> object:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c, t in types.items() if t == "numerical"],
        categorical_columns=[c for c, t in types.items() if t != "numerical"],
    )
    report = Report([DataDriftPreset()])
    return report.run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )


SPAWN = Path(__file__).resolve().parent / "_spawn.py"


def spawn(argv: list[str]) -> dict[str, float]:
    """Wall seconds, exit code and peak RSS of one process (see _spawn.py)."""
    out = subprocess.run([sys.executable, str(SPAWN), *argv], capture_output=True, text=True,
                         check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def run_cli(args: list[str]) -> tuple[float, int, int]:
    r = spawn([str(EXE), *args])
    return r["wall_s"], int(r["exit_code"]), int(r["max_rss_bytes"])


def baseline_rss(tiny: Path) -> int:
    """Peak RSS of a process that imports what ``check`` imports and reads a
    one-row Parquet file: the fixed cost (interpreter, libraries, their code
    pages) that does not grow with the input."""
    code = ("import sys, monitor.cli.main, monitor.batch.check, monitor.engine.analysis, "
            "monitor.batch.render; "
            "from monitor.engine.stats import ks; ks.preload(); "
            "from monitor.batch.tabular import open_table, release_memory_eagerly; "
            "release_memory_eagerly(); t = open_table(sys.argv[1]); "
            "[t.column(c) for c in t.columns]")
    return int(spawn([sys.executable, "-c", code, str(tiny)])["max_rss_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--default-allocator", action="store_true",
                        help="skip driftline's allocator tuning (for driftline and baselines)")
    args = parser.parse_args()
    if not args.default_allocator:
        tune_allocator()
    print("allocator:", "glibc defaults" if args.default_allocator else
          "tuned by monitor.runtime.tune_allocator (applies to every tool in this process)")
    ref = make_table(args.rows, seed=1, shift=False)
    cur = make_table(args.rows, seed=2, shift=True)
    types = {c: ("numerical" if c.startswith("num") else "categorical") for c in ref}
    specs = [FeatureSpec(n, t) for n, t in types.items()]  # type: ignore[arg-type]
    exact = ProfileSettings(exact_cap=None)
    results: dict[str, float] = {}

    def driftline() -> object:
        r = profile_frame(ref, types)  # type: ignore[arg-type]
        c = profile_frame(cur, types, settings=exact)  # type: ignore[arg-type]
        return analyze(r, c, specs)

    print(f"data: {args.rows} rows x {len(types)} columns per side, "
          f"{(ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()) / 2**20:.1f} MiB "
          "in memory (both sides)")
    results["driftline_s"] = best_of(driftline, 7)
    results["scipy_loop_s"] = best_of(lambda: scipy_loop(ref, cur, types), 3)
    print(f"driftline analysis (DataFrames in memory): {results['driftline_s'] * 1e3:8.1f} ms")
    print(f"scipy per-column loop:                      {results['scipy_loop_s'] * 1e3:8.1f} ms  "
          f"-> driftline {results['scipy_loop_s'] / results['driftline_s']:.1f}x faster "
          "(target >= 10x)")
    if not args.no_evidently:
        results["evidently_s"] = best_of(lambda: evidently_run(ref, cur, types), 1)
        print(f"Evidently DataDriftPreset:                  {results['evidently_s'] * 1e3:8.1f} ms  "
              f"-> driftline {results['evidently_s'] / results['driftline_s']:.0f}x faster "
              "(target >= 100x)")

    with tempfile.TemporaryDirectory() as tmp:
        prof_path = Path(tmp) / "ref.dlprofile"
        profile_io.save(profile_frame(ref, types), prof_path)  # type: ignore[arg-type]
        saved = profile_io.load(prof_path)

        def window() -> object:
            c = profile_frame(cur, types, settings=exact)  # type: ignore[arg-type]
            return analyze(saved, c, specs)

        def window_with_load() -> object:
            p = profile_io.load(prof_path)
            c = profile_frame(cur, types, settings=exact)  # type: ignore[arg-type]
            return analyze(p, c, specs)

        results["window_vs_profile_s"] = best_of(window, 7)
        results["window_vs_profile_with_load_s"] = best_of(window_with_load, 7)
        results["profile_bytes"] = prof_path.stat().st_size
        print(f"one {args.rows}-row window vs a saved profile: "
              f"{results['window_vs_profile_s'] * 1e3:.1f} ms "
              f"({results['window_vs_profile_with_load_s'] * 1e3:.1f} ms including loading the "
              f"{results['profile_bytes'] / 2**20:.1f} MiB profile) (target <= 100 ms)")

        ref_pq, cur_pq = Path(tmp) / "ref.parquet", Path(tmp) / "cur.parquet"
        ref.to_parquet(ref_pq)
        cur.to_parquet(cur_pq)
        argv = ["check", "--reference", str(ref_pq), "--current", str(cur_pq), "--format", "json"]
        runs = [run_cli(argv) for _ in range(5)]
        codes = {code for _, code, _ in runs}
        wall = statistics.median(w for w, _, _ in runs)
        peak = max(rss for _, _, rss in runs)
        tiny = Path(tmp) / "tiny.parquet"
        ref.head(1).to_parquet(tiny)
        base = baseline_rss(tiny)
        # input size: the two tables as numpy/pandas hold them in memory
        data_bytes = int(ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum())
        results.update(cli_wall_s=wall, cli_peak_rss_bytes=peak, baseline_rss_bytes=base,
                       input_bytes=data_bytes, parquet_bytes=ref_pq.stat().st_size
                       + cur_pq.stat().st_size)
        print(f"driftline check end to end (median of 5, exit codes {sorted(codes)}): "
              f"{wall:.2f} s (target <= 2 s)")
        print(f"peak RSS {peak / 2**20:.0f} MiB; fixed cost (interpreter, imports, a 1-row file) "
              f"{base / 2**20:.0f} MiB; "
              f"input {data_bytes / 2**20:.1f} MiB in memory "
              f"({results['parquet_bytes'] / 2**20:.1f} MiB Parquet)")
        print(f"  peak / input = {peak / data_bytes:.1f}x; (peak - baseline) / input = "
              f"{(peak - base) / data_bytes:.1f}x (target <= 3x)")
    name = "bench_engine_default_allocator.json" if args.default_allocator else "bench_engine.json"
    out = Path(__file__).resolve().parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
