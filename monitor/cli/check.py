"""``driftline check``, ``profile`` and ``validate-config``: the batch commands."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from monitor.cli.common import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, fail, now, reader_may_leave

if TYPE_CHECKING:  # the batch stack loads when a command runs
    from monitor.batch.check import ModelPlan


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


class _Steps:
    """A progress bar on stderr (only for a terminal): one tick per step or feature."""

    def __init__(self, enabled: bool, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total = total
        if enabled:
            self._progress = Progress(TextColumn("{task.description:<24}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True)

    def __enter__(self) -> _Steps:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self._total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, description: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description[:24], advance=1)


def _large(*paths: str) -> bool:
    """Inputs big enough to deserve a progress bar (20 MB; DRIFTLINE_PROGRESS_MIN_BYTES)."""
    threshold = os.environ.get("DRIFTLINE_PROGRESS_MIN_BYTES", "")
    limit = int(threshold) if threshold.isdigit() else 20 << 20
    total = 0
    for p in paths:
        try:
            total += Path(p).stat().st_size
        except OSError:
            pass
    return total >= limit


ConfigOption = Annotated[str | None, typer.Option("--config", "-C", metavar="FILE",
                                                  help="driftline YAML config")]
ModelOption = Annotated[str | None, typer.Option("--model", metavar="NAME", help="model in the config")]


def _plan(config: str | None, model: str | None, reference: str | None) -> tuple[ModelPlan, str]:
    """The model's plan from the config (an empty one without), and the reference to use:
    the one given, else the one the config's model names; a one-line failure otherwise."""
    from monitor.batch import check as batch

    if model is not None and config is None:
        raise fail("--model needs --config")
    plan = batch.plan_from_config(config, model) if config else batch.ModelPlan("", None)
    reference = reference or plan.reference
    if reference is None:
        raise fail("--reference is required (or a --config whose model names a reference)")
    return plan, reference


def check(
    current: Annotated[str, typer.Option("--current", "-c", metavar="FILE", help="CSV or Parquet")],
    reference: Annotated[str | None, typer.Option(
        "--reference", "-r", metavar="FILE",
        help="CSV, Parquet or saved profile (default: the model's reference in --config)")] = None,
    config: ConfigOption = None,
    model: ModelOption = None,
    fmt: Annotated[OutputFormat | None, typer.Option(
        "--format", help="table (default on a terminal) or json (default otherwise)")] = None,
) -> None:
    """Batch drift check of CURRENT against REFERENCE. Exit 0 no drift, 1 drift, 2 error."""
    import threading

    from monitor.batch import check as batch
    from monitor.batch import render, tabular
    from monitor.engine.stats import ks

    # a one-shot process: return freed memory rather than keep it for reuse
    # (runtime.tune_allocator is for the long-running service)
    tabular.release_memory_eagerly()
    # scipy.stats loads while the files are read and profiled
    threading.Thread(target=ks.preload, name="preload-scipy", daemon=True).start()
    plan, reference = _plan(config, model, reference)
    out_format = fmt or (OutputFormat.table if sys.stdout.isatty() else OutputFormat.json)
    width = len(plan.features) if plan.features else 20
    with _Steps(sys.stderr.isatty() and _large(reference, current), 2 * width + 5) as step:
        result = batch.run_check(reference, current, plan, step=step, evaluated_at=now())
    report = result.report
    verdict = EXIT_DRIFT if report.drift_detected else EXIT_OK
    with reader_may_leave():  # `| head -1` must not change the verdict's exit code
        if out_format is OutputFormat.json:
            # no config, no model name: null rather than "" (body keeps the key's place)
            extra: dict[str, object] = {"model": report.model or None,
                                        "inferred_types": bool(result.inferred)}
            if result.skipped:
                extra["skipped_columns"] = result.skipped
            if result.performance is not None:
                extra["performance"] = result.performance.to_dict()
            elif result.performance_note:
                extra["performance"] = {"note": result.performance_note}
            typer.echo(render.report_json(report, extra))
        else:
            notes = []
            if result.inferred:
                notes.append("feature types inferred from the reference: " + ", ".join(
                    f"{f.name}={f.type}" for f in report.features))
            for column, why in result.skipped.items():
                notes.append(f"not monitored: {column} ({why})")
            notes.extend(render.performance_lines(result.performance, result.performance_note))
            render.print_table(report, sys.stdout, notes)
    raise typer.Exit(verdict)


def profile(
    out: Annotated[str, typer.Option("--out", "-o", metavar="FILE", help="where to write the profile")],
    reference: Annotated[str | None, typer.Option(
        "--reference", "-r", metavar="FILE",
        help="CSV or Parquet (default: the model's reference in --config)")] = None,
    config: ConfigOption = None,
    model: ModelOption = None,
) -> None:
    """Build and save a reference profile."""
    from monitor.batch import check as batch
    from monitor.batch import tabular

    tabular.release_memory_eagerly()
    plan, reference = _plan(config, model, reference)
    width = len(plan.features) if plan.features else 20
    with _Steps(sys.stderr.isatty() and _large(reference), width + 3) as step:
        built = batch.build_profile(reference, plan, out, created_at=now(), step=step)
    kinds: dict[str, int] = {}
    for f in built.features.values():
        kinds[f.type] = kinds.get(f.type, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    typer.echo(f"wrote {out}: {built.rows} rows, {len(built.features)} features ({summary}), "
               f"{Path(out).stat().st_size} bytes")


def validate_config(
    path: Annotated[str | None, typer.Argument(metavar="CONFIG", show_default=False,
                                               help="driftline YAML config")] = None,
    config: Annotated[str | None, typer.Option("--config", "-C", metavar="FILE",
                                               help="the same, as an option (like check's)")] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="do not check that the files the config names (reference, "
                          "job_template) exist and are readable")] = False,
) -> None:
    """Report every error in a config file, with file, key and line, including files it
    names that cannot be read. Exit 0 or 2."""
    from monitor.config import format_issues, validate_file

    if path is not None and config is not None and path != config:
        raise fail("give the config once: as an argument or as --config")
    path = path or config
    if path is None:
        raise fail("which config? driftline validate-config CONFIG (or --config CONFIG)")
    issues = validate_file(path, check_paths=not offline)
    if issues:
        typer.echo(format_issues(issues), err=True)
        raise typer.Exit(EXIT_ERROR)
    typer.echo(f"{path}: ok")
