"""``driftline demo``: the bundled sample, end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from monitor.cli.common import EXIT_DRIFT, fail, now


def demo() -> None:
    """Drift check of the bundled sample data: New York flights, July against January-March 2013."""
    from monitor.batch import check as batch
    from monitor.batch import render

    root = Path(__file__).resolve().parents[2] / "sample_data"
    cur = root / "flights" / "current.parquet"
    cfg = root / "driftline.yaml"
    if not cur.exists():
        raise fail(f"sample data not found at {root}; run the demo from a source checkout")
    typer.echo("driftline demo: New York flights of July 2013 against January-March 2013\n"
               f"  config:    {cfg}\n  current:   {cur}\n")
    plan = batch.plan_from_config(str(cfg), None)
    assert plan.reference is not None
    result = batch.run_check(plan.reference, str(cur), plan, evaluated_at=now())
    render.print_table(result.report, sys.stdout,
                       render.performance_lines(result.performance, result.performance_note))
    verdict = "drift" if result.report.drift_detected else "no drift"
    typer.echo(f"\n`driftline check` would exit {EXIT_DRIFT if result.report.drift_detected else 0}"
               f" ({verdict}). Try: driftline check --config {cfg} --current {cur} --format json")
