"""The fleet overview: one row per model, and drifted share over time."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table
from grafana_foundation_sdk.models import common as viz
from grafana_foundation_sdk.models import dashboard as model

from dashboards.common import (
    DATASOURCE,
    GREEN,
    ORANGE,
    RED,
    TAG,
    YELLOW,
    Ids,
    dashboard_link,
    datasource_variable,
    grafana_path,
    prop,
    query,
    steps,
    transformation,
)
from monitor.config import Config

#: Dataset drift 0/1 as words and colours.
_DRIFT_MAPPING = model.ValueMap(options={
    "0": model.ValueMappingResult(text="no drift", color=GREEN, index=0),
    "1": model.ValueMappingResult(text="DRIFT", color=RED, index=1),
})


def main_metrics(config: Config) -> dict[str, tuple[str, str]]:
    """Each model's main performance metric and the side of its bound: its first metric with
    a ``min`` (``"min"``), else its first with a ``max`` (``"max"``); models without
    performance thresholds are left out."""
    found: dict[str, tuple[str, str]] = {}
    for spec in config.models:
        metrics = spec.performance.metrics() if spec.performance is not None else {}
        with_min = [name for name, bounds in metrics.items() if bounds.min is not None]
        with_max = [name for name, bounds in metrics.items() if bounds.max is not None]
        if with_min:
            found[spec.name] = (with_min[0], "min")
        elif with_max:
            found[spec.name] = (with_max[0], "max")
    return found


def _performance_exprs(config: Config) -> tuple[str, str, str] | None:
    """PromQL for the main metric, its bound and the headroom (positive is inside the bound),
    one series per model with performance thresholds (an ``or`` of per-model selectors);
    None when no model has any."""
    values, bounds, headroom = [], [], []
    for name, (metric, side) in sorted(main_metrics(config).items()):
        sel = f'{{model="{_esc(name)}",metric="{_esc(metric)}"}}'
        value = f"max by (model) (driftline_model_performance{sel})"
        bound = f"max by (model) (driftline_model_performance_{side}{sel})"
        values.append(value)
        bounds.append(bound)
        headroom.append(f"({value} - on (model) {bound})" if side == "min"
                        else f"({bound} - on (model) {value})")
    if not values:
        return None
    return " or ".join(values), " or ".join(bounds), " or ".join(headroom)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def build(config: Config, uid: str, model_uid: str, collector_uid: str,
          datasource_uid: str) -> dash.Dashboard:
    ids = Ids()
    performance = _performance_exprs(config)
    columns = [
        ("A", "Dataset drift", "max by (model) (driftline_dataset_drift)"),
        ("B", "Drifted share", "max by (model) (driftline_dataset_drifted_share)"),
        *([] if performance is None else
          [("C", "Performance", performance[0]), ("D", "Bound", performance[1]),
           ("E", "Headroom", performance[2])]),
        ("F", "Events/s", "sum by (model) (rate(driftline_events_total[5m]))"),
        ("G", "Consumer lag", "max by (model) (driftline_model_consumer_lag_messages)"),
        ("H", "Collector drops/s",
         "sum by (model) (rate(driftline_collector_events_dropped_total"
         '{reason!~"sampled_out|skipped"}[5m])) + '
         "sum by (model) (rate(driftline_collector_requests_unparsed_total"
         '{reason!~"sampled_out|skipped"}[5m]))'),
        ("I", "Firing alerts", 'count by (model) (ALERTS{alertstate="firing",alertname=~"Driftline.*"})'),
    ]
    status = (table.Panel()
               .show_header(True)
              .id(ids.next())
              .title("Models now")
              .description(
                  "One row per model, from the latest evaluated window. Dataset drift is the configured "
                  "dataset-drift rule; Performance is the model's main metric (its first with a min, else "
                  "its first with a max) and Bound that limit; Headroom is how far inside the bound it is "
                  "(red below 0). Events/s is the monitor's intake, Collector drops/s counts dropped rows "
                  "and requests left out unread, other than sampling and opt-outs, Firing alerts counts "
                  "driftline alerts in Prometheus's ALERTS series. Click a model for its drill-down.")
              .datasource(DATASOURCE)
              .span(24).height(9)
              .targets([query(expr, ref, instant=True, table=True) for ref, _, expr in columns])
              .with_transformation(transformation("merge"))
              .with_transformation(transformation("organize", {
                  "excludeByName": {"Time": True},
                  "indexByName": {"model": 0, **{f"Value #{ref}": i + 1 for i, (ref, _,
                                                                                _) in enumerate(columns)}},
                  "renameByName": {f"Value #{ref}": header for ref, header, _ in columns},
              }))
              .no_value("-")
              .override_by_name("model", [
                  prop("displayName", "Model"),
                  prop("links", [{
                      "title": "Drill down into ${__value.text}",
                      "url": f"{grafana_path(model_uid, model_uid)}?var-model=${{__value.text}}"
                             "&var-datasource=${datasource}&${__url_time_range}",
                  }]),
              ])
              .override_by_name("Dataset drift", [
                  prop("mappings", [_DRIFT_MAPPING.to_json()]),
                  prop("custom.cellOptions", {"type": "color-background"}),
                  prop("thresholds", {"mode": "absolute",
                                      "steps": [{"value": None, "color": GREEN}, {"value": 1,
                                                                                  "color": RED}]}),
              ])
              .override_by_name("Drifted share", [
                  prop("unit", "percentunit"), prop("decimals", 1),
                  prop("custom.cellOptions", {"type": "color-text"}),
                  prop("thresholds", {"mode": "absolute", "steps": [
                      {"value": None, "color": GREEN}, {"value": 0.1, "color": YELLOW},
                      {"value": 0.3, "color": RED}]}),
              ])
              .override_by_name("Headroom", [
                  prop("decimals", 3),
                  prop("custom.cellOptions", {"type": "color-text"}),
                  prop("thresholds", {"mode": "absolute", "steps": [
                      {"value": None, "color": RED}, {"value": 0, "color": GREEN}]}),
              ])
              .override_by_name("Performance", [prop("decimals", 3)])
              .override_by_name("Bound", [prop("decimals", 3)])
              .override_by_name("Events/s", [prop("unit", "reqps"), prop("decimals", 1)])
              .override_by_name("Consumer lag", [
                  prop("unit", "short"),
                  prop("custom.cellOptions", {"type": "color-text"}),
                  prop("thresholds", {"mode": "absolute", "steps": [
                      {"value": None, "color": GREEN}, {"value": 1000, "color": YELLOW},
                      {"value": 10000, "color": RED}]}),
              ])
              .override_by_name("Collector drops/s", [
                  prop("unit", "reqps"), prop("decimals", 2),
                  prop("custom.cellOptions", {"type": "color-text"}),
                  prop("thresholds", {"mode": "absolute", "steps": [
                      {"value": None, "color": GREEN}, {"value": 0.001, "color": RED}]}),
              ])
              .override_by_name("Firing alerts", [
                  prop("unit", "short"), prop("decimals", 0),
                  prop("custom.cellOptions", {"type": "color-background"}),
                  prop("thresholds", {"mode": "absolute", "steps": [
                      {"value": None, "color": GREEN}, {"value": 1, "color": RED}]}),
              ]))

    drifting = (stat.Panel()
                .id(ids.next())
                .title("Models drifting")
                .description("Models whose latest evaluated window drifted as a whole, out of all "
                             "models the monitor reports.")
                .datasource(DATASOURCE)
                .span(6).height(5)
                .with_target(query("sum(max by (model) (driftline_dataset_drift))", "A", instant=True))
                .unit("short").decimals(0)
                .thresholds(steps((None, GREEN), (1, RED)))
                .color_mode(viz.BigValueColorMode.BACKGROUND)
                .graph_mode(viz.BigValueGraphMode.NONE))
    firing = (stat.Panel()
              .id(ids.next())
              .title("Driftline alerts firing")
              .description("Alerts of the driftline rules (alertname Driftline*) firing now, from "
                           "Prometheus's ALERTS series.")
              .datasource(DATASOURCE)
              .span(6).height(5)
              .with_target(query('count(ALERTS{alertstate="firing",alertname=~"Driftline.*"}) or vector(0)',
                                 "A", instant=True))
              .unit("short").decimals(0)
              .thresholds(steps((None, GREEN), (1, RED)))
              .color_mode(viz.BigValueColorMode.BACKGROUND)
              .graph_mode(viz.BigValueGraphMode.NONE))
    intake = (stat.Panel()
              .id(ids.next())
              .title("Events/s, all models")
              .description("Prediction events the monitor takes in per second, summed over models "
                           "and replicas.")
              .datasource(DATASOURCE)
              .span(6).height(5)
              .with_target(query("sum(rate(driftline_events_total[5m]))", "A", instant=True))
              .unit("reqps").decimals(1)
              .thresholds(steps((None, GREEN)))
              .color_mode(viz.BigValueColorMode.VALUE)
              .graph_mode(viz.BigValueGraphMode.AREA))
    stale = (stat.Panel()
             .id(ids.next())
             .title("Oldest evaluation")
             .description("Age of the oldest latest-window evaluation across models: a model whose "
                          "windows stop closing shows here before DriftlineEvaluationStale fires.")
             .datasource(DATASOURCE)
             .span(6).height(5)
             .with_target(query("max(time() - driftline_last_evaluation_timestamp_seconds)", "A",
                                instant=True))
             .unit("s").decimals(0)
             .thresholds(steps((None, GREEN), (900, YELLOW), (3600, RED)))
             .color_mode(viz.BigValueColorMode.VALUE)
             .graph_mode(viz.BigValueGraphMode.NONE))

    share = (statetimeline.Panel()
             .id(ids.next())
             .title("Drifted share over time")
             .description("Share of each model's features that drifted, window by window: one row per "
                          "model, coloured green (none) through yellow (10%) and orange (20%) to red "
                          "(30% and more).")
             .datasource(DATASOURCE)
             .span(24).height(8)
             .with_target(query("max by (model) (driftline_dataset_drifted_share)", "A", "{{model}}"))
             .unit("percentunit").decimals(0).min(0).max(1)
             .thresholds(steps((None, GREEN), (0.0001, YELLOW), (0.2, ORANGE), (0.3, RED)))
             .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
             .show_value(viz.VisibilityMode.NEVER)
             .merge_values(False)
             .fill_opacity(80))

    streaks = (statetimeline.Panel()
               .id(ids.next())
               .title("Dataset drift streak")
               .description("Drifted windows in a row per model (what the drift alerts compare with "
                            "consecutive_windows): grey none, orange drifting, red 3 or more in a row.")
               .datasource(DATASOURCE)
               .span(24).height(6)
               .with_target(query("max by (model) (driftline_dataset_drift_streak)", "A", "{{model}}"))
               .unit("short").decimals(0)
               .thresholds(steps((None, "transparent"), (1, ORANGE), (3, RED)))
               .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
               .show_value(viz.VisibilityMode.AUTO)
               .fill_opacity(70)
               .line_width(0))

    board = (dash.Dashboard("Driftline fleet")
             .uid(uid)
             .description("Every model driftline monitors: drift, performance, intake, lag, collector "
                          "drops and firing alerts. Generated by `driftline dashboards`.")
             .tags([TAG, "fleet"])
             .editable()
             .time("now-6h", "now")
             .refresh("30s")
             .timezone("browser")
             .with_variable(datasource_variable(datasource_uid))
             .link(dashboard_link("Model drill-down", grafana_path(model_uid, model_uid),
                                  "One model's features, performance and actions"))
             .link(dashboard_link("Collectors", grafana_path(collector_uid, collector_uid),
                                  "The sidecar collectors' capture and delivery"))
             .with_panel(drifting).with_panel(firing).with_panel(intake).with_panel(stale)
             .with_panel(status)
             .with_panel(share)
             .with_panel(streaks))
    return board
