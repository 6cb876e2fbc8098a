"""How long the README's first command takes, and what the demo holds in memory (issue 14).

1. **The demo.**  ``driftline demo`` (the full scenario; ``--fast`` too) as a subprocess,
   ``--runs`` times.  Wall time to exit, and the timeline the demo records in its
   ``summary.json`` (parts ready, first window, first drifted window, alert firing, the
   receiver's decision, report written); the peak of the summed RSS of every process of
   the run (the demo and its children, found by their ``DRIFTLINE_DEMO_RUN`` marker),
   sampled every 0.2 s.  Target: under 120 s, exit 0.
2. **The install** (``--install``): a fresh venv and ``pip install -e '.[demo]'`` with an
   empty pip cache (``PIP_NO_CACHE_DIR=1``, as on a fresh machine), the way ``.ci/demo``
   runs it (``--no-compile``) side by side with pip's default (byte-compiling every module).
   Target for venv + install + demo: under 240 s.  apt (Prometheus, Alertmanager) is not
   included: time ``bash .ci/demo`` on a machine without them for that.

Run: ``python benchmarks/bench_demo.py [--runs 3] [--install]``; writes
benchmarks/results/demo-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
TARGET_DEMO_S, TARGET_FIRST_COMMAND_S = 120.0, 240.0


def _tree_rss(marker: str, root_pid: int) -> int:
    total = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.pid == root_pid or proc.environ().get("DRIFTLINE_DEMO_RUN") == marker:
                total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


def run_demo(*args: str) -> dict[str, Any]:
    marker = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        out = Path(tmp) / "run"
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "monitor.cli.main", "demo", "--out", str(out), *args],
                                cwd=ROOT, env={**os.environ, "DRIFTLINE_DEMO_RUN": marker},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(marker, proc.pid))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, stderr = proc.communicate(timeout=600)
        wall = time.monotonic() - started
        done.set()
        sampler.join()
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return {"args": list(args), "rc": proc.returncode, "wall_s": round(wall, 1), "peak_rss_mib": peak >> 20,
            "timeline_s": summary.get("timeline_s", {}), "windows": len(summary.get("windows", [])),
            "stderr": stderr[-500:]}


def time_install(no_compile: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        venv = Path(tmp) / "venv"
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        command = [str(venv / "bin" / "pip"), "install", "-q", *(["--no-compile"] if no_compile else []),
                   "-e", ".[demo]"]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        return round(time.monotonic() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--install", action="store_true", help="also time fresh installs (about 5 min)")
    options = parser.parse_args()
    if shutil.which("prometheus") is None:
        print("note: prometheus is not on PATH: the demo runs without alerts", file=sys.stderr)
    result: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "cpus": os.cpu_count(), "full": [], "fast": None, "install": None}
    for i in range(options.runs):
        run = run_demo()
        result["full"].append(run)
        print(f"demo run {i + 1}: rc {run['rc']}, {run['wall_s']} s, peak RSS {run['peak_rss_mib']} MiB, "
              f"timeline {run['timeline_s']}", flush=True)
    result["fast"] = run_demo("--fast")
    print(f"demo --fast: rc {result['fast']['rc']}, {result['fast']['wall_s']} s, "
          f"peak RSS {result['fast']['peak_rss_mib']} MiB", flush=True)
    median = statistics.median(r["wall_s"] for r in result["full"])
    print(f"\ndemo: median {median} s over {options.runs} runs; {median / TARGET_DEMO_S:.2f} of the "
          f"{TARGET_DEMO_S:.0f} s target; every run exited 0: {all(r['rc'] == 0 for r in result['full'])}")
    if options.install:
        ours, default = time_install(no_compile=True), time_install(no_compile=False)
        result["install"] = {"no_compile_s": ours, "pip_default_s": default}
        first = ours + median
        print(f"install (fresh venv, empty pip cache): --no-compile {ours} s, pip's default {default} s "
              f"({default / ours:.2f}x slower)")
        print(f"first command without apt: {first:.0f} s = {first / TARGET_FIRST_COMMAND_S:.2f} of the "
              f"{TARGET_FIRST_COMMAND_S:.0f} s target")
    out = ROOT / "benchmarks" / "results" / f"demo-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
