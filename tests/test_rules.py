"""``driftline rules``: the generated rules pass the real promtool, are stable, follow the config,
and a PrometheusRule passes kubernetes-validate and a schema of its own.

The promtool unit tests (alerts firing and not firing on series as serve exports them) are in
``test_rules_promtool.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from alerts import rules
from monitor.cli.main import main
from monitor.config import ALERT_NAMES, load_config, parse_duration
from tests.conftest import SAMPLE

CONFIG = SAMPLE / "driftline.yaml"
REFERENCE = SAMPLE / "flights" / "reference.parquet"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(),
    reason="promtool is not installed (apt-get install prometheus gives /usr/bin/promtool)")
K8S = "1.30"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write_config(tmp_path: Path, model_yaml: str, top: str = "") -> Path:
    """A config of one model (``model_yaml`` indented under ``models:``) on the sample reference."""
    path = tmp_path / "driftline.yaml"
    body = "\n".join("    " + line for line in model_yaml.strip().splitlines())
    path.write_text(f"{top}\nmodels:\n  - name: m1\n    reference: {REFERENCE}\n{body}\n")
    return path


def rules_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in document["groups"] for rule in group["rules"]]


def promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, "check", "rules", "--lint=all", "--lint-fatal", str(path)],
                          capture_output=True, text=True, timeout=60)


# ---- the sample config, through the CLI


@needs_promtool
def test_the_rules_for_the_sample_config_pass_promtool_check_rules(tmp_path, capsys):
    out = tmp_path / "rules.yaml"
    code, stdout, err = run(["rules", "--config", str(CONFIG), "--out", str(out)], capsys)
    assert (code, stdout, err) == (0, "", "")
    checked = promtool_check(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # 1 dataset + 14 features (13 and the prediction) + 2 metrics + 2 stale + dropping + lag
    assert "SUCCESS: 21 rules found" in checked.stdout


@needs_promtool
def test_the_groups_of_the_prometheusrule_pass_promtool_check_rules_too(tmp_path, capsys):
    code, stdout, _ = run(["rules", "-C", str(CONFIG), "--format", "prometheusrule"], capsys)
    assert code == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(yaml.safe_load(stdout)["spec"]))
    checked = promtool_check(spec)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_same_config_gives_byte_identical_output(tmp_path, capsys):
    outputs = []
    for fmt in ("rules", "prometheusrule"):
        for _ in range(2):
            code, stdout, _ = run(["rules", "--config", str(CONFIG), "--format", fmt], capsys)
            assert code == 0
            outputs.append(stdout.encode())
        out = tmp_path / f"{fmt}.yaml"
        assert main(["rules", "--config", str(CONFIG), "--format", fmt, "--out", str(out)]) == 0
        assert out.read_bytes() == outputs[-1]
    assert outputs[0] == outputs[1] and outputs[2] == outputs[3]


def test_out_replaces_an_existing_file_whole_and_leaves_no_temporary_file(tmp_path, capsys):
    out = tmp_path / "rules.yaml"
    out.write_text("old content that is longer than nothing\n" * 1000)
    code, _, _ = run(["rules", "--config", str(CONFIG), "--out", str(out)], capsys)
    assert code == 0
    assert yaml.safe_load(out.read_text())["groups"][0]["name"] == "driftline.flight-delay"
    assert [p.name for p in tmp_path.iterdir()] == ["rules.yaml"]


def test_every_alert_of_the_sample_config_carries_its_for_severity_and_links(capsys):
    code, stdout, _ = run(["rules", "--config", str(CONFIG)], capsys)
    assert code == 0
    document = yaml.safe_load(stdout)
    assert [g["name"] for g in document["groups"]] == ["driftline.flight-delay"]
    found = rules_of(document)
    assert sorted({r["alert"] for r in found}) == sorted(ALERT_NAMES)
    for rule in found:
        # sample config: for 5m, severity warning, PerformanceBelowMin overridden to critical;
        # stale_after 1h is also the absent branch's own for
        absent = rule["expr"].startswith("absent(")
        assert rule["for"] == ("1h" if absent else "5m")
        critical = rule["alert"] == "DriftlinePerformanceBelowMin"
        assert rule["labels"]["severity"] == ("critical" if critical else "warning")
        assert rule["labels"]["model"] == "flight-delay"
        notes = rule["annotations"]
        assert notes["runbook_url"] == (
            "https://github.com/driftline/driftline/blob/main/README.md#" + rule["alert"].lower())
        assert notes["dashboard_url"] == (
            "http://localhost:3000/d/driftline-model/driftline-model?var-model=flight-delay")
        assert notes["report_url"] == "http://localhost:8000/models/flight-delay/report"
        assert "flight-delay" in notes["summary"]


def test_the_sample_thresholds_appear_literally_in_the_expressions_and_descriptions(capsys):
    _, stdout, _ = run(["rules", "--config", str(CONFIG)], capsys)
    by_expr = {r["expr"]: r for r in rules_of(yaml.safe_load(stdout))}
    dataset = by_expr['max by (model) (driftline_dataset_drift_streak{model="flight-delay"}) >= 3']
    assert "alert at 3 windows in a row" in dataset["annotations"]["description"]
    assert "alpha 0.05" in dataset["annotations"]["description"]
    dest = by_expr['max by (model, feature) (driftline_feature_drift_streak'
                   '{model="flight-delay",feature="dest"}) >= 3']
    assert dest["labels"]["feature"] == "dest"
    assert "test psi, threshold 0.2" in dest["annotations"]["description"]
    auc = by_expr['max by (model, metric) (driftline_model_performance'
                  '{model="flight-delay",metric="roc_auc"}) < 0.6']
    assert auc["labels"]["metric"] == "roc_auc"
    assert "configured min 0.6" in auc["annotations"]["description"]
    assert ("time() - max by (model) (driftline_last_evaluation_timestamp_seconds"
            '{model="flight-delay"}) > 3600') in by_expr
    assert 'absent(driftline_last_evaluation_timestamp_seconds{model="flight-delay"})' in by_expr
    lag = by_expr['max by (model) (driftline_model_consumer_lag_messages{model="flight-delay"}) > 10000']
    assert "bound 10000" in lag["annotations"]["description"]


# ---- the config decides


def test_an_alert_disabled_in_overrides_is_left_out_and_an_override_sets_for_and_severity(tmp_path):
    path = write_config(tmp_path, """
features: {x: {type: numerical}}
alerts:
  for: 90s
  overrides:
    DriftlineConsumerLagHigh: {enabled: false}
    DriftlineDatasetDrift: {for: 0s, severity: critical}
""")
    found = rules_of(rules.rules_file(load_config(path)))
    names = [r["alert"] for r in found]
    assert "DriftlineConsumerLagHigh" not in names
    assert "DriftlinePerformanceBelowMin" not in names  # no performance section, no rule
    dataset = next(r for r in found if r["alert"] == "DriftlineDatasetDrift")
    assert (dataset["for"], dataset["labels"]["severity"]) == ("0s", "critical")
    feature = next(r for r in found if r["alert"] == "DriftlineFeatureDrift")
    assert (feature["for"], feature["labels"]["severity"]) == ("1m30s", "warning")


@pytest.mark.parametrize(("window", "alerts", "limit"), [
    ("{size: 500}", "{}", 3600),                                  # count window: one hour
    ("{size: 500}", "{stale_after: 20m}", 1200),                   # stale_after wins
    ("{duration: 5m}", "{}", 900),                                 # 3 windows of 5 min
    ("{duration: 5m}", "{stale_windows: 4}", 1200),
    ("{duration: 10m, slide: 2m}", "{}", 360),                     # sliding: 3 slides
])
def test_the_stale_limit_follows_stale_after_else_the_window(tmp_path, window, alerts, limit):
    path = write_config(tmp_path, f"window: {window}\nalerts: {alerts}\nfeatures: {{x: {{type: numerical}}}}")
    found = rules_of(rules.rules_file(load_config(path)))
    late = next(r for r in found if r["labels"].get("stale") == "late")
    absent = next(r for r in found if r["labels"].get("stale") == "absent")
    assert late["expr"].endswith(f"> {limit}")
    assert rules.stale_after(load_config(path), "m1") == limit
    assert parse_duration(absent["for"]) == limit


def test_error_metrics_get_a_max_bound_and_both_bounds_make_one_rule(tmp_path):
    path = write_config(tmp_path, """
features: {x: {type: numerical}}
prediction: {name: y_hat, type: numerical}
target: {name: y, task: regression}
performance: {rmse: {max: 2.5}, r2: {min: 0.1, max: 0.99}}
""")
    found = [r for r in rules_of(rules.rules_file(load_config(path)))
             if r["alert"] == "DriftlinePerformanceBelowMin"]
    assert [r["labels"]["metric"] for r in found] == ["rmse", "r2"]
    rmse, r2 = found
    assert rmse["expr"] == ('max by (model, metric) (driftline_model_performance{model="m1",metric="rmse"})'
                            " > 2.5")
    assert "above its max" in rmse["annotations"]["summary"]
    series = 'max by (model, metric) (driftline_model_performance{model="m1",metric="r2"})'
    assert r2["expr"] == f"{series} < 0.1 or {series} > 0.99"


def test_label_values_are_escaped_inside_promql_strings():
    assert rules.promql_string('a"b\\c') == '"a\\"b\\\\c"'
    assert rules.promql_string("tab\there\nnew") == '"tab\\there\\nnew"'
    assert rules.promql_string("\x01") == '"\\x01"'
    assert rules.promql_string("héllo ✓") == '"héllo ✓"'
    assert rules.selector("m", model="x", feature='q"') == 'm{model="x",feature="q\\""}'


@needs_promtool
def test_a_feature_name_with_quotes_backslashes_and_braces_still_passes_promtool(tmp_path):
    path = write_config(tmp_path, """features: {'we"ird\\na{{me}}': {type: numerical}}""")
    config = load_config(path)
    assert list(config.model("m1").features) == ['we"ird\\na{{me}}']
    out = tmp_path / "rules.yaml"
    out.write_text(rules.to_yaml(rules.rules_file(config)))
    checked = promtool_check(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = rules_of(yaml.safe_load(out.read_text()))
    feature = next(r for r in found if r["alert"] == "DriftlineFeatureDrift")
    assert 'feature="we\\"ird\\\\na{{me}}"' in feature["expr"]
    # a rule's labels are templates: the braces are printed by an action, never opened
    assert feature["labels"]["feature"] == 'we"ird\\na{{ "{{" }}me}}'


def test_links_come_from_the_config_and_a_runbook_anchor_replaces_the_configured_one(tmp_path):
    path = write_config(tmp_path, "features: {x: {type: numerical}}", top="""
links:
  grafana_url: https://grafana.example.com/
  monitor_url: https://driftline.example.com
  runbook_url: https://wiki.example.com/driftline#top
""")
    rule = rules_of(rules.rules_file(load_config(path)))[0]
    assert rule["annotations"]["runbook_url"] == "https://wiki.example.com/driftline#driftlinedatasetdrift"
    assert rule["annotations"]["dashboard_url"] == (
        "https://grafana.example.com/d/driftline-model/driftline-model?var-model=m1")
    assert rule["annotations"]["report_url"] == "https://driftline.example.com/models/m1/report"


# ---- PrometheusRule


def prometheusrule_doc(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, stdout, _ = run(["rules", "--config", str(CONFIG), "--format", "prometheusrule"], capsys)
    assert code == 0
    doc = yaml.safe_load(stdout)
    assert isinstance(doc, dict)
    return doc


def test_the_prometheusrule_metadata_passes_kubernetes_validate(capsys):
    doc = prometheusrule_doc(capsys)
    # the validator has no schema for the prometheus-operator CRD ...
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(doc, K8S, strict=True)
    # ... so it checks what is core Kubernetes: the ObjectMeta, carried by a kind it knows
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"], "data": {}}
    kubernetes_validate.validate(carrier, K8S, strict=True)


def test_the_prometheusrule_has_every_field_the_crd_requires_with_its_type(capsys):
    doc = prometheusrule_doc(capsys)
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "PrometheusRule"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    name = doc["metadata"]["name"]
    assert isinstance(name, str) and len(name) <= 253
    assert all(part and part[0].isalnum() and part[-1].isalnum() for part in name.split("."))
    assert name == name.lower()
    assert set(doc["spec"]) == {"groups"}
    groups = doc["spec"]["groups"]
    assert isinstance(groups, list) and groups
    assert len({g["name"] for g in groups}) == len(groups)  # the CRD requires unique group names
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "partial_response_strategy", "limit"}
        assert isinstance(group["name"], str) and group["name"]
        assert isinstance(group["rules"], list) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
            assert isinstance(rule["alert"], str) and rule["alert"] in ALERT_NAMES
            assert isinstance(rule["expr"], str) and rule["expr"]  # CRD: int-or-string; a string here
            assert isinstance(rule["for"], str)
            assert rule["for"] == "0s" or rule["for"][-1] in "smhdwy"
            for mapping in (rule["labels"], rule["annotations"]):
                assert isinstance(mapping, dict)
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())


PROMETHEUSRULE = ["rules", "-C", str(CONFIG), "--format", "prometheusrule"]
RELEASE = "release=kube-prometheus-stack"
HINT = "note: kube-prometheus-stack selects rules by label, e.g. --label release=<your release>\n"


def test_namespace_and_labels_go_into_the_metadata_which_passes_kubernetes_validate(capsys):
    code, stdout, err = run([*PROMETHEUSRULE, "--namespace", "monitoring", "--label", RELEASE,
                             "--label", "example.com/team=ml-platform"], capsys)
    assert (code, err) == (0, "")  # labels given: no hint
    doc = yaml.safe_load(stdout)
    assert doc["metadata"] == {"name": "driftline-rules", "namespace": "monitoring", "labels": {
        "app.kubernetes.io/name": "driftline", "app.kubernetes.io/component": "alert-rules",
        "release": "kube-prometheus-stack", "example.com/team": "ml-platform"}}
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"], "data": {}}
    kubernetes_validate.validate(carrier, K8S, strict=True)
    assert doc["spec"] == prometheusrule_doc(capsys)["spec"]  # the same groups


def test_without_labels_there_is_no_namespace_and_a_one_line_hint_on_stderr(capsys):
    code, stdout, err = run(["rules", "-C", str(CONFIG), "--format", "prometheusrule"], capsys)
    assert (code, err) == (0, HINT)
    assert set(yaml.safe_load(stdout)["metadata"]) == {"name", "labels"}
    # a namespace alone selects no rule: still the hint; the rules format has no labels: no hint
    assert run([*PROMETHEUSRULE, "-n", "monitoring"], capsys)[2] == HINT
    assert run(["rules", "-C", str(CONFIG)], capsys)[2] == ""


def test_a_label_may_replace_a_default_one_and_the_last_of_a_repeated_key_wins(capsys):
    code, stdout, _ = run([*PROMETHEUSRULE, "--label", "app.kubernetes.io/name=rules",
                           "--label", "release=a", "--label", "release=b"], capsys)
    assert code == 0
    assert yaml.safe_load(stdout)["metadata"]["labels"] == {
        "app.kubernetes.io/name": "rules", "app.kubernetes.io/component": "alert-rules", "release": "b"}


@needs_promtool
def test_the_groups_of_a_labelled_prometheusrule_pass_promtool_check_rules(tmp_path, capsys):
    code, stdout, _ = run([*PROMETHEUSRULE, "--namespace", "monitoring", "--label", RELEASE], capsys)
    assert code == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(yaml.safe_load(stdout)["spec"]))
    checked = promtool_check(spec)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("text, expected", [
    ("release=kube-prometheus-stack", ("release", "kube-prometheus-stack")),
    ("example.com/team=ml", ("example.com/team", "ml")),
    ("empty=", ("empty", "")),
    ("a=b=c", None),  # '=' is no label value character
])
def test_parse_label_reads_a_kubernetes_label(text, expected):
    if expected is None:
        with pytest.raises(ValueError):
            rules.parse_label(text)
    else:
        assert rules.parse_label(text) == expected


@pytest.mark.parametrize("args, message", [
    (["--label", "release"], "--label 'release': expected KEY=VALUE"),
    (["--label", "=x"], "--label '=x': expected KEY=VALUE"),
    (["--label", "re lease=x"], "the key 're lease' is not a label key"),
    (["--label", "-release=x"], "the key '-release' is not a label key"),
    (["--label", "Example.COM/team=x"], "the key's prefix 'Example.COM' is not a DNS subdomain"),
    (["--label", "release=" + "x" * 64], "is not a label value"),
    (["--label", "release=a b"], "the value 'a b' is not a label value"),
    (["--namespace", "Monitoring"], "--namespace 'Monitoring': not a namespace name"),
    (["--namespace", ""], "--namespace '': not a namespace name"),
])
def test_a_bad_label_or_namespace_is_one_line_and_exit_2(args, message, capsys):
    code, out, err = run([*PROMETHEUSRULE, *args], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("driftline: error: ") and err.count("\n") == 1
    assert message in err


@pytest.mark.parametrize("args", [["--namespace", "monitoring"], ["--label", "release=x"]])
def test_namespace_and_labels_are_refused_for_a_rules_file(args, capsys):
    code, out, err = run(["rules", "-C", str(CONFIG), *args], capsys)
    assert (code, out) == (2, "")
    assert err == ("driftline: error: --namespace and --label apply to --format prometheusrule only; "
                   "a rules file has no namespace or labels\n")
    with pytest.raises(ValueError):
        rules.generate(load_config(CONFIG), "rules", labels={"release": "x"})


# ---- bad input


def test_a_missing_config_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(["rules", "--config", str(tmp_path / "nope.yaml")], capsys)
    assert (code, out) == (2, "")
    assert err == f"driftline: error: {tmp_path / 'nope.yaml'}: no such config file\n"


def test_an_invalid_config_is_one_line_naming_the_problem_and_exit_2(tmp_path, capsys):
    path = write_config(tmp_path, "features: {x: {type: numerical}}\nalerts: {consecutive_windows: 0}")
    code, out, err = run(["rules", "--config", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err == (f"driftline: error: {path}:6: models[0].alerts.consecutive_windows: "
                   "must be greater than or equal to 1 (got 0)\n")


def test_an_unknown_format_is_a_usage_error(capsys):
    code, out, err = run(["rules", "--config", str(CONFIG), "--format", "grafana"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("driftline: error: ") and err.count("\n") == 1
    assert "(see 'driftline rules --help')" in err


def test_an_out_path_in_a_missing_directory_is_one_line_and_exit_2(tmp_path, capsys):
    code, out, err = run(["rules", "--config", str(CONFIG), "--out", str(tmp_path / "no" / "r.yaml")], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("driftline: error: ") and err.count("\n") == 1
