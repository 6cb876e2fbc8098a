"""``driftline``: the one console script.

Exit codes for ``check``: 0 no dataset drift, 1 dataset drift, 2 bad input or
usage (one line on stderr, never a traceback; set DRIFTLINE_DEBUG=1 for one).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from monitor.errors import DriftlineError

app = typer.Typer(
    name="driftline",
    help="Drift and performance monitoring for ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"driftline: error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


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


@app.command()
def check(
    current: Annotated[str, typer.Option("--current", "-c", help="CSV or Parquet")],
    reference: Annotated[str | None, typer.Option(
        "--reference", "-r",
        help="CSV, Parquet or saved profile (default: the model's reference in --config)")] = None,
    config: Annotated[str | None, typer.Option("--config", help="driftline YAML config")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model in the config")] = None,
    fmt: Annotated[OutputFormat | None, typer.Option(
        "--format", help="table (default on a terminal) or json (default otherwise)")] = None,
) -> None:
    """Batch drift check of CURRENT against REFERENCE. Exit 0 no drift, 1 drift, 2 error."""
    import threading

    from monitor import batch, render, tabular
    from monitor.stats import ks

    # a one-shot process: return freed memory rather than keep it for reuse
    # (runtime.tune_allocator is for the long-running service)
    tabular.release_memory_eagerly()
    # scipy.stats loads while the files are read and profiled
    threading.Thread(target=ks.preload, name="preload-scipy", daemon=True).start()
    if model is not None and config is None:
        raise _fail("--model needs --config")
    plan = batch.plan_from_config(config, model) if config else batch.ModelPlan("", None)
    reference = reference or plan.reference
    if reference is None:
        raise _fail("--reference is required (or a --config whose model names a reference)")
    out_format = fmt or (OutputFormat.table if sys.stdout.isatty() else OutputFormat.json)
    width = len(plan.features) if plan.features else 20
    with _Steps(sys.stderr.isatty() and _large(reference, current), 2 * width + 5) as step:
        result = batch.run_check(reference, current, plan, step=step, evaluated_at=_now())
    report = result.report
    if out_format is OutputFormat.json:
        extra: dict[str, object] = {"inferred_types": bool(result.inferred)}
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
    raise typer.Exit(EXIT_DRIFT if report.drift_detected else EXIT_OK)


@app.command()
def profile(
    reference: Annotated[str, typer.Option("--reference", "-r", help="CSV or Parquet")],
    out: Annotated[str, typer.Option("--out", "-o", help="where to write the profile")],
    config: Annotated[str | None, typer.Option("--config", help="driftline YAML config")] = None,
    model: Annotated[str | None, typer.Option("--model", help="model in the config")] = None,
) -> None:
    """Build and save a reference profile."""
    from monitor import batch, tabular

    tabular.release_memory_eagerly()
    if model is not None and config is None:
        raise _fail("--model needs --config")
    plan = batch.plan_from_config(config, model) if config else batch.ModelPlan("", None)
    width = len(plan.features) if plan.features else 20
    with _Steps(sys.stderr.isatty() and _large(reference), width + 3) as step:
        built = batch.build_profile(reference, plan, out, created_at=_now(), step=step)
    kinds: dict[str, int] = {}
    for f in built.features.values():
        kinds[f.type] = kinds.get(f.type, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    typer.echo(f"wrote {out}: {built.rows} rows, {len(built.features)} features ({summary}), "
               f"{Path(out).stat().st_size} bytes")


@app.command("validate-config")
def validate_config(
    path: Annotated[str, typer.Argument(help="driftline YAML config")],
) -> None:
    """Report every error in a config file, with file, key and line. Exit 0 or 2."""
    from monitor.config import format_issues, validate_file

    issues = validate_file(path)
    if issues:
        typer.echo(format_issues(issues), err=True)
        raise typer.Exit(EXIT_ERROR)
    typer.echo(f"{path}: ok")


@app.command()
def serve(
    config: Annotated[str, typer.Option("--config", help="driftline YAML config")],
    host: Annotated[str, typer.Option("--host", help="address the API listens on")] = "0.0.0.0",
    port: Annotated[int, typer.Option("--port", help="API port (/metrics, /healthz, ...)",
                                      min=0, max=65535)] = 8000,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning")] = "info",
) -> None:
    """The streaming monitor: consume predictions and labels from Kafka, evaluate
    windows, serve the API and /metrics. Stops cleanly on SIGTERM or Ctrl-C."""
    import logging
    import signal

    import uvicorn

    from monitor import runtime
    from monitor.api import create_app
    from monitor.export import make_registry
    from monitor.service import Service

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    runtime.tune_allocator()
    service = Service(config)
    app_ = create_app(service, make_registry(service.status))
    server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    service.start()
    watchdog_stop = _watch(service, server)
    # uvicorn takes SIGTERM/SIGINT while it runs, shuts down, then raises the
    # signal again under the handlers it found: make those a no-op, so that the
    # consumer checkpoints and leaves the group below instead of dying mid-way
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        watchdog_stop()
        service.stop()
    if service.failure is not None:
        raise _fail(f"the consumer stopped: {service.failure}")


def _watch(service: object, server: object) -> Callable[[], None]:
    """Stop the API when the consumer thread dies, so the pod restarts."""
    import threading

    done = threading.Event()

    def run() -> None:
        while not done.wait(0.5):
            if not getattr(service, "alive", True):
                server.should_exit = True  # type: ignore[attr-defined]
                return

    threading.Thread(target=run, name="driftline-watchdog", daemon=True).start()
    return done.set


@app.command()
def demo() -> None:
    """Drift check of the bundled sample data (the full streaming loop comes later)."""
    from monitor import batch, render

    root = Path(__file__).resolve().parent.parent / "sample_data"
    cur = root / "flights" / "current.parquet"
    cfg = root / "driftline.yaml"
    if not cur.exists():
        raise _fail(f"sample data not found at {root}; run the demo from a source checkout")
    typer.echo("driftline demo: New York flights of July 2013 against January-March 2013\n"
               f"  config:    {cfg}\n  current:   {cur}\n")
    plan = batch.plan_from_config(str(cfg), None)
    assert plan.reference is not None
    result = batch.run_check(plan.reference, str(cur), plan, evaluated_at=_now())
    render.print_table(result.report, sys.stdout,
                       render.performance_lines(result.performance, result.performance_note))
    verdict = "drift" if result.report.drift_detected else "no drift"
    typer.echo(f"\n`driftline check` would exit {EXIT_DRIFT if result.report.drift_detected else 0}"
               f" ({verdict}). Try: driftline check --config {cfg} --current {cur} --format json")


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure becomes one line on stderr and exit 2."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="driftline")
        # in this mode click returns typer.Exit's code instead of raising it
        return int(code) if isinstance(code, int) else EXIT_OK
    except DriftlineError as exc:
        typer.echo(f"driftline: error: {_one_line(exc)}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        typer.echo("driftline: interrupted", err=True)
        return 130
    except Exception as exc:  # never a traceback for the user
        return _click_failure(exc)


def _click_failure(exc: Exception) -> int:
    """Exit, Abort and usage errors of typer's click (bundled or not), else a bug."""
    kind = type(exc).__name__
    if kind == "Exit":
        return int(getattr(exc, "exit_code", EXIT_OK))
    if kind == "Abort":
        typer.echo("driftline: aborted", err=True)
        return EXIT_ERROR
    format_message = getattr(exc, "format_message", None)
    if callable(format_message):  # UsageError, NoSuchOption, BadParameter, ...
        if not str(format_message()).strip():  # no arguments at all: help was shown
            return EXIT_ERROR
        ctx = getattr(exc, "ctx", None)
        name = getattr(ctx, "info_name", None)
        where = f"driftline {name}" if name and name != "driftline" else "driftline"
        typer.echo(f"driftline: error: {format_message()} (see '{where} --help')", err=True)
        return EXIT_ERROR
    if os.environ.get("DRIFTLINE_DEBUG"):
        traceback.print_exc()
    typer.echo(f"driftline: internal error: {kind}: {_one_line(exc)} "
               "(set DRIFTLINE_DEBUG=1 for a traceback)", err=True)
    return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    issues = getattr(exc, "issues", None)
    if issues:
        return "; ".join(str(i) for i in issues)
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
