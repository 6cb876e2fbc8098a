"""Two commits side by side, in one run: the engine, serve's in-process path and the collector.

Each commit is checked out into its own temporary worktree (its C kernel built in place)
and each benchmark runs from there with ``PYTHONPATH`` pointing at it, so every process a
benchmark starts (``python -m monitor.cli ...``) runs that commit's code.  Benchmarks that
start the ``driftline`` script next to ``sys.executable`` get one per side: a symlinked
copy of this virtualenv whose ``driftline`` runs ``python -m monitor.cli``, which both
layouts answer.  The two commits
alternate within every round (before, after; then after, before), so a drift in the
machine's speed during the run hits both sides alike.  Every figure is the median over the
rounds; the ratio is after / before, oriented so that a ratio above 1 is always better.

Benchmarks (each commit's own copy of the script):

* ``bench_engine.py --no-evidently``: in-process check, one window against a saved profile,
  ``driftline check`` end to end (wall and peak RSS);
* ``bench_serve.py --phase 1``: decode + window + evaluate on one pinned core, JSON and msgpack;
* ``bench_collect.py --phase 1,2``: collector-added latency at 500 requests/s and closed-loop
  throughput against direct (needs ``wrk`` and ``nginx-light``).

Usage: python benchmarks/compare_commits.py BEFORE AFTER [--rounds 2] [--collect-duration-s 15]
Output: the terminal and benchmarks/results/compare-<before>-<after>[-<benchmarks>-x<rounds>].txt/.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._report import lines, say, summary_table  # noqa: E402

#: (benchmark, measure, how to read it from the results JSON, higher is better)
Measure = tuple[str, str, Callable[[dict[str, Any]], float], bool]
MEASURES: list[Measure] = [
    ("engine", "in-process check, 100k x 20 (s)", lambda r: r["driftline_s"], False),
    ("engine", "window vs saved profile (s)", lambda r: r["window_vs_profile_s"], False),
    ("engine", "driftline check end to end (s)", lambda r: r["cli_wall_s"], False),
    ("engine", "driftline check peak RSS (MiB)", lambda r: r["cli_peak_rss_bytes"] / 2**20, False),
    ("serve", "phase 1 JSON (rows/s)", lambda r: r["throughput"]["json"]["rows_per_s"], True),
    ("serve", "phase 1 msgpack (rows/s)", lambda r: r["throughput"]["msgpack"]["rows_per_s"], True),
    ("collect", "collector-added p50 at 500/s (ms)", lambda r: r["latency"]["collector_added_p50"] * 1e3,
     False),
    ("collect", "collector-added p99 at 500/s (ms)", lambda r: r["latency"]["collector_added_p99"] * 1e3,
     False),
    ("collect", "closed-loop collector (req/s)", lambda r: r["throughput"]["runs"]["collector"]["rps"], True),
    ("collect", "closed-loop direct (req/s)", lambda r: r["throughput"]["runs"]["direct"]["rps"], True),
    ("collect", "collector / direct throughput", lambda r: r["throughput"]["ratio"], True),
]


def checkout(commit: str, where: Path) -> Path:
    """A detached worktree of ``commit`` with its C kernel built in place."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), commit],
                   check=True, timeout=120)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=where, check=True,
                   timeout=300, capture_output=True)
    return where


def interpreter(where: Path) -> Path:
    """A python of this virtualenv at ``where``/bin (its site-packages linked, not copied), with a
    ``driftline`` beside it that runs ``python -m monitor.cli`` from whatever PYTHONPATH says."""
    venv = Path(sys.prefix)
    (where / "bin").mkdir(parents=True)
    (where / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    for part in ("lib", "lib64", "include"):
        if (venv / part).exists():
            (where / part).symlink_to(venv / part)
    python = where / "bin" / "python"
    python.symlink_to(Path(sys.executable).resolve())
    script = where / "bin" / "driftline"
    script.write_text(f"#!{python}\nimport runpy, sys\nsys.argv[0] = 'driftline'\n"
                      "runpy.run_module('monitor.cli', run_name='__main__', alter_sys=True)\n")
    script.chmod(0o755)
    return python


def run_bench(tree: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one benchmark from ``tree``; its results JSON."""
    results = tree / "benchmarks" / "results"
    if name == "engine":
        argv = ["bench_engine.py", "--no-evidently"]
    elif name == "serve":
        argv = ["bench_serve.py", "--phase", "1"]
    else:
        argv = ["bench_collect.py", "--phase", "1,2", "--rounds", str(args.collect_rounds),
                "--duration-s", str(args.collect_duration_s), "--warmup-s", "3",
                "--max-duration-s", str(args.collect_duration_s)]
    started = time.time()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    python = tree.parent / f"{tree.name}-venv" / "bin" / "python"
    proc = subprocess.run([str(python), str(tree / "benchmarks" / argv[0]), *argv[1:]], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=args.timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"{name} at {tree.name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-3000:]}")
    pattern = {"engine": "bench_engine.json", "serve": "serve-*.json", "collect": "collect-*.json"}[name]
    fresh = [p for p in results.glob(pattern) if p.stat().st_mtime >= started]
    if not fresh:
        raise SystemExit(f"{name} at {tree.name} wrote no {pattern}")
    data: dict[str, Any] = json.loads(max(fresh, key=lambda p: p.stat().st_mtime).read_text())
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (before, after) per benchmark")
    parser.add_argument("--benchmarks", default="engine,serve,collect")
    parser.add_argument("--collect-rounds", type=int, default=2, help="bench_collect --rounds")
    parser.add_argument("--collect-duration-s", type=float, default=15.0,
                        help="bench_collect: seconds per measurement (phases 1 and 2)")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per benchmark run")
    args = parser.parse_args()
    names = args.benchmarks.split(",")
    shas = {side: subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit], check=True,
                                 capture_output=True, text=True).stdout.strip()
            for side, commit in (("before", args.before), ("after", args.after))}
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        trees = {side: checkout(shas[side], Path(tmp) / side) for side in ("before", "after")}
        for side in trees:
            interpreter(Path(tmp) / f"{side}-venv")
        try:
            raw: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"before": [], "after": []} for n in names}
            for name in names:
                for round_ in range(args.rounds):
                    order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
                    for side in order:
                        t0 = time.monotonic()
                        raw[name][side].append(run_bench(trees[side], name, args))
                        say(f"{name} round {round_ + 1} {side} ({shas[side]}): {time.monotonic() - t0:.0f} s")
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               check=False, timeout=60)
    rows = []
    table: list[dict[str, Any]] = []
    for name, measure, read, higher_better in MEASURES:
        if name not in raw:
            continue
        b = statistics.median(read(r) for r in raw[name]["before"])
        a = statistics.median(read(r) for r in raw[name]["after"])
        ratio = (a / b if higher_better else b / a) if a and b else float("nan")
        rows.append((name, measure, f"{b:.4g}", f"{a:.4g}", f"{ratio:.3f}"))
        table.append({"benchmark": name, "measure": measure, "before": b, "after": a,
                      "ratio_better_above_1": ratio})
    say(f"before {shas['before']}, after {shas['after']}; medians of {args.rounds} rounds; "
        "ratio > 1 means the after commit is better")
    summary_table(("benchmark", "measure", "before", "after", "ratio"), rows)
    out = ROOT / "benchmarks" / "results"
    tag = f"compare-{shas['before']}-{shas['after']}"
    if names != ["engine", "serve", "collect"]:  # a partial run does not overwrite a full one
        tag += "-" + "-".join(names) + f"-x{args.rounds}"
    (out / f"{tag}.txt").write_text("\n".join(lines) + "\n")
    (out / f"{tag}.json").write_text(json.dumps({"shas": shas, "args": vars(args), "table": table,
                                                 "raw": raw}, indent=2, default=str))


if __name__ == "__main__":
    main()
