"""``driftline``: the one console script.  Each command group lives in its own module
(check, serve, collect, k8s, demo); this module assembles them and maps every failure once.

Exit codes for ``check``: 0 no dataset drift, 1 dataset drift, 2 bad input or
usage (one line on stderr, never a traceback; set DRIFTLINE_DEBUG=1 for one).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from typer.exceptions import TyperException

from monitor.cli import check, collect, demo, k8s, serve
from monitor.cli.common import EXIT_ERROR, EXIT_OK, silence_stdout
from monitor.errors import DriftlineError, one_line

app = typer.Typer(
    name="driftline",
    help="Drift and performance monitoring for ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(check.check)
app.command()(check.profile)
app.command("validate-config")(check.validate_config)
app.command()(serve.serve)
app.command()(collect.collect)
app.command()(k8s.with_collector_options(k8s.inject))
app.command()(k8s.with_collector_options(k8s.webhook))
app.command()(demo.demo)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure becomes one line on stderr and exit 2."""
    try:
        code = app(args=argv, standalone_mode=False, prog_name="driftline")
        # in this mode click returns typer.Exit's code instead of raising it
        return int(code) if isinstance(code, int) else EXIT_OK
    except DriftlineError as exc:
        typer.echo(f"driftline: error: {one_line(exc)}", err=True)
        return EXIT_ERROR
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("driftline: aborted", err=True)
        return EXIT_ERROR
    except TyperException as exc:  # click's UsageError, NoSuchOption, BadParameter, ...
        return _usage_error(exc)
    except BrokenPipeError:  # stdout's reader left (`| head`); check keeps its verdict itself
        silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        typer.echo("driftline: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug: still one line, never a traceback for the user
        if os.environ.get("DRIFTLINE_DEBUG"):
            traceback.print_exc()
        typer.echo(f"driftline: internal error: {type(exc).__name__}: {one_line(exc)} "
                   "(set DRIFTLINE_DEBUG=1 for a traceback)", err=True)
        return EXIT_ERROR


def _usage_error(exc: TyperException) -> int:
    message = exc.format_message()
    if not message.strip():  # no arguments at all: help was shown
        return EXIT_ERROR
    name = getattr(getattr(exc, "ctx", None), "info_name", None)
    where = f"driftline {name}" if name and name != "driftline" else "driftline"
    typer.echo(f"driftline: error: {message} (see '{where} --help')", err=True)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
