"""Issue 11: the CLI's rough edges (pipes, help texts, flags, JSON nulls, paths in configs)."""

from __future__ import annotations

import json
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


def test_without_a_config_the_json_model_is_null_and_skipped_columns_name_why(tables, tmp_path, capsys):
    import pandas as pd

    frame = pd.read_parquet(tables["ref"])
    frame["id"] = [f"row-{i}" for i in range(len(frame))]
    ref = tmp_path / "with_id.parquet"
    frame.to_parquet(ref)
    code, out, err = run(["check", "-r", str(ref), "-c", str(ref), "--format", "json"], capsys)
    body = json.loads(out)
    assert code == 0, err
    assert body["model"] is None and next(iter(body)) == "model"
    assert list(body["skipped_columns"]) == ["id"] and "identifier" in body["skipped_columns"]["id"]


def test_the_readme_documents_every_top_level_key_of_the_check_json():
    readme = (ROOT / "README.md").read_text()
    for key in ("model", "inferred_types", "skipped_columns", "performance"):
        assert f"`{key}`" in readme or f'"{key}"' in readme
    assert "null without `--config`" in readme
