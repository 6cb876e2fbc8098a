"""``driftline``: the one console script.  Each command group lives in its own module
(check, serve, collect, k8s, demo); this module assembles them and maps every failure once.

Exit codes for ``check``: 0 no dataset drift, 1 dataset drift, 2 bad input or
usage (one line on stderr, never a traceback; set DRIFTLINE_DEBUG=1 for one).
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Annotated

import typer
from typer._click.core import Command, Context  # typer's bundled click
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.exceptions import TyperException

from monitor import __version__
from monitor.cli import check, collect, demo, k8s, remediate, serve
from monitor.cli import dashboards as dashboards_command
from monitor.cli import init as init_command
from monitor.cli import rules as rules_command
from monitor.cli.common import EXIT_ERROR, EXIT_OK, silence_stdout
from monitor.errors import DriftlineError, one_line

app = typer.Typer(
    name="driftline",
    help="Drift and performance monitoring for ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: one option a line, help text wrapped by words (env var names and
    # flags stay whole at 80 columns), where rich's boxed table cut them off with "…"
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"driftline {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass
app.command()(check.check)
app.command()(check.profile)
app.command("validate-config")(check.validate_config)
app.command()(init_command.init)
app.command()(serve.serve)
app.command()(collect.collect)
app.command()(k8s.with_collector_options(k8s.inject))
app.command()(k8s.with_collector_options(k8s.webhook))
app.command()(demo.demo)
app.command()(rules_command.rules)
app.command()(remediate.remediate)
app.add_typer(dashboards_command.app, name="dashboards")

# What every command shares, applied here once rather than in each command's module
_METAVARS = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "NUMBER",
             "float range": "NUMBER", "path": "PATH"}


def _command() -> Command:
    """The click command behind ``app``, made consistent: descriptions are paragraphs (a
    docstring's line breaks are only its source's wrapping), every option's value has a
    word for a placeholder (typer would show ``<str>``, ``<int range>``), and every
    ``--config`` also takes ``-C`` (``-c`` is ``--current``)."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    ctx = Context(group)
    for command in [group, *group.commands.values()]:
        if command.help:
            command.help = _paragraphs(command.help)
        for param in command.params:
            if isinstance(param, TyperArgument):  # its metavar names it already: no "<str>"
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            if not isinstance(param, TyperOption) or param.is_flag or param.count:
                continue
            if param.metavar is None:
                shown = param.display_type(ctx).strip("<>")
                param.metavar = _METAVARS.get(shown, f"[{shown}]" if "|" in shown else shown.upper())
            if "--config" in param.opts and "-C" not in param.opts:
                param.opts.append("-C")
    return group


def _paragraphs(text: str) -> str:
    """A docstring as paragraphs: single line breaks become spaces."""
    import inspect

    return re.sub(r"(?<!\n)\n(?!\n)", " ", inspect.cleandoc(text))


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure becomes one line on stderr and exit 2."""
    try:
        code = _command().main(args=argv, standalone_mode=False, prog_name="driftline")
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
    if isinstance(exc, NoArgsIsHelpError):  # no arguments at all: the help, and exit 2
        exc.show()
        return EXIT_ERROR
    message = exc.format_message()
    if not message.strip():
        return EXIT_ERROR
    name = getattr(getattr(exc, "ctx", None), "info_name", None)
    where = f"driftline {name}" if name and name != "driftline" else "driftline"
    typer.echo(f"driftline: error: {message} (see '{where} --help')", err=True)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
