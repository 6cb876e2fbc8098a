"""Issue 11: the CLI's rough edges (pipes, help texts, flags, JSON nulls, paths in configs)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


COMMANDS = ["check", "profile", "validate-config", "init", "serve", "collect", "inject", "webhook", "demo"]


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            columns: int = 80) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run([*argv, "--help"], capsys)
    assert (code, err) == (0, ""), err
    return out


def description(help_text: str) -> list[str]:
    """The lines of the command's description: between the usage line and the first section."""
    lines = help_text.splitlines()
    end = next(i for i, line in enumerate(lines) if line.endswith(":") and not line.startswith(" "))
    return [line.strip() for line in lines[1:end] if line.strip()]


def test_config_is_also_dash_capital_c_in_every_command_that_takes_it_and_dash_c_stays_current(
        capsys, monkeypatch):
    for command in ("check", "profile", "serve", "validate-config"):
        assert "-C, --config" in help_of([command], capsys, monkeypatch), command
    assert "-c, --current" in help_of(["check"], capsys, monkeypatch)
    code, out, err = run(["check", "-C", CONFIG, "-c", NO_DRIFT, "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["model"] == "flight-delay", err


def test_validate_config_takes_the_config_as_an_argument_or_as_the_config_option(capsys):
    assert run(["validate-config", CONFIG], capsys) == (0, f"{CONFIG}: ok\n", "")
    assert run(["validate-config", "--config", CONFIG], capsys) == (0, f"{CONFIG}: ok\n", "")
    assert run(["validate-config", "-C", CONFIG], capsys) == (0, f"{CONFIG}: ok\n", "")
    code, _, err = run(["validate-config"], capsys)
    assert code == 2 and err.startswith("driftline: error: which config?") and err.count("\n") == 1


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=["driftline", *COMMANDS])
def test_no_help_shows_a_type_placeholder_and_no_line_is_wider_than_80_columns(
        command, capsys, monkeypatch):
    text = help_of(command, capsys, monkeypatch)
    for placeholder in ("<str>", "<bool>", "<int", "<float", "range>", "<path>"):
        assert placeholder not in text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_description_is_wrapped_to_the_width_not_at_its_source_line_breaks(
        command, capsys, monkeypatch):
    lines = description(help_of([command], capsys, monkeypatch))
    width = 80 - 2 - 2  # click's formatter: the terminal less 2, the paragraph indented by 2
    for line, following in zip(lines, lines[1:], strict=False):
        # a break is stray when the next word would have fitted on the line
        assert len(line) + 1 + len(following.split()[0]) > width, (line, following)


def test_version_prints_the_package_version(capsys):
    from monitor import __version__

    assert run(["--version"], capsys) == (0, f"driftline {__version__}\n", "")
    assert __version__ == "0.1.0"


def test_the_demo_help_describes_what_it_does_not_what_comes_later(capsys, monkeypatch):
    text = " ".join(description(help_of(["demo"], capsys, monkeypatch)))
    assert "later" not in text and "sample data" in text


def test_collect_help_at_80_columns_shows_every_flag_and_env_var_name_whole(capsys, monkeypatch):
    from monitor.cli.main import _command

    collect = _command().commands["collect"]  # type: ignore[attr-defined]
    text = help_of(["collect"], capsys, monkeypatch)
    words = set(text.replace(";", " ").replace("]", " ").replace(",", " ").split())
    env_vars = [p.envvar for p in collect.params if p.envvar]
    assert len(env_vars) >= 20 and all(v.startswith("DRIFTLINE_") for v in env_vars)
    for name in env_vars:
        assert name in words, name
    for param in collect.params:
        for flag in param.opts + param.secondary_opts:
            assert flag in words, flag


def test_profile_takes_the_reference_from_the_config_like_check_does(tmp_path, capsys):
    from_config, explicit = tmp_path / "config.dlprofile", tmp_path / "explicit.dlprofile"
    code, out, err = run(["profile", "--config", CONFIG, "-o", str(from_config)], capsys)
    assert code == 0 and out.startswith(f"wrote {from_config}: 20000 rows"), err
    code, _, err = run(["profile", "-C", CONFIG, "-r", str(SAMPLE / "flights" / "reference.parquet"),
                        "-o", str(explicit)], capsys)
    assert code == 0, err
    checks = [run(["check", "-r", str(p), "-c", DRIFT, "-C", CONFIG, "--format", "json"], capsys)
              for p in (from_config, explicit)]
    bodies = [json.loads(out) for _, out, _ in checks]
    for body in bodies:
        del body["evaluated_at"]
    assert bodies[0] == bodies[1] and checks[0][0] == 1


def test_profile_without_a_reference_or_a_config_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(["profile", "-o", str(tmp_path / "p.dlprofile")], capsys)
    assert (code, out) == (2, "")
    assert err == "driftline: error: --reference is required (or a --config whose model names a reference)\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_check_table_at_80_columns_keeps_header_words_feature_names_and_the_why(monkeypatch):
    from monitor.batch import check as batch
    from monitor.batch import render

    plan = batch.plan_from_config(CONFIG, None)
    assert plan.reference is not None
    report = batch.run_check(plan.reference, DRIFT, plan, evaluated_at="now").report
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    render.print_table(report, out, ["a note"])
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # the terminal's colours
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.startswith("feature"))
    assert header.split() == ["feature", "type", "test", "statistic", "p", "(adj.)", "effect",
                              "missing", "drift"]
    assert "why" in lines
    for f in report.features:
        reason = render.short_reason(f)
        assert any(line.split()[:1] == [f.name] for line in lines), f.name
        if reason:
            assert f"  {f.name}: {reason}" in lines
        assert f.drift == (f"  {f.name}: significant and material" in lines or f.test == "psi")
    assert sum(bool(render.short_reason(f)) for f in report.features) >= 10


def config_in(directory: Path, reference: str) -> Path:
    """The sample config, moved to ``directory``, naming ``reference`` (its job template absolute)."""
    text = (SAMPLE / "driftline.yaml").read_text()
    text = text.replace("reference: flights/reference.parquet", f"reference: {reference}")
    text = text.replace("../k8s/jobs/retrain.yaml", str(ROOT / "k8s" / "jobs" / "retrain.yaml"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "driftline.yaml"
    path.write_text(text)
    return path


def test_validate_config_reports_a_reference_that_does_not_exist_with_file_and_line(tmp_path, capsys):
    config = config_in(tmp_path, "flights/missing.parquet")
    code, out, err = run(["validate-config", str(config)], capsys)
    assert (code, out) == (2, "")
    assert err == (f"{config}:21: models[0].reference: no such file: 'flights/missing.parquet' "
                   f"({tmp_path / 'flights' / 'missing.parquet'})\n")


def test_validate_config_offline_does_not_look_at_the_files_the_config_names(tmp_path, capsys):
    config = config_in(tmp_path, "flights/missing.parquet")
    assert run(["validate-config", "--offline", str(config)], capsys) == (0, f"{config}: ok\n", "")


def test_validate_config_resolves_a_relative_reference_against_the_config_like_check_does(
        tmp_path, monkeypatch, capsys):
    config = config_in(tmp_path / "conf", "data/reference.parquet")
    (tmp_path / "conf" / "data").mkdir()
    shutil.copy(SAMPLE / "flights" / "reference.parquet", tmp_path / "conf" / "data")
    monkeypatch.chdir(tmp_path)  # not the config's directory: data/reference.parquet is not here
    assert run(["validate-config", str(config)], capsys) == (0, f"{config}: ok\n", "")
    code, out, err = run(["check", "-C", str(config), "-c", NO_DRIFT, "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["rows_reference"] == 20000, err


def test_validate_config_reports_a_path_that_is_a_directory_or_unreadable(tmp_path, capsys):
    config = config_in(tmp_path, "flights")
    (tmp_path / "flights").mkdir()
    code, _, err = run(["validate-config", str(config)], capsys)
    assert code == 2 and err.startswith(f"{config}:21: models[0].reference: is a directory, not a file")
    if os.geteuid() == 0:
        return  # root reads any file
    config = config_in(tmp_path, "locked.parquet")
    (tmp_path / "locked.parquet").write_bytes(b"")
    (tmp_path / "locked.parquet").chmod(0)
    code, _, err = run(["validate-config", str(config)], capsys)
    assert code == 2 and "models[0].reference: cannot read: permission denied" in err
