"""The receiver's Prometheus metrics (the only prometheus_client import in ``alerts``).

``driftline_actions_total{model,action,outcome}``            every decision, by outcome
``driftline_action_last_timestamp_seconds{model,action}``   when an action was last carried out
``driftline_remediate_webhooks_total{result}``              webhook requests: accepted or why not
``driftline_remediate_handle_seconds``                      time to handle one accepted webhook

Label values come from the config (model, action) or fixed sets (outcome,
result); an alert naming a model not in the config counts under ``model=""``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from alerts.types import Decision

#: Why a webhook request was not handled (``driftline_remediate_webhooks_total{result}``).
WEBHOOK_RESULTS: tuple[str, ...] = ("accepted", "unauthorized", "malformed", "oversize")


class ReceiverMetrics:
    """A fresh registry (not the process-wide one) with the receiver's families."""

    def __init__(self, models: tuple[str, ...] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._models = set(models)
        self.actions = Counter(
            "driftline_actions_total",
            "Remediation decisions, by outcome: acted, dry_run, pending, skipped, ignored, failed "
            "(action none when the alert named no usable model; model empty when it is not "
            "configured).",
            ["model", "action", "outcome"], registry=self.registry)
        self.last_action = Gauge(
            "driftline_action_last_timestamp_seconds",
            "Unix time (seconds) at which the receiver last carried out the action for the model "
            "(outcome acted; dry-run decisions show in driftline_actions_total only).",
            ["model", "action"], registry=self.registry)
        self.webhooks = Counter(
            "driftline_remediate_webhooks",
            "Webhook requests to POST /alerts, by result: " + ", ".join(WEBHOOK_RESULTS) + ".",
            ["result"], registry=self.registry)
        for result in WEBHOOK_RESULTS:
            self.webhooks.labels(result=result)
        self.handle_seconds = Histogram(
            "driftline_remediate_handle_seconds",
            "Time to decide on (and carry out) one accepted webhook, in seconds.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def count(self, decision: Decision) -> None:
        model = decision.model if decision.model in self._models else ""
        action = decision.action or "none"
        self.actions.labels(model=model, action=action, outcome=decision.outcome).inc()
        if decision.outcome == "acted":
            self.last_action.labels(model=model, action=action).set(decision.at)
