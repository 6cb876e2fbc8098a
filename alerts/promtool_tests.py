"""``promtool test rules`` files, as data: pure, like :mod:`alerts.rules`.

A test file names the rule files, and holds test groups: input series in promtool's
notation (``metric{label="value"}`` and a values string, ``_`` where a scrape has no
sample) and the alerts expected at given times (labels and expanded annotations).
The series themselves come from the caller (the tests render them the way serve and
the collector export them); this module only writes the notation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from alerts.rules import promql_string


def series(name: str, labels: Mapping[str, str]) -> str:
    """``name{a="x",b="y"}``, labels sorted, values escaped as in PromQL."""
    inner = ",".join(f"{key}={promql_string(labels[key])}" for key in sorted(labels))
    return f"{name}{{{inner}}}"


def value_text(value: float | None) -> str:
    """One value: ``_`` for no sample, integers without a point, others as Python's repr."""
    if value is None:
        return "_"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def values(samples: Sequence[float | None]) -> str:
    """The values string of one input series, one entry per interval."""
    return " ".join(value_text(v) for v in samples)


def input_series(timeline: Mapping[tuple[str, tuple[tuple[str, str], ...]], Sequence[float | None]]
                 ) -> list[dict[str, str]]:
    """Series (name, sorted label pairs) -> values per interval, as promtool's ``input_series``,
    sorted by series so that the file is stable."""
    return [{"series": series(name, dict(labels)), "values": values(samples)}
            for (name, labels), samples in sorted(timeline.items())]


def expected(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """One alert expected to fire: its labels (without ``alertname``) and annotations."""
    return {"exp_labels": dict(labels), "exp_annotations": dict(annotations)}


def alert_check(eval_time: str, alertname: str, alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``alertname`` at ``eval_time`` fires exactly ``alerts`` (none: it does not fire)."""
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": [dict(a) for a in alerts]}


def test_group(name: str, interval: str, series_: Sequence[Mapping[str, str]],
               checks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"name": name, "interval": interval, "input_series": [dict(s) for s in series_],
            "alert_rule_test": [dict(c) for c in checks]}


def test_file(rule_files: Sequence[str], groups: Sequence[Mapping[str, Any]],
              evaluation_interval: str = "1m") -> dict[str, Any]:
    return {"rule_files": list(rule_files), "evaluation_interval": evaluation_interval,
            "tests": [dict(g) for g in groups]}
