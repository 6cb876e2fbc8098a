"""``driftline demo``: start the loop, replay the stream through it, show it live, stop it.

The run's files (the config, rules, each part's log, the Evidently report, a
``summary.json`` and an SVG of the last screen) stay in the run directory.
Every process the demo started is stopped when it ends, on Ctrl-C or SIGTERM,
and when one of them dies; the kernel stops them too if the demo is killed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.live import Live

from monitor.demo.client import Client, Unreachable
from monitor.demo.components import APT_HINT, SAMPLE, Launcher, Stack
from monitor.demo.observe import Observer, Snapshot
from monitor.demo.scenario import MODEL, Scenario
from monitor.demo.supervisor import RUN_MARKER, Supervisor
from monitor.demo.traffic import Replay, load_stream
from monitor.demo.view import Traffic, decision_line, live, summary

REFRESH_S = 0.5
STREAM_SLACK_S = 120.0  # beyond the paced stream's own length, before the demo gives up on it
MAX_FAILED = 20  # failed requests (and over 5% of them) that end the demo
SVG_WIDTH = 116


@dataclass(frozen=True)
class Options:
    fast: bool = False
    keep_running: bool = False
    kafka: str | None = None
    out: Path | None = None
    inject: str = "none"


@dataclass(frozen=True)
class Result:
    """How the run ended; ``ok`` when the loop closed (drift found; alert and decision if alerting)."""

    ok: bool
    problem: str
    run_dir: Path
    snapshot: Snapshot


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt, even where SIGINT was ignored (``cmd &``)."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _traffic(replay: Replay) -> Traffic:
    c = replay.counters
    with c.lock:
        return Traffic(rows_total=c.rows_total, rows_sent=c.rows_sent, requests=c.requests, failed=c.failed,
                       by_protocol=dict(c.by_protocol), labels_sent=c.labels_sent, phase=c.phase,
                       done=c.done)


class Demo:
    def __init__(self, options: Options, console: Console) -> None:
        self.options, self.console = options, console
        self.scenario = Scenario.fast(options.inject) if options.fast else Scenario.full(options.inject)
        self.run_dir = options.out or Path(tempfile.mkdtemp(prefix="driftline-demo-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # a marker given by the caller (tests) lets it find every process of this run
        self.marker = os.environ.get(RUN_MARKER) or uuid.uuid4().hex
        self.supervisor = Supervisor(self.run_dir, self.marker)
        self.started = time.monotonic()
        self._seen_windows = 0
        self._seen_alerts: set[str] = set()
        self._seen_actions: set[str] = set()
        self.timeline: dict[str, float] = {}  # seconds from the start to each first sighting

    def say(self, line: str) -> None:
        self.console.print(f"  {line}", highlight=False)

    def run(self) -> Result:
        with _signals_as_interrupt():
            try:
                return self._run()
            except KeyboardInterrupt:
                self.supervisor.stop_all()
                started = len(self.supervisor.children)
                self.console.print(f"driftline demo: interrupted; stopped the {started} processes it had "
                                   f"started (logs in {self.supervisor.logs})", highlight=False)
                raise
            finally:
                self.supervisor.stop_all()

    def _run(self) -> Result:
        self.console.print(f"[bold]driftline demo[/bold]: the whole loop on this machine "
                           f"(run directory {self.run_dir})", highlight=False)
        launcher = Launcher(self.supervisor, self.run_dir, self.scenario, kafka=self.options.kafka,
                            say=self.say)
        stack = launcher.start_all()
        self._mark("ready")
        alerting = not stack.missing
        if stack.missing:
            self.console.print(f"[yellow]{' and '.join(stack.missing)} not on PATH: alerts are not evaluated "
                               f"and the receiver gets none; install with: {APT_HINT}[/yellow]",
                               highlight=False)
        stream = load_stream(SAMPLE, self.scenario)
        replay = Replay(stream, self.scenario, stack.collector_url, stack.serve_url, tag=self.marker[:8])
        observer = Observer(collector_metrics=stack.collector_metrics_url, serve=stack.serve_url,
                            remediate=stack.remediate_url, prometheus=stack.prometheus_url)
        self.console.print(f"replaying {len(stream):,} flights through the collector: "
                           f"{self.scenario.normal_rows:,} of January-March, then "
                           f"{self.scenario.drift_rows:,} of July"
                           + (f" (injected drift: {self.scenario.inject})" if self.scenario.inject != "none"
                              else ""), highlight=False)
        try:
            replay.start()
            snap, problem = self._watch(replay, observer, alerting)
            self._final(stack, replay, snap, alerting)
            if self.options.keep_running and not problem:
                self._keep_running(stack)
        finally:
            replay.stop.set()
            observer.close()
            replay.join(5)
        return Result(ok=not problem, problem=problem, run_dir=self.run_dir, snapshot=snap)

    def _done(self, snap: Snapshot, replay: Replay, alerting: bool) -> bool:
        if not replay.counters.done:
            return False
        if alerting:
            return bool(snap.decisions("dry_run"))
        return len(snap.windows) >= self.scenario.windows

    def _watch(self, replay: Replay, observer: Observer, alerting: bool) -> tuple[Snapshot, str]:
        missing = [] if alerting else ["prometheus/alertmanager"]
        deadline: float | None = None
        rate = self.scenario.rows_per_second
        stream_budget = STREAM_SLACK_S + (replay.counters.rows_total / rate if rate > 0 else 0.0)
        stream_deadline = time.monotonic() + stream_budget
        snap = observer.read()

        def frame() -> Any:
            return live(_traffic(replay), snap, self.scenario, alerting=alerting, missing=missing,
                        elapsed=time.monotonic() - self.started)

        with Live(frame(), console=self.console, refresh_per_second=4, transient=False,
                  redirect_stdout=False, redirect_stderr=False) as screen:
            while True:
                self.supervisor.check()
                if replay.error is not None:
                    raise replay.error
                snap = observer.read()
                self._note_timeline(snap)
                if not self.console.is_terminal:
                    self._log_events(snap)
                screen.update(frame())
                if self._done(snap, replay, alerting):
                    break
                failing = self._failing(replay)
                if failing:
                    return snap, failing
                if replay.counters.done and deadline is None:
                    deadline = time.monotonic() + self.scenario.max_wait_s
                if deadline is not None and time.monotonic() > deadline:
                    what = ("no dry-run decision from the receiver" if alerting
                            else f"{len(snap.windows)} of {self.scenario.windows} windows evaluated")
                    return snap, f"{what} within {self.scenario.max_wait_s:g} s of the last request"
                if time.monotonic() > stream_deadline:
                    sent, total = replay.counters.rows_sent, replay.counters.rows_total
                    return snap, (f"the stream did not finish within {stream_budget:.0f} s "
                                  f"({sent:,} of {total:,} rows sent)")
                time.sleep(REFRESH_S)
        self._save_svg(frame())
        return snap, ""

    @staticmethod
    def _failing(replay: Replay) -> str:
        """A problem when many requests through the collector fail (the demo would never close)."""
        c = replay.counters
        with c.lock:
            if c.failed >= MAX_FAILED and c.failed > 0.05 * c.requests:
                return (f"{c.failed} of {c.requests} requests through the collector failed; "
                        f"last: {c.last_error}")
        return ""

    def _mark(self, event: str) -> None:
        self.timeline.setdefault(event, round(time.monotonic() - self.started, 2))

    def _note_timeline(self, snap: Snapshot) -> None:
        if snap.windows:
            self._mark("first_window")
        if any(w.get("drift_detected") for w in snap.windows):
            self._mark("first_drifted_window")
        if snap.firing:
            self._mark("alert_firing")
        if snap.decisions("dry_run"):
            self._mark("decision")

    def _log_events(self, snap: Snapshot) -> None:
        """Without a terminal (CI, a pipe), what changed, one line each."""
        for index in range(self._seen_windows, len(snap.windows)):
            body = snap.windows[index]
            drifted = [n for n, f in body.get("features", {}).items() if f.get("drift")]
            verdict = "DRIFT on " + ", ".join(drifted) if body.get("drift_detected") else "no drift"
            self.say(f"window {index + 1} ({self.scenario.window_phase(index)}): {verdict}")
        self._seen_windows = len(snap.windows)
        for alert in snap.firing:
            labels = alert.get("labels", {})
            key = f"{labels.get('alertname')}|{labels.get('feature', '')}"
            if key not in self._seen_alerts:
                self._seen_alerts.add(key)
                feature = f" (feature {labels['feature']})" if labels.get("feature") else ""
                self.say(f"alert firing: {labels.get('alertname')}{feature}")
        for action in snap.actions:
            if str(action.get("id")) + str(action.get("outcome")) not in self._seen_actions:
                self._seen_actions.add(str(action.get("id")) + str(action.get("outcome")))
                self.say(f"receiver: {decision_line(action)}")

    def _save_svg(self, renderable: Any) -> None:
        recorder = Console(record=True, width=SVG_WIDTH, file=io.StringIO(), force_terminal=True,
                           color_system="truecolor")
        recorder.print(renderable)
        recorder.save_svg(str(self.run_dir / "live-view.svg"), title="driftline demo")

    def _final(self, stack: Stack, replay: Replay, snap: Snapshot, alerting: bool) -> None:
        report = self.run_dir / "report.html"
        note = self._fetch_report(stack, report)
        self._mark("report")
        elapsed = time.monotonic() - self.started
        text = summary(snap, self.scenario, alerting=alerting, elapsed=elapsed)
        self.console.print()
        self.console.print(text, highlight=False)
        self.console.print()
        for label, where in (("report", note), ("metrics", f"{stack.serve_url}/metrics"),
                             ("drift API", f"{stack.serve_url}/models/{MODEL}/drift"),
                             ("Prometheus", stack.prometheus_url or "not started"),
                             ("actions", f"{stack.remediate_url}/actions"),
                             ("logs", str(self.supervisor.logs))):
            self.say(f"{label:11} {where}")
        outcome = {"model": MODEL, "elapsed_s": round(elapsed, 1), "alerting": alerting,
                   "windows": [{"drift_detected": w.get("drift_detected"),
                                "phase": self.scenario.window_phase(i),
                                "drifted": sorted(n for n, f in w.get("features", {}).items()
                                                  if f.get("drift")),
                                "performance": (w.get("performance") or {}).get("metrics", {})}
                               for i, w in enumerate(snap.windows)],
                   "alerts": [dict(a.get("labels", {}), state=a.get("state")) for a in snap.alerts],
                   "actions": [dict(a) for a in snap.actions], "performance": dict(snap.performance),
                   "requests": _traffic(replay).requests, "captured": snap.captured,
                   "unparsed_requests": snap.unparsed,
                   "report": str(report) if report.exists() else None, "summary": text,
                   "pids": self.supervisor.pids(), "timeline_s": self.timeline}
        (self.run_dir / "summary.json").write_text(json.dumps(outcome, indent=2, default=str) + "\n")

    def _fetch_report(self, stack: Stack, path: Path) -> str:
        client = Client(stack.serve_url, timeout=90)
        try:
            answer = client.get(f"/models/{MODEL}/report")
        except Unreachable as exc:
            return f"not written: {exc}"
        finally:
            client.close()
        if not answer.ok:
            return f"not written: HTTP {answer.status} {answer.text[:160]}"
        path.write_text(answer.text)
        return f"{path} (Evidently, the latest window against the reference)"

    def _keep_running(self, stack: Stack, sleep: Callable[[float], None] = time.sleep) -> None:
        self.console.print("\n[bold]--keep-running[/bold]: everything stays up; Ctrl-C stops it all.",
                           highlight=False)
        while True:
            self.supervisor.check()
            sleep(1.0)
