"""``driftline rules``: Prometheus alert rules (or a PrometheusRule) from the config."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from monitor.cli.common import fail, reader_may_leave
from monitor.runtime import write_atomically


class RulesFormat(StrEnum):
    rules = "rules"
    prometheusrule = "prometheusrule"


def rules(
    config: Annotated[str, typer.Option("--config", "-C", metavar="FILE", help="driftline YAML config")],
    fmt: Annotated[RulesFormat, typer.Option(
        "--format", help="rules: a Prometheus rules file (rule_files:); prometheusrule: a "
                         "prometheus-operator PrometheusRule manifest")] = RulesFormat.rules,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", metavar="FILE", help="write here (atomically) instead of stdout")] = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", metavar="NS", help="prometheusrule: the PrometheusRule's namespace, one "
                                                "your Prometheus's ruleNamespaceSelector selects "
                                                "(default: none, kubectl's)")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", metavar="KEY=VALUE", help="prometheusrule: a label to add, repeatable; the ones "
                                             "your Prometheus's ruleSelector selects (e.g. release=<helm "
                                             "release> with kube-prometheus-stack)")] = None,
) -> None:
    """Prometheus alert rules generated from the config's thresholds: sustained dataset and
    feature drift, performance bounds, stale evaluation (or no series at all), collector
    drops and consumer lag, with for, severity and links from each model's alerts section."""
    from alerts import rules as generator
    from monitor.config import load_config

    try:
        labels = dict(generator.parse_label(text) for text in label or [])
        if namespace is not None:
            generator.check_namespace(namespace)
        if fmt is RulesFormat.rules and (namespace is not None or labels):
            raise ValueError("--namespace and --label apply to --format prometheusrule only; "
                             "a rules file has no namespace or labels")
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not Path(config).is_file():
        raise fail(f"{config}: no such config file")
    loaded = load_config(config)
    text = generator.to_yaml(generator.generate(loaded, fmt.value, namespace=namespace, labels=labels))
    if fmt is RulesFormat.prometheusrule and not labels:
        typer.echo("note: kube-prometheus-stack selects rules by label, "
                   "e.g. --label release=<your release>", err=True)
    if out is None:
        with reader_may_leave():
            sys.stdout.write(text)
        return
    write_atomically(Path(out), text)

