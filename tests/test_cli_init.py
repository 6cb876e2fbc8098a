"""``driftline init``: a config written from a reference, checked against what ``check`` infers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from monitor.cli.main import main
from monitor.config import load_config
from monitor.config.starter import Starter, starter_config
from monitor.errors import UsageError
from tests.conftest import SAMPLE

FLIGHTS = SAMPLE / "flights" / "reference.parquet"
ROLES = ["--prediction", "delay_score", "--target", "arrived_late", "--task", "binary_classification"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def checked_types(reference: Path, capsys: pytest.CaptureFixture[str]
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """What `driftline check` infers from the reference compared with itself: types, skipped."""
    code, out, err = run(["check", "-r", str(reference), "-c", str(reference), "--format", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["inferred_types"] is True
    types = {name: feature["type"] for name, feature in report["features"].items()}
    return types, report.get("skipped_columns", {})


@pytest.fixture
def with_ids(tmp_path: Path) -> Path:
    """A CSV with an identifier column and an empty one, which check leaves out."""
    rows = ["id,age,city,empty,score,label"]
    rows += [f"u{i:05d},{20 + i % 50},{'abc'[i % 3]},,{(i % 97) / 97:.4f},{i % 2}" for i in range(300)]
    path = tmp_path / "data.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_the_config_written_from_the_flights_validates_and_its_types_are_the_ones_check_infers(
        tmp_path, capsys):
    out = tmp_path / "driftline.yaml"
    code, printed, err = run(["init", "-r", str(FLIGHTS), "--model", "flights", "--out", str(out)], capsys)
    assert (code, err) == (0, ""), err
    assert run(["validate-config", str(out)], capsys) == (0, f"{out}: ok\n", "")
    features = yaml.safe_load(out.read_text())["models"][0]["features"]
    types, skipped = checked_types(FLIGHTS, capsys)
    assert {name: spec["type"] for name, spec in features.items()} == types
    assert list(features) == list(types)  # the file's column order
    assert skipped == {}
    assert printed.splitlines()[0] == (f"wrote {out}: model flights, 15 features "
                                       "(1 boolean, 3 categorical, 11 numerical)")
    assert printed.splitlines()[-1] == ("next: compare recent data with the reference: "
                                        f"driftline check -C {out} -c RECENT.parquet")


def test_the_prediction_and_the_target_are_left_out_of_the_features_and_configured_as_such(tmp_path, capsys):
    out = tmp_path / "my-model" / "driftline.yaml"
    out.parent.mkdir()
    code, printed, err = run(["init", "-r", str(FLIGHTS), "--model", "my-model", *ROLES,
                              "--kafka", "kafka.kafka.svc:9092", "--version", "7", "-o", str(out)], capsys)
    assert (code, err) == (0, ""), err
    assert printed.splitlines()[0] == (
        f"wrote {out}: model my-model, 13 features (3 categorical, 10 numerical), "
        "prediction delay_score (numerical), target arrived_late (binary_classification)")
    config = load_config(out)
    model = config.model("my-model")
    types, _ = checked_types(FLIGHTS, capsys)
    assert {name: f.type for name, f in model.features.items()} == {
        name: kind for name, kind in types.items() if name not in ("delay_score", "arrived_late")}
    assert model.prediction is not None and (model.prediction.name, model.prediction.type) == \
        ("delay_score", "numerical")
    assert model.target is not None and (model.target.name, model.target.task) == \
        ("arrived_late", "binary_classification")
    assert model.version == "7" and config.kafka.bootstrap_servers == "kafka.kafka.svc:9092"
    # the reference is written relative to the config's directory, and resolves to the file
    assert model.reference.path == FLIGHTS
    assert out.read_text().startswith("# driftline config, written by `driftline init` from ")


def test_the_reference_path_is_relative_to_the_configs_directory(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "conf").mkdir()
    reference = tmp_path / "data" / "reference.parquet"
    shutil.copy(FLIGHTS, reference)
    assert run(["init", "-r", str(reference), "--model", "m", "-o", str(tmp_path / "conf" / "d.yaml")],
               capsys)[0] == 0
    written = yaml.safe_load((tmp_path / "conf" / "d.yaml").read_text())
    assert written["models"][0]["reference"] == "../data/reference.parquet"
    assert load_config(tmp_path / "conf" / "d.yaml").models[0].reference.path == reference


def test_identifier_like_and_empty_columns_are_left_out_and_named_one_line_each_as_check_names_them(
        with_ids, tmp_path, capsys):
    out = tmp_path / "d.yaml"
    code, printed, err = run(["init", "-r", str(with_ids), "--model", "m", "--prediction", "score",
                              "--exclude", "city", "-o", str(out)], capsys)
    assert (code, err) == (0, ""), err
    types, skipped = checked_types(with_ids, capsys)
    assert set(skipped) == {"id", "empty"}
    lines = printed.splitlines()
    for column, why in skipped.items():
        assert f"not monitored: {column} ({why})" in lines
        assert f"# not monitored: {column} ({why})" in out.read_text()
    assert "not monitored: city (left out with --exclude)" in lines
    model = yaml.safe_load(out.read_text())["models"][0]
    assert {n: f["type"] for n, f in model["features"].items()} == {"age": "numerical", "label": "boolean"}
    assert model["prediction"] == {"name": "score", "type": "numerical"}
    assert types["city"] == "categorical"

    # a prediction check cannot monitor is refused, with check's reason
    code, printed, err = run(["init", "-r", str(with_ids), "--model", "m", "--prediction", "id",
                              "-o", str(tmp_path / "e.yaml")], capsys)
    assert (code, printed) == (2, "")
    assert err == f"driftline: error: --prediction 'id' cannot be monitored: {skipped['id']}\n"
    assert not (tmp_path / "e.yaml").exists()


def test_an_existing_file_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "driftline.yaml"
    out.write_text("mine\n")
    code, printed, err = run(["init", "-r", str(FLIGHTS), "--model", "m", "-o", str(out)], capsys)
    assert (code, printed) == (2, "")
    assert err == f"driftline: error: {out} exists; give --force to overwrite it, or another --out\n"
    assert out.read_text() == "mine\n"
    assert run(["init", "-r", str(FLIGHTS), "--model", "m", "-o", str(out), "--force"], capsys)[0] == 0
    assert load_config(out).model_names() == ["m"]


@pytest.mark.parametrize(("args", "message"), [
    (["-r", "missing.parquet", "--model", "m"], "missing.parquet: no such file"),
    (["--model", "m", "--prediction", "delay_scor"],
     f"--prediction 'delay_scor' is not a column of {FLIGHTS}; did you mean 'delay_score'?"),
    (["--model", "m", "--target", "late", "--task", "regression"],
     f"--target 'late' is not a column of {FLIGHTS}"),
    (["--model", "m", "--target", "arrived_late"],
     "--target needs --task (binary_classification, multiclass_classification, regression)"),
    (["--model", "m", "--target", "arrived_late", "--task", "binary"],
     "--task must be one of binary_classification, multiclass_classification, regression; got 'binary'"),
    (["--model", "m", "--task", "regression"], "--task needs --target (the label column)"),
    (["--model", "m", "--exclude", "nope"], f"--exclude 'nope' is not a column of {FLIGHTS}"),
    (["--model", "Not A Name"], "not written: --model: invalid model name 'Not A Name'"),
    (["--model", "m", "--kafka", "kafka"], "not written: --kafka: invalid bootstrap server 'kafka'"),
    (["--model", "m", "--prediction", "carrier", "--target", "arrived_late", "--task", "regression"],
     "not written: --prediction: a regression model's prediction must be numerical"),
    ([], "Missing option '--model'"),
], ids=["missing-file", "unknown-prediction", "unknown-target", "target-without-task", "bad-task",
        "task-without-target", "unknown-exclude", "bad-model-name", "bad-kafka", "invalid-config",
        "no-model"])
def test_each_bad_input_is_one_line_on_stderr_exit_2_and_no_file(args, message, tmp_path, capsys):
    out = tmp_path / "driftline.yaml"
    reference = [] if "-r" in args else ["-r", str(FLIGHTS)]
    code, printed, err = run(["init", *reference, *args, "-o", str(out)], capsys)
    assert (code, printed) == (2, "")
    assert err.startswith("driftline: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_starter_config_keeps_the_prediction_and_target_out_of_the_features_and_reports_exclusions():
    starter = starter_config(
        model="m", reference="r.csv", types={"a": "numerical", "b": "categorical", "p": "boolean",
                                             "t": "boolean"},
        skipped={"id": "looks like an identifier"}, columns=["id", "a", "b", "p", "t"],
        prediction="p", target="t", task="binary_classification", exclude=["b"])
    assert isinstance(starter, Starter)
    assert starter.features == {"a": "numerical"}
    assert starter.config["models"][0]["prediction"] == {"name": "p", "type": "categorical"}
    assert starter.config["models"][0]["target"] == {"name": "t", "task": "binary_classification"}
    assert starter.left_out == {"id": "looks like an identifier", "b": "left out with --exclude"}
    with pytest.raises(UsageError, match="no column is left"):
        starter_config(model="m", reference="r.csv", types={"a": "numerical"}, skipped={},
                       columns=["a"], exclude=["a"])
