"""``driftline demo --fast`` end to end, as a newcomer runs it: a subprocess with real parts
(Tansu, the torch model server behind ``driftline collect``, ``driftline serve``,
Prometheus, Alertmanager, ``driftline remediate --no-cluster``), then its report in
headless Chromium.

What the data must produce is known independently: the July flights' departure delays are
longer (sample_data/README.md: KS 0.10 on the whole month, p ~ 1e-85), so ``dep_delay``
and the model's ``late_probability``, which follows it, drift in every July window, while
the January-March windows, from flights disjoint from the training sample, do not.

Every process the demo starts carries ``DRIFTLINE_DEMO_RUN=<marker>`` in its environment;
the tests look for that marker in the process table once the demo has exited.

Set ``DRIFTLINE_WRITE_PREVIEW=1`` to refresh the README's screenshot of the live view
(``sample_data/demo-live-view.svg``) from the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.browser import drift_row, nonblank_share, render, visible
from tests.servers import Broker

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "sample_data" / "demo-live-view.svg"
DEMO_TIMEOUT_S = 240
PANELS = ("traffic: model server <- collector -> Kafka -> driftline serve", "windows of flight-delay",
          "per-feature drift, window", "alerts -> Alertmanager -> driftline remediate")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path
    marker: str
    seconds: float

    @property
    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.run_dir / "summary.json").read_text())
        return result


def leftovers(marker: str) -> list[str]:
    """Processes that carry the run's marker (children the demo left behind)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("DRIFTLINE_DEMO_RUN") == marker:
                found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:160]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def start_demo(run_dir: Path, *args: str,
               env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    marker = uuid.uuid4().hex
    child_env = {**os.environ, "DRIFTLINE_DEMO_RUN": marker, "COLUMNS": "120", **(env or {})}
    command = [sys.executable, "-m", "monitor.cli.main", "demo", "--fast", "--out", str(run_dir), *args]
    proc = subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, marker


def finish(proc: subprocess.Popen[str], run_dir: Path, marker: str, started: float) -> Run:
    try:
        stdout, stderr = proc.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"the demo ran longer than {DEMO_TIMEOUT_S} s\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return Run(proc.returncode, stdout, stderr, run_dir, marker, time.monotonic() - started)


def run_demo(run_dir: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    started = time.monotonic()
    proc, marker = start_demo(run_dir, *args, env=env)
    return finish(proc, run_dir, marker, started)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: .ci/test installs it (apt-get install prometheus)")
    return run_demo(tmp_path_factory.mktemp("demo") / "run")


def test_the_fast_demo_exits_0_and_leaves_no_process_behind(demo: Run) -> None:
    assert demo.returncode == 0, f"{demo.stdout[-4000:]}\n{demo.stderr[-4000:]}"
    assert demo.stderr == ""
    time.sleep(0.5)  # children reaped: their stop was waited for, but give /proc a moment
    assert leftovers(demo.marker) == []
    pids = demo.summary["pids"]
    assert len(pids) == 7  # kafka, serve, model server, collector, remediate, alertmanager, prometheus
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_january_to_march_windows_do_not_drift_and_every_july_window_drifts_on_dep_delay(demo: Run) -> None:
    # every flight sent was captured (cancelled ones too: their missing delays are nulls)
    assert (demo.summary["captured"], demo.summary["unparsed_requests"]) == (4000, 0)
    windows = demo.summary["windows"]
    assert len(windows) == 4  # 1,000 January-March rows, then 3,000 of July, windows of 1,000
    normal = [w for w in windows if w["phase"] == "normal"]
    july = [w for w in windows if w["phase"] == "drift"]
    assert len(normal) == 1 and len(july) == 3
    assert [w["drift_detected"] for w in normal] == [False]
    assert [w["drift_detected"] for w in july] == [True, True, True]
    for window in july:
        assert {"dep_delay", "late_probability"} <= set(window["drifted"])
        assert not {"origin", "hour", "sched_dep_time"} & set(window["drifted"])  # schedules barely move


def test_labels_arrive_late_and_give_performance_of_a_model_that_knows_the_departure_delay(demo: Run) -> None:
    performance = demo.summary["performance"]
    # the model reads dep_delay: ROC AUC ~0.9 (sample_data/model/README.md), far above chance
    assert 0.8 < performance["roc_auc"] <= 1.0
    assert 0.8 < performance["accuracy"] <= 1.0
    # the first window closed before any label had been posted: no performance yet
    assert demo.summary["windows"][0]["performance"] == {}


def test_the_drift_alert_fires_and_the_receiver_decides_a_dry_run_retrain(demo: Run) -> None:
    firing = {(a["alertname"], a.get("feature")) for a in demo.summary["alerts"] if a["state"] == "firing"}
    assert ("DriftlineDatasetDrift", None) in firing
    assert ("DriftlineFeatureDrift", "dep_delay") in firing
    dry = [a for a in demo.summary["actions"] if a["outcome"] == "dry_run"]
    assert [(a["alert"], a["action"], a["model"]) for a in dry] == [
        ("DriftlineDatasetDrift", "retrain", "flight-delay")]
    assert dry[0]["reason"].startswith("dry-run: would create Job retrain-flight-delay-")
    assert "dep_delay" in dry[0]["reason"]
    # ... and the live view said so
    assert "receiver: dry-run: would create Job retrain-flight-delay-" in " ".join(demo.stdout.split())


def test_the_summary_names_the_report_metrics_prometheus_and_actions(demo: Run) -> None:
    text = " ".join(demo.stdout.split())
    for where in ("report.html", "/metrics", "/actions", "Prometheus http://127.0.0.1:"):
        assert where in text, where
    assert "In " in text and "drifted, on" in text and "DriftlineDatasetDrift" in text


def test_the_demo_report_renders_in_chromium_and_shows_dep_delay_drifted(demo: Run, tmp_path: Path) -> None:
    report = demo.run_dir / "report.html"
    assert report.is_file()
    dom = render(report, tmp_path / "report.png", timeout=90)
    assert nonblank_share(tmp_path / "report.png") > 0.10
    page = visible(dom)
    assert "Dataset Drift is detected" in " ".join("".join(page.text).split())
    row = drift_row(page, "dep_delay")
    assert "Detected" in row and "Not Detected" not in row


def test_the_readme_screenshot_of_the_live_view_shows_the_panels_the_demo_draws(demo: Run) -> None:
    svg = (demo.run_dir / "live-view.svg").read_text()
    if os.environ.get("DRIFTLINE_WRITE_PREVIEW"):
        SVG.write_text(svg)
    committed = SVG.read_text()
    for text in (*PANELS, "FIRING", "dry-run: would create Job retrain-flight-delay"):
        fragment = text.replace(" ", "&#160;").replace("<", "&lt;").replace(">", "&gt;").split("&#160;")[0]
        assert fragment in svg, text
        assert fragment in committed, f"{SVG} is stale: run DRIFTLINE_WRITE_PREVIEW=1 pytest {__file__}"


def test_without_prometheus_on_path_the_demo_says_so_in_one_line_and_runs_the_rest_on_a_given_kafka(
        tmp_path: Path, broker: Broker) -> None:
    run = run_demo(tmp_path / "run", "--kafka", broker.bootstrap, env={"PATH": str(tmp_path / "empty-bin")})
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    text = " ".join(run.stdout.split())
    assert ("prometheus and alertmanager not on PATH: alerts are not evaluated and the receiver gets none; "
            "install with: apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
            ) in text
    assert [w["drift_detected"] for w in run.summary["windows"]] == [False, True, True, True]
    assert run.summary["alerting"] is False and run.summary["actions"] == []
    assert leftovers(run.marker) == []
    # the given broker, with topics of this run only: no embedded Kafka was started
    assert f"kafka        {broker.bootstrap} (given by --kafka)" in run.stdout
    assert len(run.summary["pids"]) == 4  # serve, model server, collector, remediate
    with broker.admin() as admin:
        topics = set(admin.list_topics())
    assert {t for t in topics if t.startswith("driftline.predictions.demo-")}


def wait_for_log(run_dir: Path, name: str, text: str, proc: subprocess.Popen[str],
                 timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    log = run_dir / "logs" / f"{name}.log"
    while not (log.exists() and text in log.read_text(errors="replace")):
        assert proc.poll() is None, f"the demo exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{text!r} not in {log} after {timeout} s"
        time.sleep(0.2)


def child_pid(marker: str, needle: str) -> int:
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            mine = proc.environ().get("DRIFTLINE_DEMO_RUN") == marker
            if mine and needle in " ".join(proc.info["cmdline"]):
                return int(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    raise AssertionError(f"no process of the run matches {needle!r}")


def test_a_component_that_dies_is_named_in_one_line_with_its_log_and_everything_stops(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, marker = start_demo(tmp_path / "run")
    wait_for_log(tmp_path / "run", "remediate", "listening on", proc)
    os.kill(child_pid(marker, "monitor.cli.main serve"), signal.SIGKILL)
    run = finish(proc, tmp_path / "run", marker, started)
    assert run.returncode == 2
    first, *tail = run.stderr.splitlines()
    assert first.startswith("driftline: error: serve exited with status -9 while ")
    assert all(line.startswith("  | ") for line in tail)
    assert leftovers(marker) == []


def test_ctrl_c_while_starting_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, marker = start_demo(tmp_path / "run")
    wait_for_log(tmp_path / "run", "serve", "created topics", proc)
    proc.send_signal(signal.SIGINT)
    run = finish(proc, tmp_path / "run", marker, started)
    assert run.returncode == 130
    assert "driftline demo: interrupted; stopped the " in " ".join(run.stdout.split())
    assert leftovers(marker) == []


def test_keep_running_leaves_the_loop_up_until_ctrl_c_then_stops_it_all(tmp_path: Path) -> None:
    started = time.monotonic()
    proc, marker = start_demo(tmp_path / "run", "--keep-running")
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while not (tmp_path / "run" / "summary.json").exists():
        assert proc.poll() is None, f"the demo exited: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(3)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert proc.poll() is None  # still up after its summary
    alive = [pid for pid in summary["pids"] if psutil.pid_exists(pid)]
    assert len(alive) == 7
    proc.send_signal(signal.SIGINT)
    run = finish(proc, tmp_path / "run", marker, started)
    assert run.returncode == 130
    assert "--keep-running: everything stays up; Ctrl-C stops it all." in " ".join(run.stdout.split())
    assert leftovers(marker) == []
