"""``driftline demo``: the whole loop with the bundled sample; ``--batch``: the old batch check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.common import EXIT_DRIFT, EXIT_ERROR, fail, now
from monitor.errors import one_line


def demo(
    batch: Annotated[bool, typer.Option("--batch", help="only a batch check of two sample files")] = False,
    fast: Annotated[bool, typer.Option("--fast", help="fewer rows, no pacing (for tests)")] = False,
    keep_running: Annotated[bool, typer.Option(
        "--keep-running", help="leave every part running for exploring; Ctrl-C stops them")] = False,
    kafka: Annotated[str | None, typer.Option(
        "--kafka", help="use this Kafka (HOST:PORT) instead of the embedded Tansu broker; "
                        "topics get a run suffix")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="run directory (config, logs, report); default: a new temporary directory")] = None,
    inject: Annotated[str, typer.Option(
        "--inject", help="extra drift on top of July's: none, or unit-bug "
                         "(dep_delay sent in hours instead of minutes)")] = "none",
) -> None:
    """The whole loop on this machine: a torch model server with the collector in front, Kafka,
    driftline serve, Prometheus and Alertmanager (when installed) and driftline remediate in dry run.
    The bundled sample data, New York flights, is replayed through it: January-March, then July's
    drift, with labels arriving late; shown live. Exits 0 once the alert and the receiver's
    decision are seen."""
    if batch:
        _batch()
        return
    from monitor.demo.run import Demo, Options
    from monitor.demo.scenario import INJECTIONS

    if inject not in INJECTIONS:
        raise fail(f"--inject must be one of {', '.join(INJECTIONS)}; got {inject!r}")
    from rich.console import Console

    from monitor.demo.supervisor import ComponentDied

    try:
        result = Demo(Options(fast=fast, keep_running=keep_running, kafka=kafka, out=out, inject=inject),
                      Console()).run()
    except ComponentDied as exc:  # one line, then the last lines of the part's log
        typer.echo(f"driftline: error: {one_line(exc)}", err=True)
        for line in exc.log_tail.splitlines():
            typer.echo(f"  | {line}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if not result.ok:
        raise fail(f"the demo did not close the loop: {result.problem} (logs in {result.run_dir / 'logs'})")


def _batch() -> None:
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
