"""How ``driftline`` maps every failure to one line on stderr and an exit code, by exception type."""

from __future__ import annotations

import pytest
import typer

from monitor.cli.main import main
from monitor.errors import InputError
from tests.conftest import SAMPLE

REF = str(SAMPLE / "flights" / "reference.parquet")
CUR = str(SAMPLE / "flights" / "current.parquet")


def fail_check_with(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    def run_check(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("monitor.batch.check.run_check", run_check)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_bug_in_a_command_is_one_internal_error_line_with_exit_2_and_no_traceback(monkeypatch, capsys):
    fail_check_with(monkeypatch, KeyError("delay_score"))
    code, out, err = run(["check", "-r", REF, "-c", CUR], capsys)
    assert code == 2 and out == ""
    assert err == ("driftline: internal error: KeyError: 'delay_score' "
                   "(set DRIFTLINE_DEBUG=1 for a traceback)\n")


def test_an_exception_merely_named_exit_is_a_bug_not_an_exit_code(monkeypatch, capsys):
    # click's exceptions were once recognised by class name: any class called Exit passed as one
    class Exit(Exception):
        exit_code = 0

    fail_check_with(monkeypatch, Exit("not typer's"))
    code, _, err = run(["check", "-r", REF, "-c", CUR], capsys)
    assert code == 2
    assert err.startswith("driftline: internal error: Exit: not typer's")


def test_typer_exit_raised_inside_a_command_gives_its_code(monkeypatch, capsys):
    fail_check_with(monkeypatch, typer.Exit(7))
    code, _, err = run(["check", "-r", REF, "-c", CUR], capsys)
    assert (code, err) == (7, "")


def test_an_abort_is_one_line_and_exit_2(monkeypatch, capsys):
    fail_check_with(monkeypatch, typer.Abort())
    code, _, err = run(["check", "-r", REF, "-c", CUR], capsys)
    assert (code, err) == (2, "driftline: aborted\n")


def test_a_driftline_error_is_its_message_on_one_line(monkeypatch, capsys):
    fail_check_with(monkeypatch, InputError("current.parquet: column 'dep_delay'\n  is text"))
    code, _, err = run(["check", "-r", REF, "-c", CUR], capsys)
    assert (code, err) == (2, "driftline: error: current.parquet: column 'dep_delay' is text\n")


def test_an_unknown_option_is_a_usage_error_naming_the_command_help(capsys):
    code, _, err = run(["check", "--no-such-flag"], capsys)
    assert code == 2
    assert err == "driftline: error: No such option: --no-such-flag (see 'driftline check --help')\n"


def test_an_unknown_command_is_a_usage_error_naming_the_top_level_help(capsys):
    code, _, err = run(["chekc"], capsys)
    assert code == 2
    assert err.startswith("driftline: error: No such command 'chekc'") and err.count("\n") == 1
    assert err.endswith("(see 'driftline --help')\n")


def test_no_arguments_shows_the_help_and_exits_2(capsys):
    code, out, err = run([], capsys)
    assert code == 2
    assert "Usage: driftline" in out + err and "driftline: error" not in err


def test_interrupting_a_command_exits_130_quietly(monkeypatch, capsys):
    # typer turns Ctrl-C inside a command into Exit(130); the terminal has shown ^C already
    fail_check_with(monkeypatch, KeyboardInterrupt())
    code, _, err = run(["check", "-r", REF, "-c", CUR], capsys)
    assert (code, err) == (130, "")
