"""``driftline dashboards``: the generated Grafana dashboards, their provisioning files and the CLI.

No Grafana server can run here, so the JSON is checked against grafana-foundation-sdk's own
models (decode and re-encode), every query's metric names against what serve, the collector
and the receiver export (read from their sources, so a typo fails), and every PromQL
expression against promtool's parser.  That every query returns data from a real Prometheus
is the end-to-end test's job.
"""

from __future__ import annotations

import ast
import copy
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard as SdkDashboard

from alerts.rules import DASHBOARD_UID
from dashboards import provisioning
from dashboards.common import DEFAULT_DATASOURCE_UID, encode
from dashboards.generator import (
    FILES,
    MODEL_UID,
    annotation_queries,
    generate,
    panel_queries,
    to_json,
    uids,
    with_versions,
)
from monitor.cli.main import main
from monitor.config import Config, load_config
from tests.conftest import SAMPLE

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = SAMPLE / "driftline.yaml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


# ---- helpers

def config_with(tmp_path: Path, edit: Any = None, name: str = "driftline.yaml") -> Config:
    """The sample config, edited by ``edit(document)``, written next to a copy-free reference."""
    document = yaml.safe_load(SAMPLE_CONFIG.read_text())
    for model in document["models"]:
        model["reference"] = str(SAMPLE / model["reference"])
        model.pop("actions", None)
    if edit is not None:
        edit(document)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return load_config(path)


def add_model(name: str) -> Any:
    def edit(document: dict[str, Any]) -> None:
        twin = copy.deepcopy(document["models"][0])
        twin["name"] = name
        document["models"].append(twin)
    return edit


def all_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels") or [])
    return found


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def exported_series(path: Path) -> set[str]:
    """The sample names a module's Prometheus families produce, read from its source: the
    first argument of ``_gauge``/``_counter`` (serve, prefixed ``driftline_``), of
    ``Counter``/``Gauge``/``Histogram`` (prometheus_client) and of ``*MetricFamily``."""
    tree = ast.parse(path.read_text())
    loops: dict[str, list[str]] = {}  # for metric in ("a", "b"): _counter(metric, ...)
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.target, ast.Name)
                and isinstance(node.iter, ast.Tuple)):
            loops[node.target.id] = [e.value for e in node.iter.elts
                                     if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        kind = _call_name(node)
        if kind not in ("_gauge", "_counter", "Counter", "Gauge", "Histogram", "GaugeMetricFamily",
                        "CounterMetricFamily", "HistogramMetricFamily"):
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            bases = [arg.value]
        elif isinstance(arg, ast.BinOp) and isinstance(arg.right, ast.Constant):  # PREFIX + "x"
            bases = [str(arg.right.value)]
        elif isinstance(arg, ast.Name):
            bases = loops.get(arg.id, [])
        else:
            continue
        for base in bases:
            name = base if base.startswith("driftline_") else "driftline_" + base
            if kind in ("_counter", "Counter", "CounterMetricFamily"):
                names.add(name.removesuffix("_total") + "_total")
            elif kind in ("Histogram", "HistogramMetricFamily"):
                names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(name)
    return names


EXPORTED = (exported_series(ROOT / "monitor/service/export.py")
            | exported_series(ROOT / "collectors/delivery/metrics.py")
            | exported_series(ROOT / "alerts/metrics.py")
            | {"ALERTS"})  # Prometheus's own series of the alerting rules' state
METRIC = re.compile(r"\b(?:driftline_[a-z0-9_]+|ALERTS)\b")


def unknown_metrics(board: dict[str, Any]) -> set[str]:
    exprs = [expr for _, _, expr in panel_queries(board)]
    exprs += [expr for _, expr in annotation_queries(board)]
    exprs += [str(v.get("query", "")) for v in board["templating"]["list"] if v["type"] == "query"]
    return {name for expr in exprs for name in METRIC.findall(expr)} - EXPORTED


def substituted(expr: str) -> str:
    """PromQL with the dashboard's variables replaced as Grafana would."""
    for variable, value in (("$__rate_interval", "1m"), ("$__range", "1h"), ("$model", "flight-delay"),
                            ("$feature", ".*")):
        expr = expr.replace(variable, value)
    return expr


@pytest.fixture(scope="module")
def sample() -> dict[str, dict[str, Any]]:
    return generate(load_config(SAMPLE_CONFIG))


# ---- the dashboards

def test_the_sample_config_gives_the_fleet_the_model_and_the_collector_dashboards(sample):
    assert list(sample) == ["driftline-fleet.json", "driftline-model.json", "driftline-collector.json"]
    assert [board["title"] for board in sample.values()] == [
        "Driftline fleet", "Driftline model", "Driftline collectors"]
    assert all(board["version"] == 1 and "driftline" in board["tags"] for board in sample.values())


def test_the_generated_json_round_trips_through_the_sdk_models(sample):
    register_default_plugins()
    for name, board in sample.items():
        decoded = SdkDashboard.from_json(json.loads(to_json(board)))
        assert encode(decoded) == board, name


def test_the_model_dashboard_has_the_uid_the_alert_annotations_link_to(sample):
    assert MODEL_UID == DASHBOARD_UID == "driftline-model"
    assert sample["driftline-model.json"]["uid"] == "driftline-model"


def test_uids_are_stable_across_runs_and_change_only_when_the_model_set_changes(tmp_path):
    base = config_with(tmp_path)
    assert uids(base) == uids(config_with(tmp_path, name="again.yaml"))
    assert [b["uid"] for b in generate(base).values()] == list(uids(base).values())

    def other_thresholds(document: dict[str, Any]) -> None:
        document["models"][0]["features"]["dest"]["threshold"] = 0.3
        document["models"][0]["alerts"]["consecutive_windows"] = 5
        document["links"]["monitor_url"] = "http://monitor.example:8000"
    assert uids(config_with(tmp_path, other_thresholds, "thresholds.yaml")) == uids(base)

    more = uids(config_with(tmp_path, add_model("eta"), "more.yaml"))
    assert more["model"] == "driftline-model"
    assert more["fleet"] != uids(base)["fleet"] and more["collector"] != uids(base)["collector"]
    assert more["fleet"].startswith("driftline-fleet-") and len(more["fleet"]) <= 40

    def reordered(document: dict[str, Any]) -> None:
        add_model("eta")(document)
        document["models"].reverse()
    assert uids(config_with(tmp_path, reordered, "reordered.yaml")) == more


def test_generating_twice_gives_the_same_bytes(tmp_path):
    config = config_with(tmp_path)
    assert [to_json(b) for b in generate(config).values()] == [to_json(b) for b in generate(config).values()]


def test_every_panel_has_a_description_and_reads_the_datasource_variable(sample):
    for board in sample.values():
        panels = [p for p in all_panels(board) if p["type"] != "row"]
        assert panels
        ids = [p["id"] for p in all_panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in panels:
            assert panel.get("description"), panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert target["expr"].strip() and target["refId"]


def test_panel_queries_lists_every_target_with_its_panel_and_ref_id(sample):
    queries = panel_queries(sample["driftline-model.json"])
    titles = {title for title, _, _ in queries}
    assert {"Drift statistic by feature", "p-values (log scale)", "Drifted features, latest window",
            "Missing share vs reference", "New categories", "Data-quality findings, latest window",
            "Performance vs bounds", "Window fill", "Window rows", "Evaluation age", "Evaluation duration",
            "Events/s", "Invalid events by reason", "Label-join backlog", "Label join and evictions",
            "Dataset drift streak", "Feature drift streaks", "Remediation decisions"} <= titles
    assert ("Drift statistic by feature", "A",
            'max by (feature, test) (driftline_feature_drift_score{model="$model",feature=~"$feature"})'
            ) in queries
    panels = all_panels(sample["driftline-model.json"])
    assert len(queries) == sum(len(p.get("targets") or []) for p in panels)


def test_every_metric_a_query_names_is_one_that_driftline_or_prometheus_exports(sample):
    assert {"driftline_feature_drift_threshold", "driftline_collector_events_dropped_total",
            "driftline_actions_total", "driftline_evaluation_duration_seconds_bucket"} <= EXPORTED
    for board in sample.values():
        assert unknown_metrics(board) == set(), board["uid"]


def test_a_misspelt_metric_in_a_query_is_caught(sample):
    board = copy.deepcopy(sample["driftline-model.json"])
    target = board["panels"][1]["targets"][0]
    target["expr"] = target["expr"].replace("driftline_feature_drift_score", "driftline_feature_drift_scores")
    assert unknown_metrics(board) == {"driftline_feature_drift_scores"}


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool is not installed")
def test_every_query_and_annotation_parses_as_promql(sample, tmp_path):
    exprs = [expr for board in sample.values() for _, _, expr in panel_queries(board)]
    exprs += [expr for board in sample.values() for _, expr in annotation_queries(board)]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substituted(expr)} for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all("$" not in substituted(expr) for expr in exprs)


def test_the_model_dashboard_has_the_model_and_feature_variables(sample):
    variables = {v["name"]: v for v in sample["driftline-model.json"]["templating"]["list"]}
    assert list(variables) == ["datasource", "model", "feature"]
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == DEFAULT_DATASOURCE_UID
    assert variables["model"]["query"] == "label_values(driftline_events_total, model)"
    feature = variables["feature"]
    assert feature["query"] == 'label_values(driftline_feature_drifted{model="$model"}, feature)'
    assert feature["multi"] and feature["includeAll"]


def test_the_drift_statistic_is_drawn_with_its_threshold_as_a_dashed_line(sample):
    panels = {p["title"]: p for p in all_panels(sample["driftline-model.json"])}
    panel = panels["Drift statistic by feature"]
    refs = {t["refId"]: t["expr"] for t in panel["targets"]}
    assert "driftline_feature_drift_threshold" in refs["B"]
    override = panel["fieldConfig"]["overrides"][0]
    assert override["matcher"] == {"id": "byFrameRefID", "options": "B"}
    assert {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}} in override["properties"]
    p_values = panels["p-values (log scale)"]
    assert p_values["fieldConfig"]["defaults"]["custom"]["scaleDistribution"] == {"log": 10, "type": "log"}


def test_the_drifted_features_table_joins_its_instant_queries_by_feature(sample):
    panel = next(p for p in all_panels(sample["driftline-model.json"])
                 if p["title"] == "Drifted features, latest window")
    assert panel["type"] == "table"
    assert all(t["instant"] and t["format"] == "table" for t in panel["targets"])
    kinds = [t["id"] for t in panel["transformations"]]
    assert kinds == ["filterFieldsByName", "joinByField", "organize", "sortBy"]
    assert panel["transformations"][1]["options"] == {"byField": "feature", "mode": "inner"}
    exprs = " ".join(t["expr"] for t in panel["targets"])
    for metric in ("driftline_feature_drifted", "driftline_feature_effect_size",
                   "driftline_feature_drift_reason"):
        assert metric in exprs


def test_the_model_dashboard_annotates_drifted_windows_and_the_receivers_actions(sample):
    annotations = dict(annotation_queries(sample["driftline-model.json"]))
    assert annotations["Window drifted"] == 'max by (model) (driftline_dataset_drift{model="$model"}) == 1'
    assert annotations["Receiver acted"] == (
        'changes(driftline_action_last_timestamp_seconds{model="$model"}[1m]) > 0')
    assert annotations["Dry-run decision"] == (
        'increase(driftline_actions_total{model="$model",outcome="dry_run"}[1m]) > 0')


def test_dashboards_link_to_each_other_and_to_the_monitors_report(tmp_path):
    def monitor_url(document: dict[str, Any]) -> None:
        document["links"]["monitor_url"] = "https://monitor.example/"
    config = config_with(tmp_path, monitor_url)
    boards = generate(config)
    ids = uids(config)
    model_links = {link["title"]: link["url"] for link in boards["driftline-model.json"]["links"]}
    assert model_links == {"Fleet": f"/d/{ids['fleet']}/{ids['fleet']}",
                           "Collectors": f"/d/{ids['collector']}/{ids['collector']}",
                           "Drift report": "https://monitor.example/models/${model}/report"}
    fleet_links = {link["title"]: link["url"] for link in boards["driftline-fleet.json"]["links"]}
    assert fleet_links["Model drill-down"] == "/d/driftline-model/driftline-model"


def test_the_fleet_table_shows_each_models_main_metric_against_its_bound(sample):
    table = next(p for p in all_panels(sample["driftline-fleet.json"]) if p["title"] == "Models now")
    refs = {t["refId"]: t["expr"] for t in table["targets"]}
    selector = '{model="flight-delay",metric="accuracy"}'
    assert refs["C"] == f"max by (model) (driftline_model_performance{selector})"
    assert refs["D"] == f"max by (model) (driftline_model_performance_min{selector})"
    assert refs["I"] == 'count by (model) (ALERTS{alertstate="firing",alertname=~"Driftline.*"})'
    assert [t["id"] for t in table["transformations"]] == ["merge", "organize"]


def test_the_collector_dashboard_shows_drops_by_reason_and_load_shedding(sample):
    exprs = " ".join(expr for _, _, expr in panel_queries(sample["driftline-collector.json"]))
    assert 'reason="overload"' in exprs
    assert "sum by (model, reason)" in exprs and "driftline_collector_proxy_latency_seconds_bucket" in exprs


# ---- versions

def test_an_unchanged_dashboard_keeps_its_version_a_changed_one_gets_the_next(sample):
    first = with_versions(sample, [])
    assert {b["version"] for b in first.values()} == {1}
    existing = [{**b, "version": 7} for b in first.values()]
    assert {b["version"] for b in with_versions(sample, existing).values()} == {7}

    changed = copy.deepcopy(sample)
    changed["driftline-model.json"]["description"] = "edited"
    versions = {b["uid"]: b["version"] for b in with_versions(changed, existing).values()}
    assert versions["driftline-model"] == 8
    assert [v for uid, v in versions.items() if uid != "driftline-model"] == [7, 7]


def test_a_dashboard_with_a_new_uid_starts_at_version_1(sample):
    existing = [{**b, "uid": "someone-else", "version": 4} for b in sample.values()]
    assert {b["version"] for b in with_versions(sample, existing).values()} == {1}


# ---- provisioning

def test_provisioning_files_are_grafanas_format():
    source = yaml.safe_load(provisioning.to_yaml(provisioning.datasource("prom-uid", "http://prom:9090")))
    assert source["apiVersion"] == 1
    [entry] = source["datasources"]
    assert entry["uid"] == "prom-uid" and entry["type"] == "prometheus" and entry["url"] == "http://prom:9090"
    assert entry["access"] == "proxy"
    provider = yaml.safe_load(provisioning.to_yaml(provisioning.dashboard_provider("/var/lib/dashboards")))
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["folder"] == "driftline"
    assert entry["options"]["path"] == "/var/lib/dashboards"


# ---- the command

def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_writes_the_dashboards_and_provisioning_files(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["dashboards", "-C", str(SAMPLE_CONFIG), "--out", str(out),
                             "--datasource-uid", "prom-1", "--prometheus-url", "http://prom:9090"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.json")) == sorted(FILES.values())
    model = json.loads((out / "driftline-model.json").read_text())
    assert model["uid"] == "driftline-model" and model["version"] == 1
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == "prom-1"
    source = yaml.safe_load((out / provisioning.DATASOURCE_FILE).read_text())
    assert source["datasources"][0]["uid"] == "prom-1"
    assert source["datasources"][0]["url"] == "http://prom:9090"
    provider = yaml.safe_load((out / provisioning.PROVIDER_FILE).read_text())
    assert provider["providers"][0]["options"]["path"] == str(out.resolve())
    assert "driftline-model.json: uid driftline-model, version 1" in stdout
    assert not list(out.glob(".*.tmp"))


def test_running_the_command_again_keeps_versions_and_a_change_bumps_one(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["dashboards", "-C", str(SAMPLE_CONFIG), "-o", str(out)], capsys)[0] == 0
    before = (out / "driftline-model.json").read_text()
    assert run(["dashboards", "-C", str(SAMPLE_CONFIG), "-o", str(out)], capsys)[0] == 0
    assert (out / "driftline-model.json").read_text() == before

    document = yaml.safe_load(SAMPLE_CONFIG.read_text())
    document["models"][0]["reference"] = str(SAMPLE / document["models"][0]["reference"])
    document["models"][0].pop("actions")
    document["links"]["monitor_url"] = "http://elsewhere:8000"
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(document))
    code, stdout, _ = run(["dashboards", "-C", str(edited), "-o", str(out)], capsys)
    assert code == 0
    assert "driftline-model.json: uid driftline-model, version 2" in stdout
    assert json.loads((out / "driftline-fleet.json").read_text())["version"] == 1  # the same content


def test_a_config_without_models_is_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "empty.yaml"
    config.write_text("models: []\n")
    code, out, err = run(["dashboards", "-C", str(config), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and out == ""
    assert err == f"driftline: error: {config}:1: models: must not be empty\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_config_is_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = run(["dashboards", "-C", str(tmp_path / "nope.yaml"), "-o", str(tmp_path)], capsys)
    assert code == 2 and err == f"driftline: error: {tmp_path / 'nope.yaml'}: no such config file\n"


def test_an_out_directory_that_cannot_be_created_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run(["dashboards", "-C", str(SAMPLE_CONFIG), "-o", str(blocker / "dashboards")], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"driftline: error: {blocker / 'dashboards'}: ") and err.count("\n") == 1
    code, _, err = run(["dashboards", "-C", str(SAMPLE_CONFIG), "-o", str(blocker)], capsys)
    assert code == 2 and err == f"driftline: error: {blocker}: not a directory\n"


def test_without_config_and_out_the_command_says_what_it_needs(capsys):
    code, out, err = run(["dashboards"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("driftline: error: dashboards needs --config FILE and --out DIR")


def test_the_help_lists_push_and_preview(capsys):
    code, out, _ = run(["dashboards", "--help"], capsys)
    assert code == 0
    assert re.search(r"^\s+push\s", out, re.M) and re.search(r"^\s+preview\s", out, re.M)


def test_push_without_a_token_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    code, _, err = run(["dashboards", "push", "-C", str(SAMPLE_CONFIG), "--url", "http://grafana:3000"],
                       capsys)
    assert code == 2
    assert err == "driftline: error: push needs a Grafana token: --token-file FILE or GRAFANA_TOKEN\n"


def test_push_hands_the_generated_dashboards_to_the_pusher(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_push(dashboards: list[dict[str, Any]], url: str, token: str, folder: str,
                  overwrite: bool) -> list[str]:
        calls.append(([d["uid"] for d in dashboards], url, token, folder, overwrite))
        return ["driftline-model: created"]

    pytest.importorskip("dashboards.push")
    monkeypatch.setattr("dashboards.push.push", fake_push)
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    code, out, err = run(["dashboards", "push", "-C", str(SAMPLE_CONFIG), "--url", "http://grafana:3000",
                          "--token-file", str(token), "--folder", "ml", "--overwrite"], capsys)
    assert code == 0, err
    assert out == "driftline-model: created\n"
    ids = uids(load_config(SAMPLE_CONFIG))
    assert calls == [([ids["fleet"], ids["model"], ids["collector"]], "http://grafana:3000", "s3cret", "ml",
                      True)]


def test_preview_without_matplotlib_says_which_extra_to_install_in_one_line(tmp_path, capsys, monkeypatch):
    import builtins
    import sys

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):  # a machine without the preview extra
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="matplotlib")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m == "dashboards.preview" or m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, _, err = run(["dashboards", "preview", "--prometheus", "http://localhost:9090", "--model", "m",
                        "--out", str(tmp_path / "p.png"), "-C", str(SAMPLE_CONFIG)], capsys)
    assert code == 2
    assert err == ("driftline: error: preview needs the Python package 'matplotlib': "
                   "pip install 'driftline[preview]'\n")


# ---- every query against a real Prometheus (a driftline-shaped exposition; the end-to-end test
# ---- feeds it real serve, collect and remediate processes instead)

def exposition(n: int, now: float) -> str:
    """One scrape of every series the dashboards read, for the sample model, moving with ``n``."""
    m = 'model="flight-delay"'
    lines = [
        f'driftline_feature_drift_score{{{m},feature="dest",test="psi"}} 0.35',
        f'driftline_feature_drift_score{{{m},feature="dep_delay",test="ks"}} 0.21',
        f'driftline_feature_drift_p_value{{{m},feature="dep_delay",test="ks"}} 0.0001',
        f'driftline_feature_drifted{{{m},feature="dest",test="psi"}} 1',
        f'driftline_feature_drifted{{{m},feature="dep_delay",test="ks"}} 1',
        f'driftline_feature_drift_threshold{{{m},feature="dest",test="psi"}} 0.2',
        f'driftline_feature_drift_threshold{{{m},feature="dep_delay",test="ks"}} 0.05',
        f'driftline_feature_effect_size{{{m},feature="dest",test="psi"}} 0.35',
        f'driftline_feature_effect_size{{{m},feature="dep_delay",test="ks"}} 0.12',
        f'driftline_feature_drift_reason{{{m},feature="dest",test="psi",'
        'reason="distance_over_threshold"} 1',
        f'driftline_feature_drift_streak{{{m},feature="dest",test="psi"}} {n}',
        f'driftline_feature_missing_share{{{m},feature="dep_delay"}} 0.02',
        f'driftline_feature_reference_missing_share{{{m},feature="dep_delay"}} 0.01',
        f'driftline_feature_new_categories{{{m},feature="dest"}} 2',
        f'driftline_quality_issue{{{m},feature="dest",issue="new_categories"}} 1',
        f"driftline_dataset_drifted_share{{{m}}} 0.15",
        f"driftline_dataset_drift{{{m}}} 1",
        f"driftline_dataset_drift_streak{{{m}}} {n}",
        f'driftline_model_performance{{{m},metric="accuracy"}} 0.70',
        f'driftline_model_performance{{{m},metric="roc_auc"}} 0.64',
        f'driftline_model_performance_min{{{m},metric="accuracy"}} 0.72',
        f'driftline_model_performance_min{{{m},metric="roc_auc"}} 0.60',
        f"driftline_events_total{{{m}}} {100 * n}",
        f'driftline_events_invalid_total{{{m},reason="schema"}} {n}',
        f"driftline_window_rows{{{m}}} 420",
        f"driftline_window_fill_ratio{{{m}}} 0.42",
        f"driftline_last_evaluation_timestamp_seconds{{{m}}} {now - 5}",
        *(f'driftline_evaluation_duration_seconds_bucket{{le="{le}"}} {n * c}'
          for le, c in (("0.01", 1), ("0.1", 2), ("+Inf", 3))),
        f"driftline_evaluation_duration_seconds_sum {0.1 * n}",
        f"driftline_evaluation_duration_seconds_count {3 * n}",
        f"driftline_label_join_buffer_size{{{m}}} 17",
        f"driftline_labels_joined_total{{{m}}} {50 * n}",
        f"driftline_labels_unmatched_total{{{m}}} {n}",
        f"driftline_label_join_evictions_total{{{m}}} {n}",
        f"driftline_model_consumer_lag_messages{{{m}}} 3",
        f"driftline_collector_events_captured_total{{{m}}} {100 * n}",
        f"driftline_collector_events_sent_total{{{m}}} {98 * n}",
        f"driftline_collector_events_failed_total{{{m}}} {n}",
        f'driftline_collector_events_dropped_total{{{m},reason="queue_full"}} {n}',
        f'driftline_collector_events_dropped_total{{{m},reason="sampled_out"}} 0',
        f'driftline_collector_requests_unparsed_total{{{m},reason="overload"}} {n}',
        f'driftline_collector_requests_unparsed_total{{{m},reason="sampled_out"}} 0',
        f"driftline_collector_queue_depth{{{m}}} 4",
        *(f'driftline_collector_delivery_latency_seconds_bucket{{{m},le="{le}"}} {n * c}'
          for le, c in (("0.01", 5), ("0.1", 9), ("+Inf", 10))),
        *(f'driftline_collector_proxy_latency_seconds_bucket{{{m},status="2xx",le="{le}"}} {n * c}'
          for le, c in (("0.01", 5), ("0.1", 9), ("+Inf", 10))),
        f'driftline_collector_proxy_latency_seconds_count{{{m},status="2xx"}} {10 * n}',
        f'driftline_actions_total{{{m},action="retrain",outcome="dry_run"}} {n}',
        f'driftline_action_last_timestamp_seconds{{{m},action="rollback"}} {now}',
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_every_panel_query_returns_a_series_from_a_real_prometheus(sample, tmp_path, prometheus_factory):
    server = exposition_server()
    rules = tmp_path / "alerts.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "t", "rules": [
        {"alert": "DriftlineDatasetDrift", "expr": "max by (model) (driftline_dataset_drift) == 1"}]}]}))
    try:
        prom = prometheus_factory([f"127.0.0.1:{server.server_address[1]}"], rule_files=[rules])
        prom.wait_for("changes(driftline_events_total[1m]) > 2", timeout=30)
        prom.wait_for('ALERTS{alertstate="firing"}', timeout=30)
        empty = []
        for board in sample.values():
            queries = [(f"{title} {ref}", expr) for title, ref, expr in panel_queries(board)]
            queries += annotation_queries(board)
            for what, expr in queries:
                if not prom.query(substituted(expr)):
                    empty.append(f"{board['uid']}: {what}: {expr}")
        assert empty == []
    finally:
        server.shutdown()
        server.server_close()


def exposition_server() -> http.server.ThreadingHTTPServer:
    """A started HTTP server answering every GET with the next :func:`exposition` (a
    driftline-shaped /metrics page); shut it down and close it after use."""
    scrapes = iter(range(1, 1_000_000))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition(next(scrapes), time.time()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
