"""``driftline dashboards preview``: the model drill-down's main panels drawn from Prometheus.

No Grafana renders here, so this draws a *preview*: the model dashboard is generated from the
config (:func:`dashboards.generator.generate`, the same panel definitions Grafana gets), its
main time-series panels are picked by title, each panel's PromQL is run as a range query
against Prometheus's HTTP API (``/api/v1/query_range``; no Grafana involved) with the
dashboard's variables substituted (``$model``, ``$feature`` as All, ``$__rate_interval``,
``$__interval``, ``$__range``), and matplotlib draws one subplot per panel: the panel's title
and unit, a log axis where the panel's axis is log, min/max where the panel sets them, the
series a panel override dashes (thresholds, alpha, performance bounds) dashed in the
override's colour, a legend from the query's legend format.  A footer says it is not a
Grafana screenshot.

A config is required (:func:`render` raises a one-line :class:`UsageError` without one): the
dashboard, and so the picture, depends on it (the performance bound lines exist only where the
config sets bounds).  Every failure (Prometheus unreachable, a query Prometheus rejects, no
data in any panel, an unwritable output) is one line: :class:`InputError` or
:class:`UsageError`.  A panel without data is drawn with "no data", not skipped.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after use("Agg"))
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import is_color_like  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402
from matplotlib.ticker import FuncFormatter, MultipleLocator, PercentFormatter  # noqa: E402

from dashboards.generator import FILES, generate  # noqa: E402
from monitor.config import Config  # noqa: E402
from monitor.errors import InputError, UnknownModel, UsageError  # noqa: E402
from monitor.runtime import write_atomically  # noqa: E402

#: The drill-down panels drawn by default, in this order.
DEFAULT_PANELS = ("Drift statistic by feature", "p-values (log scale)", "Performance vs bounds",
                  "Window fill")
FOOTER = "preview rendered from Prometheus by driftline dashboards preview — not a Grafana screenshot"
#: The picture's size in pixels: COLUMNS subplots a row, ROW_HEIGHT_PX per row, plus HEADER_PX.
DPI = 100
WIDTH_PX = 1600
ROW_HEIGHT_PX = 420
HEADER_PX = 120
COLUMNS = 2
TIMEOUT_S = 10.0
#: Grafana's unit ids shown as an axis label (percentunit is drawn as percent ticks).
UNIT_LABELS = {"s": "seconds", "percentunit": "percent", "percent": "percent"}


def size_px(panels: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of a picture of ``panels`` subplots."""
    rows = max(1, math.ceil(panels / COLUMNS))
    return WIDTH_PX, HEADER_PX + rows * ROW_HEIGHT_PX


@dataclass
class Series:
    label: str
    times: list[float]
    values: list[float]
    dashed: bool = False
    colour: str | None = None


@dataclass
class Panel:
    title: str
    unit: str
    log: bool
    minimum: float | None
    maximum: float | None
    series: list[Series] = field(default_factory=list)


def render(*, prometheus: str, model: str, out: Path, config: Config | None = None,
           panels: Sequence[str] | None = None, range_s: float = 900,
           step_s: float | None = None) -> list[str]:
    """Draw the drill-down's panels (``panels`` by title, else :data:`DEFAULT_PANELS`) for
    ``model`` over the last ``range_s`` seconds into the PNG ``out`` (written atomically);
    returns the titles drawn, in order.  No data in any panel is an :class:`InputError`."""
    end = time.time()
    collected = collect(prometheus=prometheus, model=model, config=config, panels=panels, start=end - range_s,
                        end=end, step_s=step_s)
    if not any(panel.series for panel in collected):
        raise InputError(f"Prometheus at {prometheus.rstrip('/')} has no data for model {model!r} in the "
                         f"last {range_s:g} s in any of the panels {', '.join(p.title for p in collected)}")
    draw(collected, model=model, start=end - range_s, end=end, out=out)
    return [panel.title for panel in collected]


def collect(*, prometheus: str, model: str, config: Config | None, panels: Sequence[str] | None,
            start: float, end: float, step_s: float | None = None) -> list[Panel]:
    """The chosen panels of the generated model dashboard with their series: each target's
    PromQL, variables substituted, as a range query from ``start`` to ``end``."""
    if config is None:
        raise UsageError("preview needs --config FILE: the dashboard it draws is generated from the config")
    if model not in config.model_names():
        raise UnknownModel(model, config.model_names())
    range_s = end - start
    if range_s <= 0 or (step_s is not None and step_s <= 0):
        raise UsageError("preview: the range and the step must be positive")
    board = generate(config)[FILES["model"]]
    chosen = _choose(board, list(panels) if panels is not None else list(DEFAULT_PANELS))
    step = step_s if step_s is not None else max(1.0, round(range_s / 240))
    variables = {"$__rate_interval": f"{int(max(60, 4 * step))}s", "$__interval": f"{max(1, int(step))}s",
                 "$__range": f"{max(1, int(range_s))}s", "${model}": _quoted(model), "$model": _quoted(model),
                 "${feature}": ".*", "$feature": ".*"}
    base = prometheus.rstrip("/")
    return [_fetch(base, spec, variables, start, end, step) for spec in chosen]


def _walk(items: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    for panel in items:
        found.append(panel)
        found.extend(_walk(panel.get("panels") or []))  # a collapsed row holds its panels
    return found


def _choose(board: Mapping[str, Any], titles: list[str]) -> list[Mapping[str, Any]]:
    by_title = {str(p.get("title")): p for p in _walk(board.get("panels") or [])
                if p.get("type") == "timeseries"}
    unknown = [title for title in titles if title not in by_title]
    if unknown or not titles:
        raise UsageError(f"preview: no time-series panel titled {', '.join(map(repr, unknown)) or 'at all'} "
                         f"in the model dashboard; there are {', '.join(map(repr, by_title))}")
    return [by_title[title] for title in titles]


def _quoted(value: str) -> str:
    """``value`` inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _substitute(expr: str, variables: Mapping[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):  # $__rate_interval before $__range ...
        expr = expr.replace(name, variables[name])
    return expr


def _fetch(base: str, spec: Mapping[str, Any], variables: Mapping[str, str], start: float, end: float,
           step: float) -> Panel:
    defaults = (spec.get("fieldConfig") or {}).get("defaults") or {}
    custom = defaults.get("custom") or {}
    panel = Panel(title=str(spec.get("title", "")), unit=str(defaults.get("unit") or ""),
                  log=(custom.get("scaleDistribution") or {}).get("type") == "log",
                  minimum=_number(defaults.get("min")), maximum=_number(defaults.get("max")))
    dashed, colours = _reference_refs(spec)
    for target in spec.get("targets") or []:
        ref = str(target.get("refId", ""))
        expr = _substitute(str(target.get("expr", "")), variables)
        for item in _query_range(base, expr, start, end, step):
            labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            points = [(float(t), float(v)) for t, v in item.get("values") or []]
            points = [(t, v) for t, v in points if math.isfinite(v) and (v > 0 or not panel.log)]
            if points:
                panel.series.append(Series(_legend(str(target.get("legendFormat") or ""), labels),
                                           [t for t, _ in points], [v for _, v in points],
                                           dashed=ref in dashed, colour=colours.get(ref)))
    return panel


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _reference_refs(spec: Mapping[str, Any]) -> tuple[set[str], dict[str, str]]:
    """The refIds a ``byFrameRefID`` override dashes, and the fixed colours overrides give."""
    dashed: set[str] = set()
    colours: dict[str, str] = {}
    for override in (spec.get("fieldConfig") or {}).get("overrides") or []:
        matcher = override.get("matcher") or {}
        if matcher.get("id") != "byFrameRefID":
            continue
        ref = str(matcher.get("options"))
        for prop in override.get("properties") or []:
            value = prop.get("value")
            if not isinstance(value, dict):
                continue
            if prop.get("id") == "custom.lineStyle" and value.get("fill") == "dash":
                dashed.add(ref)
            elif prop.get("id") == "color":
                colour = str(value.get("fixedColor", ""))
                if is_color_like(colour):
                    colours[ref] = colour
    return dashed, colours


def _legend(template: str, labels: Mapping[str, str]) -> str:
    if not template:
        shown = {k: v for k, v in labels.items() if k != "__name__"}
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}"
    return re.sub(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def _query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                     "step": f"{step:g}"})
    url = f"{base}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310 (the user's URL)
            body = answer.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        document = _json(body)
        if isinstance(document, dict) and document.get("error"):
            kind = document.get("errorType", "error")
            raise InputError(f"Prometheus at {base} rejected the query {expr!r}: "
                             f"{kind}: {_line(str(document['error']))}") from None
        raise InputError(f"Prometheus at {base} answered HTTP {exc.code} to a range query") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise InputError(f"cannot reach Prometheus at {base}: {_line(str(reason))}") from None
    document = _json(body)
    if not isinstance(document, dict) or document.get("status") != "success":
        raise InputError(f"{base} did not answer like Prometheus's query API (/api/v1/query_range)")
    data = document.get("data") or {}
    result = data.get("result") if isinstance(data, dict) else None
    if data.get("resultType") != "matrix" or not isinstance(result, list):
        raise InputError(f"Prometheus at {base} did not return a range (matrix) for {expr!r}")
    return [item for item in result if isinstance(item, dict)]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _line(text: str) -> str:
    return " ".join(text.split())[:300]


def draw(panels: Sequence[Panel], *, model: str, start: float, end: float, out: Path) -> None:
    """One subplot per panel (a panel without series says "no data"), a title, the footer;
    the PNG written to ``out`` atomically."""
    directory = out.parent if str(out.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"{out}: directory {directory} does not exist")
    width, height = size_px(len(panels))
    rows = max(1, math.ceil(len(panels) / COLUMNS))
    figure = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    try:
        footer = 30 / height
        figure.set_layout_engine(ConstrainedLayoutEngine(rect=(0, footer, 1, 1 - footer)))
        until = datetime.fromtimestamp(end, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        span = end - start
        last = f"{span / 60:.0f} min" if span >= 120 else f"{span:.0f} s"
        figure.suptitle(f"Driftline model: {model} (last {last} until {until})",
                        fontsize=14)
        figure.text(0.5, 0.012, FOOTER, ha="center", va="bottom", fontsize=9, style="italic", color="#555555")
        axes = figure.subplots(rows, COLUMNS, squeeze=False)
        for index, ax in enumerate(axes.flat):
            if index < len(panels):
                _plot(ax, panels[index], start, end)
            else:
                ax.set_axis_off()
        _save(figure, out)
    finally:
        plt.close(figure)


def _plot(ax: Axes, panel: Panel, start: float, end: float) -> None:
    ax.set_title(panel.title, loc="left", fontsize=12)
    if panel.log:
        ax.set_yscale("log")
    for series in panel.series:
        ax.plot(series.times, series.values, label=series.label,
                linestyle="--" if series.dashed else "-", linewidth=1.6 if series.dashed else 1.4,
                color=series.colour)
    # x: Unix seconds, ticked on whole minutes (or hours) of UTC clock time
    ax.set_xlim(start, end)
    ax.xaxis.set_major_locator(MultipleLocator(_tick_seconds(end - start)))
    clock = "%H:%M" if end - start > 8 * 60 else "%H:%M:%S"
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: datetime.fromtimestamp(x, tz=UTC).strftime(clock)))
    if panel.unit == "percentunit":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    label = UNIT_LABELS.get(panel.unit, "" if panel.unit in ("", "short", "none") else panel.unit)
    if panel.log:
        label = f"{label} (log scale)" if label else "log scale"
    if label:
        ax.set_ylabel(label)
    if panel.minimum is not None or panel.maximum is not None:
        ax.set_ylim(bottom=panel.minimum, top=panel.maximum)
    ax.grid(True, alpha=0.3)
    if panel.series:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", fontsize=14,
                color="#888888")


def _tick_seconds(range_s: float) -> float:
    """A round tick spacing giving at most about 8 ticks over ``range_s``."""
    for spacing in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if range_s / spacing <= 8:
            return spacing
    return 86400 * math.ceil(range_s / 86400 / 8)


def _save(figure: Figure, out: Path) -> None:
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=DPI)
    write_atomically(out, png.getvalue())
