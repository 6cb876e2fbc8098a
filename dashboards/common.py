"""What the three dashboards share: the datasource variable, Prometheus queries, colours,
thresholds, links and the encoding of an SDK model into a plain JSON dict.

Every panel is built with grafana-foundation-sdk's typed builders; this module only
shortens the calls that every panel repeats.  Every query reads the data source from the
``${datasource}`` variable, so one file works against any Prometheus data source.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

#: The data source every panel, annotation and variable query reads.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: The uid of the provisioned Prometheus data source, the variable's default.
DEFAULT_DATASOURCE_UID = "driftline-prometheus"
#: Every dashboard carries this tag; dashboard links list the driftline dashboards by it.
TAG = "driftline"

GREEN, YELLOW, ORANGE, RED, BLUE, GREY = "green", "yellow", "orange", "red", "blue", "text"


class Ids:
    """Panel ids in the order panels are added, 1, 2, ...: stable across runs."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last += 1
        return self._last


def datasource_variable(default_uid: str) -> dash.DatasourceVariable:
    """``$datasource``: any Prometheus data source, the provisioned one selected."""
    return (dash.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .current(model.VariableOption(selected=True, text=default_uid, value=default_uid)))


def query(expr: str, ref: str, legend: str = "", *, instant: bool = False,
          table: bool = False) -> prometheus.Dataquery:
    """A PromQL target on ``${datasource}``: a range query, or an instant one (tables, stats)."""
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    target = target.instant() if instant else target.range()
    if table:
        target = target.format(PromQueryFormat.TABLE)
    return target


def steps(*points: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds: ``(None, base colour), (value, colour from there up), ...``."""
    return (dash.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=value, color=color) for value, color in points]))


def color(mode: model.FieldColorModeId) -> dash.FieldColor:
    return dash.FieldColor().mode(mode)


def prop(name: str, value: object) -> model.DynamicConfigValue:
    """One field-config property of an override (``unit``, ``custom.lineStyle`` ...)."""
    return model.DynamicConfigValue(id_val=name, value=value)


DASHED = prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})
NO_FILL = prop("custom.fillOpacity", 0)


def fixed(colour: str) -> model.DynamicConfigValue:
    return prop("color", {"mode": "fixed", "fixedColor": colour})


def transformation(kind: str, options: dict[str, Any] | None = None) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=kind, options=options or {})


def dashboard_link(title: str, url: str, tooltip: str, *, keep_vars: bool = True) -> dash.DashboardLink:
    """A link in the dashboard's header that keeps the time range (and the variables)."""
    return (dash.DashboardLink(title)
            .type(model.DashboardLinkType.LINK)
            .url(url)
            .tooltip(tooltip)
            .keep_time(True)
            .include_vars(keep_vars)
            .target_blank(False))


def grafana_path(uid: str, slug: str) -> str:
    """A dashboard's path inside Grafana; Grafana prefixes its own sub-path."""
    return f"/d/{uid}/{slug}"


def label_matcher(names: Sequence[str]) -> str:
    """A PromQL regex matching exactly ``names`` (escaped), for ``model=~"..."``."""
    return "|".join(_regex_escape(name) for name in sorted(names))


def _regex_escape(text: str) -> str:
    out = []
    for char in text:
        if char in r".^$*+?()[]{}|\\":
            out.append("\\\\" + char)  # a backslash for RE2, escaped once more for the string
        elif char == '"':
            out.append('\\"')
        else:
            out.append(char)
    return "".join(out)


def encode(built: object) -> dict[str, Any]:
    """An SDK model as the plain JSON object Grafana stores (keys sorted)."""
    data: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(built))
    return data
