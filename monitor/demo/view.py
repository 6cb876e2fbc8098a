"""The live terminal view and the closing summary: pure functions of what was read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from monitor.demo.observe import Snapshot
from monitor.demo.scenario import MODEL, Scenario

PERFORMANCE_SHOWN = ("roc_auc", "accuracy", "log_loss")


@dataclass(frozen=True)
class Traffic:
    """The replay's counters at one moment."""

    rows_total: int
    rows_sent: int
    requests: int
    failed: int
    by_protocol: Mapping[str, int]
    labels_sent: int
    phase: str
    done: bool


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def traffic_panel(traffic: Traffic, snap: Snapshot) -> RenderableType:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    phases = {"normal": "January-March flights (the model's season)", "drift": "July flights (summer delays)"}
    phase = phases.get(traffic.phase, traffic.phase)
    table.add_row("stream", f"{traffic.rows_sent:,} / {traffic.rows_total:,} rows"
                  f"{'  (done)' if traffic.done else ''}   now: {phase}")
    protocols = ", ".join(f"{n:,} {p}" for p, n in traffic.by_protocol.items())
    failed = f", [red]{traffic.failed} failed[/red]" if traffic.failed else ""
    table.add_row("requests", f"{traffic.requests:,} through the collector ({protocols}){failed}")
    unparsed = f", [red]{snap.unparsed:,.0f} requests left out[/red]" if snap.unparsed else ""
    table.add_row("collector", f"{snap.captured:,.0f} events captured, {snap.delivered:,.0f} in Kafka, "
                  f"{snap.dropped:,.0f} dropped{unparsed}")
    table.add_row("serve", f"{snap.consumed:,.0f} events consumed; labels {traffic.labels_sent:,} posted, "
                  f"{snap.labels_joined:,.0f} joined")
    return Panel(table, title="traffic: model server <- collector -> Kafka -> driftline serve",
                 title_align="left")


def windows_panel(snap: Snapshot, scenario: Scenario) -> RenderableType:
    rows = Table(box=None, padding=(0, 1), show_edge=False)
    for name in ("window", "flights", "verdict", "drifted features", *PERFORMANCE_SHOWN):
        left = name in ("verdict", "drifted features", "flights")
        rows.add_column(name, justify="left" if left else "right")
    for index, body in enumerate(snap.windows):
        features = body.get("features", {})
        drifted = [name for name, f in features.items() if f.get("drift")]
        verdict = Text("DRIFT", style="bold red") if body.get("drift_detected") else Text("ok", style="green")
        perf = (body.get("performance") or {}).get("metrics", {})
        season = {"normal": "Jan-Mar", "drift": "July"}.get(scenario.window_phase(index), "Jan-Mar + July")
        rows.add_row(str(index + 1), season, verdict, ", ".join(drifted) or "-",
                     *(_fmt(perf.get(m)) for m in PERFORMANCE_SHOWN))
    done = len(snap.windows)
    bar = ProgressBar(total=1.0, completed=min(1.0, snap.window_fill), width=30)
    progress = Table.grid(padding=(0, 1))
    progress.add_row(f"window {done + 1}: {snap.window_rows:,}/{scenario.window:,} rows", bar,
                     f"drift streak {snap.streak:.0f} (alert at {scenario.consecutive_windows})")
    return Panel(Group(rows, progress), title=f"windows of {MODEL} ({scenario.window:,} rows each)",
                 title_align="left")


def features_panel(snap: Snapshot) -> RenderableType:
    if not snap.windows:
        return Panel(Text("waiting for the first window to close...", style="dim"),
                     title="per-feature drift, latest window", title_align="left")
    latest = snap.windows[-1]
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for name in ("feature", "test", "statistic", "p (adjusted)", "effect", "verdict"):
        table.add_column(name, justify="left" if name in ("feature", "test", "verdict") else "right")
    features: Mapping[str, Mapping[str, Any]] = latest.get("features", {})
    for name, f in sorted(features.items(), key=lambda kv: (not kv[1].get("drift"), kv[0])):
        verdict = Text("drift", style="bold red") if f.get("drift") else Text("ok", style="green")
        table.add_row(name, str(f.get("test", "")), _fmt(f.get("statistic")),
                      _fmt(f.get("p_value_adjusted")), _fmt(f.get("effect_size")), verdict)
    return Panel(table, title=f"per-feature drift, window {len(snap.windows)}", title_align="left")


def alerts_panel(snap: Snapshot, alerting: bool, missing: Sequence[str]) -> RenderableType:
    lines: list[RenderableType] = []
    if not alerting:
        lines.append(Text(f"{' and '.join(missing)} not installed: alert rules are not evaluated",
                          style="yellow"))
    elif not snap.alerts:
        lines.append(Text("Prometheus evaluates the rules every second: nothing pending yet", style="dim"))
    for alert in snap.alerts:
        labels = alert.get("labels", {})
        style = "bold red" if alert.get("state") == "firing" else "yellow"
        feature = f" feature={labels['feature']}" if labels.get("feature") else ""
        lines.append(Text(f"{alert.get('state', '?').upper():8} {labels.get('alertname', '?')}"
                          f"{feature} model={labels.get('model', '?')}", style=style))
    for action in snap.actions:
        outcome = str(action.get("outcome"))
        style = {"dry_run": "bold magenta", "acted": "bold red", "pending": "yellow"}.get(outcome, "dim")
        lines.append(Text(f"receiver: {decision_line(action)}", style=style))
    return Panel(Group(*lines), title="alerts -> Alertmanager -> driftline remediate", title_align="left")


def decision_line(action: Mapping[str, Any]) -> str:
    """One decision as a sentence, e.g. 'dry-run: would create Job retrain-... because ...'."""
    outcome = str(action.get("outcome"))
    alert, model = action.get("alert"), action.get("model")
    reason = str(action.get("reason", ""))
    if outcome == "dry_run":  # the receiver's own words: "dry-run: would create Job ... because ..."
        return reason if reason.startswith("dry-run") else f"dry-run: {reason}"
    return f"{outcome}: {action.get('action') or 'no action'} for {model}: {reason} (alert {alert})"


def live(traffic: Traffic, snap: Snapshot, scenario: Scenario, *, alerting: bool,
         missing: Sequence[str], elapsed: float) -> RenderableType:
    """The whole screen."""
    header = Text.assemble(("driftline demo", "bold"), f"  the whole loop, live  {elapsed:5.1f} s")
    return Group(header, traffic_panel(traffic, snap), windows_panel(snap, scenario), features_panel(snap),
                 alerts_panel(snap, alerting, missing))


def summary(snap: Snapshot, scenario: Scenario, *, alerting: bool, elapsed: float) -> str:
    """One paragraph: what happened."""
    windows = list(snap.windows)
    normal = [w for i, w in enumerate(windows) if scenario.window_phase(i) == "normal"]
    drift = [w for i, w in enumerate(windows) if scenario.window_phase(i) != "normal"]
    drifted = sorted({name for w in drift for name, f in w.get("features", {}).items() if f.get("drift")})
    parts = [f"In {elapsed:.0f} s the demo sent {snap.captured:,.0f} flights through the collector; "
             f"driftline serve evaluated {len(windows)} windows of {scenario.window:,}."]
    parts.append(f"{sum(1 for w in normal if not w.get('drift_detected'))} of {len(normal)} windows of "
                 f"January-March flights showed no drift; {sum(1 for w in drift if w.get('drift_detected'))} "
                 f"of {len(drift)} later windows drifted, on {', '.join(drifted) or 'no feature'}.")
    perf = dict(snap.performance)
    if perf:
        parts.append("Performance on the joined labels, latest window: "
                     + ", ".join(f"{m} {perf[m]:.3f}" for m in PERFORMANCE_SHOWN if m in perf) + ".")
    fired = sorted({str(a.get("labels", {}).get("alertname")) for a in snap.firing})
    if alerting:
        parts.append(f"Prometheus fired {', '.join(fired) or 'no alert'}" +
                     (f" after {scenario.consecutive_windows} drifted windows in a row." if fired else "."))
    decisions = snap.decisions("dry_run")
    if decisions:
        parts.append(f"The receiver decided: {decision_line(decisions[0])}.")
    elif alerting:
        parts.append("The receiver made no dry-run decision.")
    return " ".join(parts)
