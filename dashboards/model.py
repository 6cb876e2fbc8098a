"""The model drill-down: one dashboard, a ``model`` variable (and ``feature``, filtered by model).

Its uid, ``driftline-model``, is the contract the alert annotations link to
(``alerts.rules.DASHBOARD_UID``, with ``?var-model=<m>``).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as viz_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common as viz
from grafana_foundation_sdk.models import dashboard as model

from dashboards.common import (
    BLUE,
    DASHED,
    DATASOURCE,
    GREEN,
    NO_FILL,
    ORANGE,
    RED,
    TAG,
    YELLOW,
    Ids,
    dashboard_link,
    datasource_variable,
    fixed,
    grafana_path,
    prop,
    query,
    steps,
    transformation,
)
from monitor.config import Config

M = 'model="$model"'
MF = 'model="$model",feature=~"$feature"'
RATE = "$__rate_interval"


def _series(ids: Ids, title: str, description: str, *, span: int = 12, height: int = 8,
            unit: str = "short") -> timeseries.Panel:
    """A time series panel with the things every one of them sets."""
    return (timeseries.Panel()
            .id(ids.next())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .span(span).height(height)
            .unit(unit)
            .line_width(1)
            .fill_opacity(10)
            .show_points(viz.VisibilityMode.NEVER)
            .span_nulls(True)
            .legend(viz_builders.VizLegendOptions()
                    .display_mode(viz.LegendDisplayMode.TABLE)
                    .placement(viz.LegendPlacement.RIGHT)
                    .show_legend(True)
                    .calcs(["lastNotNull", "max"]))
            .tooltip(viz_builders.VizTooltipOptions()
                     .mode(viz.TooltipDisplayMode.MULTI)
                     .sort(viz.SortOrder.DESCENDING)))


def _row(ids: Ids, title: str) -> dash.Row:
    return dash.Row(title).id(ids.next()).collapsed(False)


def _reference_lines(panel: timeseries.Panel, ref: str, colour: str) -> timeseries.Panel:
    """Draw query ``ref``'s series as dashed lines without fill (thresholds, bounds)."""
    return panel.override_by_query(ref, [DASHED, NO_FILL, fixed(colour)])


def build(config: Config, uid: str, fleet_uid: str, collector_uid: str,
          datasource_uid: str) -> dash.Dashboard:
    ids = Ids()
    monitor_url = config.links.monitor_url.rstrip("/")
    report_url = f"{monitor_url}/models/${{model}}/report"
    consecutive = sorted({spec.alerts.consecutive_windows for spec in config.models})

    model_variable = (dash.QueryVariable("model")
                      .label("Model")
                      .description("The monitored model (from driftline_events_total).")
                      .datasource(DATASOURCE)
                      .query("label_values(driftline_events_total, model)")
                      .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                      .sort(model.VariableSort.ALPHABETICAL_ASC)
                      .regex(".+"))  # the model="" series counts unreadable messages
    feature_variable = (dash.QueryVariable("feature")
                        .label("Feature")
                        .description("Features of the model (from driftline_feature_drifted).")
                        .datasource(DATASOURCE)
                        .query('label_values(driftline_feature_drifted{model="$model"}, feature)')
                        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                        .sort(model.VariableSort.ALPHABETICAL_ASC)
                        .multi(True)
                        .include_all(True)
                        .all_value(".*")
                        .current(model.VariableOption(selected=True, text="All", value="$__all")))

    # --- drift -----------------------------------------------------------------------------
    statistic = _reference_lines(
        _series(ids, "Drift statistic by feature",
                "The drift test's statistic (or the distance for distance tests: psi, wasserstein, "
                "jensen-shannon ...) of each feature in the latest evaluated window. Dashed: the "
                "feature's threshold, drawn for distance tests (p-value tests compare their p-value "
                "with alpha, in the next panel); above it the feature drifts.", span=12, height=9)
        .with_target(query(f"max by (feature, test) (driftline_feature_drift_score{{{MF}}})", "A",
                           "{{feature}} ({{test}})"))
        .with_target(query(f"max by (feature, test) (driftline_feature_drift_threshold{{{MF}}}) "
                           f"unless on (feature, test) max by (feature, test) "
                           f"(driftline_feature_drift_p_value{{{MF}}})", "B", "{{feature}} threshold")),
        "B", RED)
    p_values = _reference_lines(
        _series(ids, "p-values (log scale)",
                "p-value of each p-value test in the latest evaluated window, on a log scale. "
                "Dashed: the level it is compared with (alpha, or the feature's own threshold); "
                "below it the test is significant. Distance tests have no p-value.",
                span=12, height=9, unit="none")
        .scale_distribution(viz_builders.ScaleDistributionConfig()
                            .type(viz.ScaleDistribution.LOG).log(10))
        .with_target(query(f"max by (feature, test) (driftline_feature_drift_p_value{{{MF}}})", "A",
                           "{{feature}} ({{test}})"))
        .with_target(query(f"max by (feature, test) (driftline_feature_drift_threshold{{{MF}}}) "
                           f"and on (feature, test) max by (feature, test) "
                           f"(driftline_feature_drift_p_value{{{MF}}})", "B", "{{feature}} alpha")),
        "B", RED)

    drifted_columns = [
        ("A", f"max by (feature, test) (driftline_feature_drifted{{{MF}}}) == 1", None),
        ("B", f"max by (feature) (driftline_feature_drift_score{{{MF}}})", "Statistic"),
        ("C", f"max by (feature) (driftline_feature_drift_p_value{{{MF}}})", "p-value"),
        ("D", f"max by (feature) (driftline_feature_drift_threshold{{{MF}}})", "Threshold"),
        ("E", f"max by (feature) (driftline_feature_effect_size{{{MF}}})", "Effect size"),
        ("F", f"max by (feature, reason) (driftline_feature_drift_reason{{{MF}}})", None),
        ("G", f"max by (feature) (driftline_feature_drift_streak{{{MF}}})", "Windows in a row"),
    ]
    keep = ["feature", "test", "reason", *(f"Value #{ref}" for ref, _, _ in drifted_columns)]
    drifted = (table.Panel()
               .show_header(True)
               .id(ids.next())
               .title("Drifted features, latest window")
               .description("The features that drifted in the model's latest evaluated window, with "
                            "their test, statistic, p-value (p-value tests), threshold, effect size, the "
                            "reason code of the verdict and how many windows in a row they drifted. "
                            "Empty when nothing drifted.")
               .datasource(DATASOURCE)
               .span(24).height(8)
               .targets([query(expr, ref, instant=True, table=True) for ref, expr, _ in drifted_columns])
               .with_transformation(transformation("filterFieldsByName", {"include": {"names": keep}}))
               .with_transformation(transformation("joinByField", {"byField": "feature", "mode": "inner"}))
               .with_transformation(transformation("organize", {
                   "excludeByName": {"Value #A": True, "Value #F": True},
                   "indexByName": {"feature": 0, "test": 1, "Value #B": 2, "Value #C": 3, "Value #D": 4,
                                   "Value #E": 5, "reason": 6, "Value #G": 7},
                   "renameByName": {"feature": "Feature", "test": "Test", "reason": "Reason",
                                    **{f"Value #{ref}": name for ref, _, name in drifted_columns if name}},
               }))
               .with_transformation(transformation("sortBy", {"sort": [{"field": "Statistic",
                                                                        "desc": True}]}))
               .decimals(4)
               .no_value("-")
               .override_by_name("Windows in a row", [
                   prop("decimals", 0),
                   prop("custom.cellOptions", {"type": "color-text"}),
                   prop("thresholds", {"mode": "absolute", "steps": [
                       {"value": None, "color": YELLOW},
                       {"value": consecutive[0], "color": RED}]}),
               ])
               .override_by_name("p-value", [prop("unit", "sci")])
               .override_by_name("Feature", [prop("links", [{
                   "title": "Only ${__value.text}",
                   "url": f"{grafana_path(uid, uid)}?var-model=${{model}}&var-feature=${{__value.text}}"
                          "&var-datasource=${datasource}&${__url_time_range}",
               }])])
               .links([dash.DashboardLink("Drift report of ${model}").url(report_url).target_blank(True)]))

    # --- data quality ----------------------------------------------------------------------
    missing = _reference_lines(
        _series(ids, "Missing share vs reference",
                "Share of missing values per feature in the latest evaluated window; dashed: the same "
                "share in the reference. A gap between the two is a pipeline problem, not drift.",
                span=8, unit="percentunit")
        .min(0)
        .with_target(query(f"max by (feature) (driftline_feature_missing_share{{{MF}}})", "A", "{{feature}}"))
        .with_target(query(f"max by (feature) (driftline_feature_reference_missing_share{{{MF}}})", "B",
                           "{{feature}} reference")),
        "B", BLUE)
    new_categories = (
        _series(ids, "New categories",
                "Categories seen in the latest evaluated window that the reference does not have "
                "(categorical and boolean features).", span=8)
        .min(0).decimals(0)
        .draw_style(viz.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .thresholds(steps((None, GREEN), (1, ORANGE)))
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .with_target(query(f"max by (feature) (driftline_feature_new_categories{{{MF}}})", "A",
                           "{{feature}}")))
    quality = (table.Panel()
               .show_header(True)
               .id(ids.next())
               .title("Data-quality findings, latest window")
               .description("Each data-quality finding of the latest evaluated window, by feature and "
                            "issue (for example out of range, missing column, new categories).")
               .datasource(DATASOURCE)
               .span(8).height(8)
               .with_target(query(f"max by (feature, issue) (driftline_quality_issue{{{MF}}})", "A",
                                  instant=True, table=True))
               .with_transformation(transformation("organize", {
                   "excludeByName": {"Time": True, "Value": True},
                   "renameByName": {"feature": "Feature", "issue": "Issue"},
               }))
               .no_value("no findings"))

    # --- performance -----------------------------------------------------------------------
    # a bound's line only where some model sets that bound: a query that can never return data
    # would be an empty legend entry (and fail the end-to-end check that every query has data)
    bounds = [spec.performance.metrics() if spec.performance is not None else {} for spec in config.models]
    performance_targets: list[Builder[Dataquery]] = [
        query(f"max by (metric) (driftline_model_performance{{{M}}})", "A", "{{metric}}")]
    if any(b.min is not None for metrics in bounds for b in metrics.values()):
        performance_targets.append(query(f"max by (metric) (driftline_model_performance_min{{{M}}})", "B",
                                         "{{metric}} min"))
    if any(b.max is not None for metrics in bounds for b in metrics.values()):
        performance_targets.append(query(f"max by (metric) (driftline_model_performance_max{{{M}}})", "C",
                                         "{{metric}} max"))
    performance = _reference_lines(_reference_lines(
        _series(ids, "Performance vs bounds",
                "Each performance metric of the model over predictions joined with their labels; dashed "
                "red: the configured min (stay above), dashed orange: the configured max (stay below). "
                "DriftlinePerformanceBelowMin fires across them.", span=24, unit="none")
        .decimals(3)
        .targets(performance_targets),
        "B", RED), "C", ORANGE)

    # --- windows and evaluation ------------------------------------------------------------
    fill = (_series(ids, "Window fill", "How full the window that closes next is (0 to 100%).",
                    span=6, unit="percentunit")
            .min(0).max(1)
            .with_target(query(f"max by (model) (driftline_window_fill_ratio{{{M}}})", "A", "fill")))
    rows = (_series(ids, "Window rows", "Rows collected so far in the window that closes next.", span=6)
            .min(0).decimals(0)
            .with_target(query(f"max by (model) (driftline_window_rows{{{M}}})", "A", "rows")))
    age = (stat.Panel()
           .id(ids.next())
           .title("Evaluation age")
           .description("Seconds since the model's latest window was evaluated. No value means no "
                        "window has closed, or no replica owns the model: never read it as no drift.")
           .datasource(DATASOURCE)
           .span(6).height(8)
           .with_target(query(f"time() - max by (model) (driftline_last_evaluation_timestamp_seconds{{{M}}})",
                              "A", "age"))
           .unit("s").decimals(0)
           .thresholds(steps((None, GREEN), (900, YELLOW), (3600, RED)))
           .color_mode(viz.BigValueColorMode.VALUE)
           .graph_mode(viz.BigValueGraphMode.AREA)
           .no_value("never evaluated"))
    duration = (_series(ids, "Evaluation duration",
                        "Time to evaluate one closed window (drift tests, quality and performance), "
                        "quantiles over all models of the monitor.", span=6, unit="s")
                .min(0)
                .targets([query(f"histogram_quantile({q}, sum by (le) "
                                f"(rate(driftline_evaluation_duration_seconds_bucket[{RATE}])))", ref,
                                    f"p{pct}")
                          for ref, q, pct in (("A", "0.5", "50"), ("B", "0.95", "95"), ("C", "0.99", "99"))]))

    # --- intake and label join -------------------------------------------------------------
    events = (_series(ids, "Events/s", "Prediction events the monitor takes in for the model per second.",
                      span=6, unit="reqps")
              .min(0)
              .with_target(query(f"sum by (model) (rate(driftline_events_total{{{M}}}[{RATE}]))", "A",
                                 "events")))
    invalid = (_series(ids, "Invalid events by reason",
                       "Events or messages of the model rejected by validation, per second, by reason.",
                       span=6, unit="reqps")
               .min(0)
               .with_target(query(f"sum by (reason) (rate(driftline_events_invalid_total{{{M}}}[{RATE}]))",
                                  "A", "{{reason}}")))
    backlog = (_series(ids, "Label-join backlog",
                       "Predictions waiting in the label-join buffer for their ground-truth label.", span=6)
               .min(0).decimals(0)
               .with_target(query(f"sum by (model) (driftline_label_join_buffer_size{{{M}}})", "A",
                                  "waiting")))
    joins = (_series(ids, "Label join and evictions",
                     "Per second: labels matched to a prediction, labels without one, and predictions "
                     "evicted from the buffer unlabelled (aged out or buffer full).", span=6, unit="reqps")
             .min(0)
             .with_target(query(f"sum by (model) (rate(driftline_labels_joined_total{{{M}}}[{RATE}]))",
                                "A", "joined"))
             .with_target(query(f"sum by (model) (rate(driftline_labels_unmatched_total{{{M}}}[{RATE}]))",
                                "B", "unmatched"))
             .with_target(query(f"sum by (model) (rate(driftline_label_join_evictions_total{{{M}}}[{RATE}]))",
                                "C", "evicted"))
             .override_by_query("C", [fixed(RED)]))
    lag = (_series(ids, "Consumer lag",
                   "Prediction messages not yet consumed in the partition that carries the model.",
                   span=24, height=6)
           .min(0).decimals(0)
           .thresholds(steps((None, GREEN), (1000, YELLOW), (10000, RED)))
           .with_target(query(f"max by (model) (driftline_model_consumer_lag_messages{{{M}}})", "A", "lag")))

    # --- streaks and actions ---------------------------------------------------------------
    dataset_streak = (
        _series(ids, "Dataset drift streak",
                "Drifted windows in a row up to the latest one; the drift alerts fire when it reaches "
                f"consecutive_windows ({', '.join(map(str, consecutive))} in this config), then wait for:.",
                span=12)
        .min(0).decimals(0)
        .draw_style(viz.GraphDrawStyle.LINE)
        .line_interpolation(viz.LineInterpolation.STEP_AFTER)
        .thresholds(steps((None, GREEN), (consecutive[0], RED)))
        .thresholds_style(viz_builders.GraphThresholdsStyleConfig()
                          .mode(viz.GraphTresholdsStyleMode.DASHED))
        .with_target(query(f"max by (model) (driftline_dataset_drift_streak{{{M}}})", "A", "dataset")))
    feature_streak = (
        _series(ids, "Feature drift streaks", "Drifted windows in a row per feature.", span=12)
        .min(0).decimals(0)
        .line_interpolation(viz.LineInterpolation.STEP_AFTER)
        .thresholds(steps((None, GREEN), (consecutive[0], RED)))
        .thresholds_style(viz_builders.GraphThresholdsStyleConfig()
                          .mode(viz.GraphTresholdsStyleMode.DASHED))
        .with_target(query(f"max by (feature) (driftline_feature_drift_streak{{{MF}}})", "A", "{{feature}}")))
    decisions = (
        _series(ids, "Remediation decisions",
                "What driftline remediate decided for the model, by action and outcome (acted, dry_run, "
                "pending, skipped, ignored, failed), per interval.", span=12)
        .min(0).decimals(0)
        .draw_style(viz.GraphDrawStyle.BARS)
        .fill_opacity(70)
        .stacking(viz_builders.StackingConfig().mode(viz.StackingMode.NORMAL))
        .with_target(query(f"sum by (action, outcome) (increase(driftline_actions_total{{{M}}}[{RATE}]))",
                           "A",
                           "{{action}} {{outcome}}")))
    last_action = (stat.Panel()
                   .id(ids.next())
                   .title("Since the last action")
                   .description("Time since the receiver last carried out each action for the model "
                                "(outcome acted; dry-run decisions are in the panel beside).")
                   .datasource(DATASOURCE)
                   .span(12).height(8)
                   .with_target(query("time() - max by (action) "
                                      f"(driftline_action_last_timestamp_seconds{{{M}}})",
                                      "A", "{{action}}", instant=True))
                   .unit("s").decimals(0)
                   .thresholds(steps((None, ORANGE), (3600, GREEN)))
                   .color_mode(viz.BigValueColorMode.VALUE)
                   .graph_mode(viz.BigValueGraphMode.NONE)
                   .no_value("no action taken"))

    annotations = [
        (dash.AnnotationQuery().name("Window drifted").datasource(DATASOURCE).enable(True)
         .icon_color(RED).expr(f"max by (model) (driftline_dataset_drift{{{M}}}) == 1")),
        (dash.AnnotationQuery().name("Drift streak changed").datasource(DATASOURCE).enable(False)
         .icon_color(ORANGE)
         .expr(f"changes(max by (model) (driftline_dataset_drift_streak{{{M}}})[1m:]) > 0")),
        (dash.AnnotationQuery().name("Receiver acted").datasource(DATASOURCE).enable(True)
         .icon_color(BLUE).expr(f"changes(driftline_action_last_timestamp_seconds{{{M}}}[1m]) > 0")),
        (dash.AnnotationQuery().name("Dry-run decision").datasource(DATASOURCE).enable(True)
         .icon_color("purple").expr(f'increase(driftline_actions_total{{{M},outcome="dry_run"}}[1m]) > 0')),
    ]

    board = (dash.Dashboard("Driftline model")
             .uid(uid)
             .description("One model: which features drifted, since when and by how much against their "
                          "thresholds, data quality, performance against its bounds, the windows and what "
                          "driftline remediate did. Generated by `driftline dashboards`.")
             .tags([TAG, "model"])
             .editable()
             .time("now-6h", "now")
             .refresh("30s")
             .timezone("browser")
             .tooltip(model.DashboardCursorSync.CROSSHAIR)
             .with_variable(datasource_variable(datasource_uid))
             .with_variable(model_variable)
             .with_variable(feature_variable)
             .annotations(list(annotations))
             .link(dashboard_link("Fleet", grafana_path(fleet_uid, fleet_uid), "Every model at a glance",
                                  keep_vars=False))
             .link(dashboard_link("Collectors", grafana_path(collector_uid, collector_uid),
                                  "The sidecar collectors of this model"))
             .link(dash.DashboardLink("Drift report").type(model.DashboardLinkType.LINK)
                   .url(report_url).tooltip("The monitor's HTML drift report of the latest window")
                   .target_blank(True).keep_time(False).include_vars(False))
             .with_row(_row(ids, "Drift"))
             .with_panel(statistic).with_panel(p_values)
             .with_panel(drifted)
             .with_row(_row(ids, "Data quality"))
             .with_panel(missing).with_panel(new_categories).with_panel(quality)
             .with_row(_row(ids, "Performance"))
             .with_panel(performance)
             .with_row(_row(ids, "Windows and evaluation"))
             .with_panel(fill).with_panel(rows).with_panel(age).with_panel(duration)
             .with_row(_row(ids, "Intake, label join and lag"))
             .with_panel(events).with_panel(invalid).with_panel(backlog).with_panel(joins)
             .with_panel(lag)
             .with_row(_row(ids, "Streaks and remediation"))
             .with_panel(dataset_streak).with_panel(feature_streak)
             .with_panel(decisions).with_panel(last_action))
    return board

