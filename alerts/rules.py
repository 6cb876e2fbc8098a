"""Prometheus alert rules from the config: ``driftline rules``.

Pure: a loaded :class:`~monitor.config.Config` in, plain dicts out (:func:`rules_file`,
:func:`prometheus_rule`), and :func:`to_yaml` to render them; no file, network or clock.
Every rule is generated from the thresholds in the config: one group per model,
``driftline.<model>``, holding the alerts of :data:`~monitor.config.ALERT_NAMES` the
model's ``alerts:`` section leaves enabled, in that order.

The expressions and why (README, "Alerts and remediation"):

* **Sustained drift only.**  Every window is a fresh test at ``alpha``, so about one
  window in twenty alarms by chance.  Serve exports the streak (drifted windows in a row
  up to the latest: ``driftline_dataset_drift_streak``, ``driftline_feature_drift_streak``)
  and the drift rules compare it with ``alerts.consecutive_windows``; the streak does not
  depend on when Prometheus scrapes.
* **No data is never "no drift".**  ``DriftlineEvaluationStale`` fires when the latest
  window is older than the stale limit, and also when the series is absent altogether
  (a dead monitor, a model no replica owns), after the same limit, so that a monitor
  that has just started (no window closed yet) does not page at once.
* Each series is aggregated ``by`` the labels the alert keeps (``max by (model)``...), so
  that a model whose state moves to another replica in a rebalance (a new ``instance``)
  stays one alert and keeps its ``for:`` clock.  ``test`` is dropped from the feature
  alert for the same reason (it identifies nothing the feature does not); the rule's
  description names the configured test and threshold.

A ``PrometheusRule`` takes a namespace and extra labels (:func:`parse_label`,
:func:`check_namespace`): the Prometheus Operator loads only the rules its ``ruleSelector``
(kube-prometheus-stack: ``release: <release>``) and ``ruleNamespaceSelector`` select, and one
it does not select is ignored without a word.

Label values are escaped for PromQL string literals (:func:`promql_string`); names that
come from the config (features) reach annotations only as ``$labels``, never as template
text, so a feature called ``{{ x }}`` cannot break or inject a template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

import yaml

from monitor.config import ALERT_NAMES, Config, format_duration
from monitor.config.models import ModelConfig

#: The Grafana dashboard of one model (uid and slug): the contract with ``driftline dashboards``.
DASHBOARD_UID = "driftline-model"
DASHBOARD_SLUG = "driftline-model"
#: The stale limit of a count window when ``alerts.stale_after`` is not set (its rate is unknown).
COUNT_WINDOW_STALE_S = 3600.0
#: The range over which the collector's drop counter must rise.
DROP_RANGE = "5m"
#: Drop reasons that are the configuration working as intended, not a problem: sampling and the
#: ``X-Driftline-Skip`` opt-out (collectors/capture.py).  Every other reason alerts.
INTENDED_DROP_REASONS: tuple[str, ...] = ("sampled_out", "skipped")

API_VERSION = "monitoring.coreos.com/v1"
RESOURCE_NAME = "driftline-rules"

Format = Literal["rules", "prometheusrule"]
FORMATS: tuple[Format, ...] = ("rules", "prometheusrule")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal (Go escaping): backslash, double
    quote and control characters escaped, everything else as is."""
    out = []
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def selector(series: str, /, **labels: str) -> str:
    """``series{label="value",...}`` with each value escaped."""
    inner = ",".join(f"{name}={promql_string(value)}" for name, value in labels.items())
    return f"{series}{{{inner}}}"


def template_text(text: str) -> str:
    """Literal text inside a Go template (annotations are templates): ``{{`` is written as an
    action that prints it, so text from the config can never open an action."""
    return text.replace("{{", '{{ "{{" }}')


def number(value: float) -> str:
    """A threshold as PromQL and people read it: 3, 0.6, 1e-05."""
    return repr(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def stale_after(config: Config, model: str) -> float:
    """Seconds without an evaluated window before ``DriftlineEvaluationStale``:
    ``alerts.stale_after``; else ``stale_windows`` windows of a time window (the slide
    of a sliding one, how often it closes); else :data:`COUNT_WINDOW_STALE_S`."""
    alerts = config.model(model).alerts
    if alerts.stale_after is not None:
        return alerts.stale_after
    window = config.effective(model).window
    if window.kind == "time" and window.duration is not None:
        cadence = window.slide_seconds or float(window.duration)
        return alerts.stale_windows * cadence
    return COUNT_WINDOW_STALE_S


def dashboard_url(config: Config, model: str) -> str:
    base = config.links.grafana_url.rstrip("/")
    return f"{base}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}?var-model={quote(model, safe='')}"


def report_url(config: Config, model: str) -> str:
    return f"{config.links.monitor_url.rstrip('/')}/models/{quote(model, safe='')}/report"


def runbook_url(config: Config, alert: str) -> str:
    base = config.links.runbook_url.split("#", 1)[0]
    return f"{base}#{alert.lower()}"


def groups(config: Config) -> list[dict[str, Any]]:
    """One rule group per model, ``driftline.<model>``."""
    return [{"name": f"driftline.{m.name}", "rules": list(_model_rules(config, m))} for m in config.models]


def rules_file(config: Config) -> dict[str, Any]:
    """A Prometheus rules file (``rule_files:``)."""
    return {"groups": groups(config)}


#: The labels every PrometheusRule carries; extra labels are added to them (and win).
LABELS: dict[str, str] = {"app.kubernetes.io/name": "driftline", "app.kubernetes.io/component": "alert-rules"}

# Kubernetes names (apimachinery's validation): a DNS-1123 label, a DNS-1123 subdomain, and the
# name part of a qualified name (a label key is [prefix/]name); a label value is empty or a name.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def check_namespace(namespace: str) -> str:
    """``namespace`` if it is a valid namespace name (a DNS-1123 label); else ValueError."""
    if len(namespace) > 63 or not _DNS_LABEL.fullmatch(namespace):
        raise ValueError(f"--namespace {namespace!r}: not a namespace name (lower-case letters, digits "
                         "and '-', starting and ending with a letter or digit, at most 63 characters)")
    return namespace


def parse_label(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as a Kubernetes label: a key ``[prefix/]name`` and a value (may be empty);
    ValueError naming what is wrong."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--label {text!r}: expected KEY=VALUE, e.g. --label release=kube-prometheus-stack")
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f"--label {text!r}: the key's prefix {prefix!r} is not a DNS subdomain "
                         "(e.g. example.com)")
    if len(name) > 63 or not _NAME.fullmatch(name):
        raise ValueError(f"--label {text!r}: the key {key!r} is not a label key (letters, digits, '-', '_' "
                         "and '.', starting and ending with a letter or digit, at most 63 characters, "
                         "after an optional DNS-subdomain prefix and '/')")
    if len(value) > 63 or (value and not _NAME.fullmatch(value)):
        raise ValueError(f"--label {text!r}: the value {value!r} is not a label value (empty, or letters, "
                         "digits, '-', '_' and '.', starting and ending with a letter or digit, "
                         "at most 63 characters)")
    return key, value


def prometheus_rule(config: Config, *, name: str = RESOURCE_NAME, namespace: str | None = None,
                    labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A prometheus-operator ``PrometheusRule`` holding the same groups, in ``namespace`` (none:
    the one ``kubectl apply`` uses) with ``labels`` added to :data:`LABELS`."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = check_namespace(namespace)
    metadata["labels"] = {**LABELS, **(labels or {})}
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": groups(config)},
    }


def generate(config: Config, fmt: Format = "rules", *, namespace: str | None = None,
             labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The document of format ``fmt``; ``namespace`` and ``labels`` are the PrometheusRule's
    (a rules file has neither: ValueError)."""
    if fmt == "rules":
        if namespace is not None or labels:
            raise ValueError("--namespace and --label apply to --format prometheusrule only; "
                             "a rules file has no namespace or labels")
        return rules_file(config)
    if fmt == "prometheusrule":
        return prometheus_rule(config, namespace=namespace, labels=labels)
    raise ValueError(f"unknown format {fmt!r}; the formats are: {', '.join(FORMATS)}")


def to_yaml(document: dict[str, Any]) -> str:
    """YAML text, keys in the order built (stable: the same config gives the same bytes)."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)


# ---- one model's rules


def _model_rules(config: Config, model: ModelConfig) -> Iterator[dict[str, Any]]:
    name = model.name
    alerts = model.alerts
    for alert in ALERT_NAMES:
        if not alerts.enabled(alert):
            continue
        for expr, for_s, labels, extra in _conditions(config, model, alert):
            annotations = {**extra,
                           "runbook_url": template_text(runbook_url(config, alert)),
                           "dashboard_url": template_text(dashboard_url(config, name)),
                           "report_url": template_text(report_url(config, name))}
            yield {
                "alert": alert,
                "expr": expr,
                "for": format_duration(for_s),
                "labels": {"model": name, **labels, "severity": alerts.severity_of(alert)},
                "annotations": annotations,
            }


# expr, for (s), labels besides model and severity, summary and description
Rule = tuple[str, float, dict[str, str], dict[str, str]]


def _conditions(config: Config, model: ModelConfig, alert: str) -> Iterator[Rule]:
    name, alerts = model.name, model.alerts
    for_s = alerts.for_of(alert)
    k = alerts.consecutive_windows
    eff = config.effective(name)
    windows = f"{k} window{'s' if k != 1 else ''} in a row"
    if alert == "DriftlineDatasetDrift":
        rule = ("any feature" if eff.dataset_drift.share is None
                else f"at least {number(eff.dataset_drift.share)} of the features")
        yield (
            f"max by (model) ({selector('driftline_dataset_drift_streak', model=name)}) >= {k}",
            for_s,
            {},
            {"summary": f"{name}: sustained dataset drift",
             "description": (f"{name} drifted in {{{{ $value }}}} evaluated windows in a row "
                             f"(alert at {windows}; a window drifts when {rule} drifts at "
                             f"alpha {number(eff.alpha)}, {eff.correction} correction).")},
        )
    elif alert == "DriftlineFeatureDrift":
        for feature, spec in _monitored(model):
            if spec[0] is not None and spec[1] is not None:
                test = f"test {spec[0]}, threshold {number(spec[1])}"
            elif spec[0] is not None:
                test = f"test {spec[0]} at alpha {number(eff.alpha)}"
            else:
                test = f"automatic test at alpha {number(eff.alpha)}"
            yield (
                f"max by (model, feature) ("
                f"{selector('driftline_feature_drift_streak', model=name, feature=feature)}) >= {k}",
                for_s,
                {"feature": template_text(feature)},
                {"summary": f"{name}: feature {{{{ $labels.feature }}}} drifts",
                 "description": (f"Feature {{{{ $labels.feature }}}} of {name} drifted in "
                                 f"{{{{ $value }}}} evaluated windows in a row (alert at {windows}; "
                                 f"{test}, {eff.correction} correction).")},
            )
    elif alert == "DriftlinePerformanceBelowMin":
        metrics = model.performance.metrics() if model.performance is not None else {}
        for metric, bounds in metrics.items():
            series = (f"max by (model, metric) "
                      f"({selector('driftline_model_performance', model=name, metric=metric)})")
            parts, limits = [], []
            if bounds.min is not None:
                parts.append(f"{series} < {number(bounds.min)}")
                limits.append(f"min {number(bounds.min)}")
            if bounds.max is not None:
                parts.append(f"{series} > {number(bounds.max)}")
                limits.append(f"max {number(bounds.max)}")
            side = ("above its max" if bounds.min is None
                    else "below its min" if bounds.max is None else "outside its bounds")
            yield (
                " or ".join(parts),
                for_s,
                {"metric": metric},
                {"summary": f"{name}: {metric} {side}",
                 "description": (f"{metric} of {name} is {{{{ $value }}}} "
                                 f"(configured {', '.join(limits)}).")},
            )
    elif alert == "DriftlineEvaluationStale":
        limit = stale_after(config, name)
        shown = format_duration(limit)
        last = selector("driftline_last_evaluation_timestamp_seconds", model=name)
        yield (
            f"time() - max by (model) ({last}) > {number(limit)}",
            for_s,
            {"stale": "late"},
            {"summary": f"{name}: no window evaluated for over {shown}",
             "description": (f"The latest window of {name} was evaluated {{{{ $value | humanizeDuration }}}} "
                             f"ago (limit {shown}). No data is not \"no drift\": check the "
                             "model's traffic, the collector and the monitor.")},
        )
        yield (
            f"absent({last})",
            max(limit, for_s),
            {"stale": "absent"},
            {"summary": f"{name}: no window evaluated for over {shown}",
             "description": (f"No monitor has exported an evaluated window of {name} for {shown} "
                             "(the series is absent: the monitor is down, not scraped, or owns no "
                             "partition of the model, or no window has closed yet).")},
        )
    elif alert == "DriftlineCollectorDropping":
        intended = "|".join(INTENDED_DROP_REASONS)
        dropped = (f"driftline_collector_events_dropped_total{{model={promql_string(name)},"
                   f"reason!~{promql_string(intended)}}}")
        # requests left out before their rows were read (oversize, unparseable, overload: issue 15)
        unparsed = (f"driftline_collector_requests_unparsed_total{{model={promql_string(name)},"
                    f"reason!~{promql_string(intended)}}}")
        yield (
            f"sum by (model, reason) (increase({dropped}[{DROP_RANGE}])) > 0 or "
            f"sum by (model, reason) (increase({unparsed}[{DROP_RANGE}])) > 0",
            for_s,
            {},
            {"summary": f"{name}: the collector drops events ({{{{ $labels.reason }}}})",
             "description": (f"The collectors of {name} dropped {{{{ $value | humanize }}}} events "
                             f"in the last {DROP_RANGE} for reason {{{{ $labels.reason }}}} "
                             "(threshold: any drop; sampled_out and skipped are intended and "
                             "never alert).")},
        )
    elif alert == "DriftlineConsumerLagHigh":
        bound = alerts.max_consumer_lag
        yield (
            f"max by (model) ({selector('driftline_model_consumer_lag_messages', model=name)}) > {bound}",
            for_s,
            {},
            {"summary": f"{name}: the monitor lags behind the predictions",
             "description": (f"The partition carrying {name} has {{{{ $value | humanize }}}} "
                             f"messages not yet consumed (bound {bound}).")},
        )


def _monitored(model: ModelConfig) -> Iterator[tuple[str, tuple[str | None, float | None]]]:
    """The columns drift-tested one by one: the features, and the prediction (serve tests it
    like a feature where the reference has its column; without the column its series never
    exists and the rule stays silent)."""
    for feature, spec in model.features.items():
        yield feature, (spec.test, spec.threshold)
    if model.prediction is not None and model.prediction.name not in model.features:
        yield model.prediction.name, (model.prediction.test, model.prediction.threshold)

