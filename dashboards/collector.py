"""The sidecar collectors: capture, delivery, drops by reason, queue, latencies, overload."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as viz_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, timeseries
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
    fixed,
    grafana_path,
    query,
    steps,
)
from monitor.config import Config

M = 'model=~"$model"'
RATE = "$__rate_interval"
#: The reason of a capture shed because the collector was over its CPU budget (counted per request,
#: in ``driftline_collector_requests_unparsed_total``: the rows of a shed call are never read).
OVERLOAD = "overload"


def _series(ids: Ids, title: str, description: str, *, span: int = 12,
            unit: str = "reqps") -> timeseries.Panel:
    return (timeseries.Panel()
            .id(ids.next())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .span(span).height(8)
            .unit(unit)
            .min(0)
            .line_width(1)
            .fill_opacity(10)
            .show_points(viz.VisibilityMode.NEVER)
            .legend(viz_builders.VizLegendOptions()
                    .display_mode(viz.LegendDisplayMode.TABLE)
                    .placement(viz.LegendPlacement.BOTTOM)
                    .show_legend(True)
                    .calcs(["lastNotNull", "max"]))
            .tooltip(viz_builders.VizTooltipOptions().mode(viz.TooltipDisplayMode.MULTI)))


def _quantiles(metric: str, by: str, legend: str) -> list[tuple[str, str, str]]:
    return [(ref, f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{M}}}[{RATE}])))",
             f"{legend} p{pct}")
            for ref, q, pct in (("A", "0.5", "50"), ("B", "0.95", "95"), ("C", "0.99", "99"))]


def build(config: Config, uid: str, fleet_uid: str, model_uid: str, datasource_uid: str) -> dash.Dashboard:
    ids = Ids()
    del config  # every collector series is labelled by model; the variable lists them
    model_variable = (dash.QueryVariable("model")
                      .label("Model")
                      .description("Models with a collector "
                                    "(from driftline_collector_events_captured_total).")
                      .datasource(DATASOURCE)
                      .query("label_values(driftline_collector_events_captured_total, model)")
                      .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                      .sort(model.VariableSort.ALPHABETICAL_ASC)
                      .multi(True)
                      .include_all(True)
                      .all_value(".*")
                      .current(model.VariableOption(selected=True, text="All", value="$__all")))

    flow = (_series(ids, "Captured, sent, failed",
                    "Per second: events handed to the delivery queue, acknowledged by the broker, and "
                    "handed to the sender but not delivered.")
            .with_target(query(f"sum by (model) "
                               f"(rate(driftline_collector_events_captured_total{{{M}}}[{RATE}]))",
                               "A", "{{model}} captured"))
            .with_target(query(f"sum by (model) (rate(driftline_collector_events_sent_total{{{M}}}[{RATE}]))",
                               "B", "{{model}} sent"))
            .with_target(query(f"sum by (model) "
                               f"(rate(driftline_collector_events_failed_total{{{M}}}[{RATE}]))",
                               "C", "{{model}} failed"))
            .override_by_query("C", [fixed(RED)]))
    drops = (_series(ids, "Dropped by reason",
                     "Per second, events (rows) dropped, by reason: queue_full (broker down or slow), "
                     "oversize, shutdown, unparseable (a request read, its answer not), sampled_out (SDK); "
                     "and requests left out before their rows were "
                     "read (requests): oversize, unparseable, no_model, overload (shed to keep the model "
                     "fast); sampled_out and skipped are the configuration working as intended.")
             .draw_style(viz.GraphDrawStyle.BARS)
             .fill_opacity(60)
             .stacking(viz_builders.StackingConfig().mode(viz.StackingMode.NORMAL))
             .with_target(query(f"sum by (model, reason) "
                                f"(rate(driftline_collector_events_dropped_total{{{M}}}[{RATE}])) > 0",
                                "A", "{{model}} {{reason}}"))
             .with_target(query(f"sum by (model, reason) "
                                f"(rate(driftline_collector_requests_unparsed_total{{{M}}}[{RATE}])) > 0",
                                "B", "{{model}} {{reason}} (requests)")))
    shed = (stat.Panel()
            .id(ids.next())
            .title("Shed for overload")
            .description("Requests whose capture was shed in the selected range because the collector was "
                         "over its CPU budget (reason overload): the model's callers were answered at full "
                         "speed, the monitor did not see these calls.")
            .datasource(DATASOURCE)
            .span(6).height(8)
            .with_target(query("sum(increase(driftline_collector_requests_unparsed_total"
                               f'{{{M},reason="{OVERLOAD}"}}'
                               "[$__range]))", "A", instant=True))
            .unit("short").decimals(0)
            .thresholds(steps((None, GREEN), (1, ORANGE)))
            .color_mode(viz.BigValueColorMode.BACKGROUND)
            .graph_mode(viz.BigValueGraphMode.NONE))
    loss = (stat.Panel()
            .id(ids.next())
            .title("Lost share")
            .description("Share of captured events that were not delivered (failed, queue full, oversize, "
                         "shutdown, an answer that could not be read) over the selected range.")
            .datasource(DATASOURCE)
            .span(6).height(8)
            .with_target(query(
                f"(sum(increase(driftline_collector_events_failed_total{{{M}}}[$__range])) + "
                f"(sum(increase(driftline_collector_events_dropped_total"
                f'{{{M},reason=~"queue_full|oversize|shutdown|unparseable"}}[$__range])) or vector(0))) / '
                f"clamp_min(sum(increase(driftline_collector_events_captured_total{{{M}}}[$__range])), 1)",
                "A", instant=True))
            .unit("percentunit").decimals(2)
            .thresholds(steps((None, GREEN), (0.001, YELLOW), (0.01, RED)))
            .color_mode(viz.BigValueColorMode.BACKGROUND)
            .graph_mode(viz.BigValueGraphMode.NONE))
    queue = (_series(ids, "Queue depth", "Events waiting in the collector's bounded delivery queue.",
                     span=12, unit="short")
             .decimals(0)
             .with_target(query(f"max by (model) (driftline_collector_queue_depth{{{M}}})", "A",
                                "{{model}}")))
    delivery = (_series(ids, "Delivery latency",
                        "Time from capture to the broker's acknowledgement, per event: quantiles.",
                        span=12, unit="s")
                .targets([query(expr, ref, legend) for ref, expr, legend in
                          _quantiles("driftline_collector_delivery_latency_seconds", "model, le",
                                     "{{model}}")]))
    proxy = (_series(ids, "Proxy latency by status class",
                     "Time the proxy took per request to the model, by the answer's status class (1xx..5xx, "
                     "error when there was no answer): quantiles.", span=24, unit="s")
             .targets([query(expr, ref, legend) for ref, expr, legend in
                       _quantiles("driftline_collector_proxy_latency_seconds", "status, le", "{{status}}")]))
    requests = (_series(ids, "Proxy requests by status class",
                        "Requests per second the proxy answered, by status class.", span=24)
                .with_target(query("sum by (status) "
                                   f"(rate(driftline_collector_proxy_latency_seconds_count{{{M}}}"
                                   f"[{RATE}]))", "A", "{{status}}"))
                .override_by_name("5xx", [fixed(RED)])
                .override_by_name("error", [fixed(RED)]))

    return (dash.Dashboard("Driftline collectors")
            .uid(uid)
            .description("The sidecar collectors (`driftline collect`): what they capture and deliver to "
                         "Kafka, what they drop and why, their queue, latencies and load shedding. "
                         "Generated by `driftline dashboards`.")
            .tags([TAG, "collector"])
            .editable()
            .time("now-6h", "now")
            .refresh("30s")
            .timezone("browser")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .with_variable(datasource_variable(datasource_uid))
            .with_variable(model_variable)
            .link(dashboard_link("Fleet", grafana_path(fleet_uid, fleet_uid), "Every model at a glance",
                                 keep_vars=False))
            .link(dashboard_link("Model drill-down", grafana_path(model_uid, model_uid),
                                 "One model's features, performance and actions"))
            .with_panel(flow).with_panel(drops)
            .with_panel(shed).with_panel(loss).with_panel(queue)
            .with_panel(delivery).with_panel(proxy).with_panel(requests))
