"""Issue 11: the CLI's rough edges (pipes, help texts, flags, JSON nulls, paths in configs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from monitor.cli.main import main
from tests.conftest import ROOT, SAMPLE

CONFIG = str(SAMPLE / "driftline.yaml")
NO_DRIFT = str(SAMPLE / "flights" / "current_nodrift.parquet")
DRIFT = str(SAMPLE / "flights" / "current.parquet")
DRIFTLINE = [sys.executable, "-m", "monitor.cli"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def check_with_stdout_closed(current: str, fmt: str) -> tuple[int, bytes]:
    """`driftline check` whose stdout's read end is closed before it writes a byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([*DRIFTLINE, "check", "--config", CONFIG, "-c", current, "--format", fmt],
                              stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


@pytest.mark.parametrize("fmt", ["table", "json"])
@pytest.mark.parametrize(("current", "verdict"), [(NO_DRIFT, 0), (DRIFT, 1)], ids=["no_drift", "drift"])
def test_a_closed_stdout_keeps_the_verdict_exit_code_and_stderr_quiet(current, verdict, fmt):
    code, err = check_with_stdout_closed(current, fmt)
    assert (code, err) == (verdict, b"")


@pytest.mark.parametrize(("current", "verdict"), [(NO_DRIFT, 0), (DRIFT, 1)], ids=["no_drift", "drift"])
def test_check_piped_into_head_exits_with_its_verdict(current, verdict):
    command = " ".join([*DRIFTLINE, "check", "--config", CONFIG, "-c", current, "--format", "table"])
    done = subprocess.run(["bash", "-c", f'{command} | head -1; echo "rc=${{PIPESTATUS[0]}}"'],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    first, status = done.stdout.splitlines()
    assert ("DRIFT DETECTED" in first) == bool(verdict)
    assert status == f"rc={verdict}" and done.stderr == ""
