"""`driftline check`, `profile` and their error handling, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitor.cli.main import main
from tests.conftest import SAMPLE


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_without_a_config_infers_types_and_reports_no_drift_on_same_distribution(
        tables, capsys):
    code, out, err = run(["check", "-r", str(tables["ref"]), "-c", str(tables["same"]),
                          "--format", "json"], capsys)
    body = json.loads(out)
    assert code == 0 and not body["drift_detected"], body
    assert body["inferred_types"] is True
    types = {k: v["type"] for k, v in body["features"].items()}
    assert types == {"income": "numerical", "age": "numerical", "score": "numerical",
                     "children": "numerical", "region": "categorical", "channel": "categorical",
                     "is_member": "boolean"}
    assert body["features"]["children"]["test"] == "chisquare"


def test_check_exits_one_and_the_json_matches_scipy_on_a_shifted_table(tables, capsys):
    code, out, _ = run(["check", "-r", str(tables["ref"]), "-c", str(tables["shifted"]),
                        "--format", "json"], capsys)
    body = json.loads(out)
    assert code == 1 and body["drift_detected"]
    for key in ("drifted_features", "total_features", "drifted_share", "rule", "correction",
                "features", "quality"):
        assert key in body
    ref = pd.read_parquet(tables["ref"])
    cur = pd.read_parquet(tables["shifted"])
    expected = stats.ks_2samp(ref["age"], cur["age"])
    age = body["features"]["age"]
    assert age["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert age["p_value"] == pytest.approx(expected.pvalue, abs=1e-12)
    assert age["drift"] is True and age["threshold"] == 0.05
    assert {"missing_share", "new_categories"} <= set(age)


def test_sample_data_with_its_config_detects_the_july_shift(capsys):
    code, out, err = run(["check", "-r", str(SAMPLE / "flights/reference.parquet"),
                          "-c", str(SAMPLE / "flights/current.parquet"),
                          "--config", str(SAMPLE / "driftline.yaml"), "--format", "json"], capsys)
    body = json.loads(out)
    assert code == 1, err
    assert body["features"]["dep_delay"]["drift"] and body["features"]["arr_delay"]["drift"]
    assert body["features"]["dest"]["test"] == "psi"


def test_sample_data_no_drift_control_passes(capsys):
    code, out, err = run(["check", "-r", str(SAMPLE / "flights/reference.parquet"),
                          "-c", str(SAMPLE / "flights/current_nodrift.parquet"),
                          "--config", str(SAMPLE / "driftline.yaml"), "--format", "json"], capsys)
    assert code == 0, out


def test_a_saved_profile_gives_the_same_report_as_the_raw_reference(tables, tmp_path, capsys):
    prof = tmp_path / "ref.dlprofile"
    code, out, _ = run(["profile", "-r", str(tables["ref"]), "-o", str(prof)], capsys)
    assert code == 0 and "wrote" in out
    _, raw, _ = run(["check", "-r", str(tables["ref"]), "-c", str(tables["shifted"]),
                     "--format", "json"], capsys)
    _, via_profile, _ = run(["check", "-r", str(prof), "-c", str(tables["shifted"]),
                             "--format", "json"], capsys)
    a, b = json.loads(raw), json.loads(via_profile)
    for body in (a, b):
        body.pop("evaluated_at")
        body.pop("inferred_types")
    assert a == b


def test_the_table_format_names_every_feature_and_the_rule(tables, capsys):
    code, out, _ = run(["check", "-r", str(tables["ref"]), "-c", str(tables["shifted"]),
                        "--format", "table"], capsys)
    assert code == 1
    for name in ("income", "age", "region", "is_member", "DRIFT DETECTED", "rule:"):
        assert name in out


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("empty_file", "file is empty"),
        ("missing_file", "no such file"),
        ("directory", "is a directory"),
        ("binary_garbage", "not a readable"),
        ("no_common_columns", "no columns in common"),
        ("non_numeric", "not a number"),
        ("all_nan_reference_column", "has no values"),
        ("malformed_profile", "not a driftline profile"),
        ("header_only", "no rows"),
        ("model_without_config", "--model needs --config"),
        ("unknown_option", "No such option"),
        ("invalid_config", "did you mean 'type'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_two(case, fragment, tables, tmp_path, capsys):
    ref, cur = str(tables["ref"]), str(tables["same"])
    extra: list[str] = []
    if case == "empty_file":
        cur = str(write(tmp_path / "empty.csv", ""))
    elif case == "missing_file":
        cur = str(tmp_path / "nope.csv")
    elif case == "directory":
        cur = str(tmp_path)
    elif case == "binary_garbage":
        p = tmp_path / "x.parquet"
        p.write_bytes(b"PAR1" + bytes(range(256)) * 4)
        cur = str(p)
    elif case == "no_common_columns":
        cur = str(write(tmp_path / "other.csv", "p,q\n1,2\n3,4\n"))
    elif case == "non_numeric":
        cfg = write(tmp_path / "c.yaml", "models:\n  - name: m\n    reference: ref.parquet\n"
                    "    features:\n      age: {type: numerical}\n")
        cur = str(write(tmp_path / "bad.csv", "age\n41\n39\nforty\n"))
        extra = ["--config", str(cfg)]
    elif case == "all_nan_reference_column":
        ref = str(write(tmp_path / "nan.csv", "a,b\n,1\n,2\n,3\n"))
        cfg = write(tmp_path / "c.yaml", "models:\n  - name: m\n    reference: nan.csv\n"
                    "    features:\n      a: {type: numerical}\n      b: {type: numerical}\n")
        extra = ["--config", str(cfg)]
    elif case == "malformed_profile":
        p = tmp_path / "p.dlprofile"
        p.write_bytes(b"PK\x03\x04garbage")
        ref = str(p)
    elif case == "header_only":
        cur = str(write(tmp_path / "h.csv", "income,age\n"))
    elif case == "model_without_config":
        extra = ["--model", "m"]
    elif case == "unknown_option":
        extra = ["--frobnicate"]
    elif case == "invalid_config":
        cfg = write(tmp_path / "c.yaml", "models:\n  - name: m\n    reference: ref.parquet\n"
                    "    features:\n      age: {tpye: numerical}\n      x: {type: wrong}\n")
        extra = ["--config", str(cfg)]
    code, out, err = run(["check", "-r", ref, "-c", cur, "--format", "json", *extra], capsys)
    assert code == 2
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("driftline: error: "), err  # a reported error, not a bug
    assert "Traceback" not in err and out == ""


def test_per_feature_problems_go_into_the_report_not_into_an_error(tables, tmp_path, capsys):
    cur = pd.read_csv(tables["same"])
    cur["income"] = np.nan
    cur.loc[:100, "region"] = "atlantis"
    cur = cur.drop(columns=["score"]).assign(surprise=1)
    path = tmp_path / "cur.csv"
    cur.to_csv(path, index=False)
    code, out, err = run(["check", "-r", str(tables["ref"]), "-c", str(path), "--format", "json"],
                         capsys)
    body = json.loads(out)
    assert code == 1, err
    issues = {(q["feature"], q["issue"]) for q in body["quality"]}
    assert ("income", "all_missing") in issues
    assert ("region", "new_categories") in issues
    assert ("score", "missing_column") in issues
    assert ("surprise", "extra_column") in issues
    assert body["features"]["income"]["drift"] is True
    assert "all missing" in body["features"]["income"]["reason"]


def test_the_console_script_runs_as_a_process_with_exit_codes_and_no_traceback(tables, tmp_path):
    exe = Path(sys.executable).parent / "driftline"
    ok = subprocess.run([str(exe), "check", "-r", str(tables["ref"]), "-c", str(tables["shifted"]),
                         "--format", "json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 1 and json.loads(ok.stdout)["drift_detected"]
    bad = subprocess.run([str(exe), "check", "-r", str(tables["ref"]), "-c",
                          str(tmp_path / "missing.parquet")], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1


def _run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a command with stderr on a pseudo-terminal; return its exit code and what it drew."""
    import os
    import pty
    import re
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, stdin=slave, env=env)
    os.close(slave)
    drawn = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", drawn.decode(errors="replace"))


def test_a_progress_bar_is_drawn_on_a_terminal_for_large_inputs_only(tables):
    import os

    exe = str(Path(sys.executable).parent / "driftline")
    argv = [exe, "check", "-r", str(tables["ref"]), "-c", str(tables["shifted"]), "--format", "json"]
    env = dict(os.environ, DRIFTLINE_PROGRESS_MIN_BYTES="1")
    code, drawn = _run_on_a_terminal(argv, env)
    assert code == 1
    assert "━" in drawn and "testing" in drawn
    env["DRIFTLINE_PROGRESS_MIN_BYTES"] = str(10**12)
    code, drawn = _run_on_a_terminal(argv, env)
    assert code == 1 and drawn.strip() == ""


def test_validate_config_exits_zero_on_the_sample_and_two_with_every_error(tmp_path, capsys):
    code, out, err = run(["validate-config", str(SAMPLE / "driftline.yaml")], capsys)
    assert code == 0 and out.strip().endswith(": ok")
    bad = write(tmp_path / "bad.yaml", "models:\n  - name: m\n    reference: r.csv\n    features:\n"
                "      a: {type: numerical, tset: ks}\n      b: {type: categorial}\n")
    code, out, err = run(["validate-config", str(bad)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert "bad.yaml:5:" in lines[0] and "did you mean 'test'" in lines[0]
    assert "bad.yaml:6:" in lines[1] and "features.b.type" in lines[1]


def test_a_per_feature_category_cap_folds_the_rest_into_other(tables, tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", f"models:\n  - name: m\n    reference: {tables['ref']}\n"
                "    features:\n      region: {type: categorical, max_categories: 2}\n")
    prof = tmp_path / "p.dlprofile"
    code, out, err = run(["profile", "-r", str(tables["ref"]), "-o", str(prof), "--config",
                          str(cfg)], capsys)
    assert code == 0, err
    from monitor.batch import profile_io
    from monitor.engine.profiles import OTHER, CategoricalProfile

    region = profile_io.load(prof).features["region"]
    assert isinstance(region, CategoricalProfile)
    assert len(region.categories) == 2 and OTHER in region.as_dict()
    counts = pd.read_parquet(tables["ref"])["region"].value_counts()
    assert region.as_dict()[OTHER] == counts.iloc[2:].sum()


def test_check_reports_model_performance_equal_to_scikit_learn_and_the_broken_bounds(capsys):
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    code, out, err = run(["check", "--config", str(SAMPLE / "driftline.yaml"),
                          "-c", str(SAMPLE / "flights/current.parquet"), "--format", "json"], capsys)
    perf = json.loads(out)["performance"]
    frame = pd.read_parquet(SAMPLE / "flights/current.parquet")
    labelled = frame.dropna(subset=["arrived_late", "delay_score"])
    y, score = labelled["arrived_late"].astype(int), labelled["delay_score"]
    assert perf["rows"] == len(labelled) and perf["dropped"] == len(frame) - len(labelled)
    assert perf["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert perf["metrics"]["accuracy"] == pytest.approx(accuracy_score(y, score >= 0.5), abs=1e-12)
    assert perf["metrics"]["log_loss"] == pytest.approx(log_loss(y, score), abs=1e-9)
    # the sample config wants accuracy >= 0.72; July reaches about 0.69
    assert [v["metric"] for v in perf["violations"]] == ["accuracy"]


def test_performance_is_skipped_with_a_note_when_the_current_data_has_no_labels(tmp_path, capsys):
    frame = pd.read_parquet(SAMPLE / "flights/current.parquet").drop(columns=["arrived_late"])
    path = tmp_path / "unlabelled.parquet"
    frame.to_parquet(path)
    code, out, err = run(["check", "--config", str(SAMPLE / "driftline.yaml"), "-c", str(path),
                          "--format", "json"], capsys)
    assert code == 1, err
    assert "no column 'arrived_late'" in json.loads(out)["performance"]["note"]


def test_a_large_raw_reference_is_checked_exactly_while_its_saved_profile_is_sketched(
        tmp_path, rng, capsys):
    ref = pd.DataFrame({"x": rng.normal(size=120_000)})  # above the default exact cap
    cur = pd.DataFrame({"x": rng.normal(0.02, 1, 5_000)})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_parquet(tmp_path / "cur.parquet")
    _, out, _ = run(["check", "-r", str(tmp_path / "ref.parquet"), "-c",
                     str(tmp_path / "cur.parquet"), "--format", "json"], capsys)
    expected = stats.ks_2samp(ref["x"], cur["x"])
    x = json.loads(out)["features"]["x"]
    assert x["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert x["p_value"] == pytest.approx(expected.pvalue, abs=1e-9)
    run(["profile", "-r", str(tmp_path / "ref.parquet"), "-o", str(tmp_path / "p.dlprofile")],
        capsys)
    _, out, _ = run(["check", "-r", str(tmp_path / "p.dlprofile"), "-c",
                     str(tmp_path / "cur.parquet"), "--format", "json"], capsys)
    sketched = json.loads(out)["features"]["x"]
    # KLL k=1024 rank error ~0.3%, plus half a grid step
    assert abs(sketched["statistic"] - expected.statistic) <= 0.003 + 1 / 4096
