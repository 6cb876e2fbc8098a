"""Presenting a DriftReport: JSON (the contract) and a rich table."""

from __future__ import annotations

import json
import math
from typing import IO, Any

from monitor.engine.analysis import DriftReport, FeatureDrift
from monitor.engine.performance.check import PerformanceResult


def report_json(report: DriftReport, extra: dict[str, Any] | None = None) -> str:
    body = report.to_dict()
    if extra:
        body.update(extra)
    return json.dumps(body, allow_nan=False, default=_default)


def _default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def performance_lines(result: PerformanceResult | None, note: str = "") -> list[str]:
    """Lines about model performance for the table output."""
    if result is None:
        return [note] if note else []
    shown = ", ".join(f"{k} {v:.3g}" for k, v in result.metrics.items())
    lines = [f"performance on {result.rows} labelled rows: {shown or 'no metric defined'}"]
    for v in result.violations:
        bound = f">= {v['min']:g}" if "min" in v else f"<= {v['max']:g}"
        lines.append(f"PERFORMANCE BELOW TARGET: {v['metric']} {v['value']:.3g} (wanted {bound})")
    for metric, why in result.undefined.items():
        lines.append(f"{metric} undefined: {why}")
    return lines


def short_reason(f: FeatureDrift) -> str:
    """A few words for the table; the JSON carries the full sentence."""
    parts = []
    for piece in f.reason.split("; "):
        if piece.startswith("adjusted p="):
            parts.append("significant and material")
        elif piece.startswith("significant"):
            parts.append(f"significant, below the {f.effect_measure} floor")
        elif piece.startswith("missing share"):
            parts.append("missing share changed")
        elif piece == "no drift":
            parts.append("")
        else:
            parts.append(piece)
    return "; ".join(p for p in parts if p)


_SHORT_TYPES = {"numerical": "num", "categorical": "cat", "boolean": "bool"}


def _table_width(console: Any, report: DriftReport) -> int:
    """Columns the bordered table needs with every cell on one line, and its "why" column
    at least 24 wide (it wraps by words)."""
    from rich.measure import Measurement
    from rich.table import Table

    table = Table()
    for col in ("feature", "type", "test", "statistic", "p (adj.)", "effect", "missing", "drift"):
        table.add_column(col, no_wrap=True)
    for f in report.features:
        table.add_row(f.name, f.type, f.test, _num(f.statistic), _num(f.p_value_adjusted),
                      f"{_num(f.effect_size)} {f.effect_measure}", "no", "yes")
    return Measurement.get(console, console.options.update_width(10_000), table).maximum + 3 + 24


def print_table(report: DriftReport, out: IO[str], notes: list[str] | None = None) -> None:
    from rich import box  # only the table needs rich
    from rich.console import Console
    from rich.table import Table

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich's default exits 1, which would read as "drift": let the caller decide
            self.quiet = True
            raise BrokenPipeError

    width = None if out.isatty() else 140
    console = _Console(file=out, highlight=False, soft_wrap=False, width=width)
    verdict = "[bold red]DRIFT DETECTED[/]" if report.drift_detected else "[bold green]no drift[/]"
    title = f"{report.model + ': ' if report.model else ''}{verdict}  "
    title += f"{report.drifted_features}/{report.total_features} features drifted "
    title += f"({report.drifted_share:.0%}); reference {report.rows_reference} rows, "
    title += f"current {report.rows_current} rows"
    console.print(title)
    # a terminal narrower than the full table (e.g. 80 columns): no borders, short type names,
    # header words whole, and the "why" of each feature below the table, wrapped by words
    narrow = console.width < _table_width(console, report)
    table = (Table(box=box.SIMPLE_HEAD, show_edge=False, padding=0, header_style="bold")
             if narrow else Table(show_lines=False, header_style="bold"))
    columns = ("feature", "type", "test", "statistic", "p (adj.)", "effect", "missing", "drift")
    for col in columns if narrow else (*columns, "why"):
        # narrow: every column wraps, as a last resort (the header words stay whole)
        table.add_column(col, overflow="fold", min_width=len(col), no_wrap=not narrow and col != "why")
    sep = "\n" if narrow else " "  # narrow: the effect's measure under its number
    why: list[tuple[str, str]] = []
    for f in report.features:
        reason = short_reason(f)
        if reason:
            why.append((f.name, reason))
        table.add_row(
            f.name,
            _SHORT_TYPES.get(f.type, f.type) if narrow else f.type,
            f.test,
            _num(f.statistic),
            _num(f.p_value_adjusted),
            (f"{_num(f.effect_size)}{sep}{f.effect_measure}" if f.effect_size is not None else "-"),
            _num(f.missing_share, ".1%"),
            "[red]yes[/]" if f.drift else "no",
            *(() if narrow else (reason,)),
        )
    console.print(table)
    if narrow and why:
        console.print("[bold]why[/]")
        for name, reason in why:
            console.print(f"  {name}: {reason}")
    if report.quality:
        q = Table(title="data quality", header_style="bold")
        for col in ("feature", "issue", "detail"):
            q.add_column(col, overflow="fold")
        for finding in report.quality:
            q.add_row(finding.feature, finding.issue, finding.detail)
        console.print(q)
    console.print(f"[dim]rule: {report.rule}[/]")
    for note in notes or []:
        console.print(f"[dim]{note}[/]")
