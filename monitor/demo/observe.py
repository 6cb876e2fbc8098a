"""What the live view shows, read the way an operator reads it: over HTTP.

The collector's and the service's ``/metrics``, the service's
``/models/{model}/history``, Prometheus's ``/api/v1/alerts`` and the
receiver's ``/actions``.  A part that does not answer leaves its fields as they
were; the supervisor, not this module, decides whether a part has died.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from monitor.demo.client import Answer, Client, Unreachable
from monitor.demo.scenario import MODEL

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(value for (key, lbls), value in samples.items() if key == name and want <= set(lbls))


def by_label(samples: Samples, name: str, label: str, **labels: str) -> dict[str, float]:
    want = set(labels.items())
    return {dict(lbls)[label]: value for (key, lbls), value in samples.items()
            if key == name and want <= set(lbls) and label in dict(lbls)}


@dataclass(frozen=True)
class Snapshot:
    """One reading of the whole loop."""

    captured: float = 0.0
    delivered: float = 0.0
    dropped: float = 0.0
    unparsed: float = 0.0  # requests the collector left out before reading their rows
    consumed: float = 0.0
    window_rows: int = 0
    window_fill: float = 0.0
    windows: tuple[Mapping[str, Any], ...] = ()  # /history bodies, oldest first
    labels_joined: float = 0.0
    performance: Mapping[str, float] = field(default_factory=dict)
    streak: float = 0.0
    alerts: tuple[Mapping[str, Any], ...] = ()  # Prometheus's, pending or firing
    actions: tuple[Mapping[str, Any], ...] = ()  # the receiver's decisions, oldest first

    @property
    def firing(self) -> list[Mapping[str, Any]]:
        return [a for a in self.alerts if a.get("state") == "firing"]

    def decisions(self, outcome: str = "dry_run") -> list[Mapping[str, Any]]:
        return [a for a in self.actions if a.get("outcome") == outcome]


class Observer:
    """Reads a :class:`Snapshot` from the running parts."""

    def __init__(self, *, collector_metrics: str, serve: str, remediate: str, prometheus: str = "",
                 timeout: float = 2.0) -> None:
        self.urls = {"collector": collector_metrics, "serve": serve, "remediate": remediate,
                     "prometheus": prometheus}
        self.client = Client(timeout=timeout)
        self.last = Snapshot()

    def close(self) -> None:
        self.client.close()

    def _get(self, url: str, params: Mapping[str, Any] | None = None) -> Answer | None:
        try:
            answer = self.client.get(url, params)
        except Unreachable:
            return None
        return answer if answer.ok else None

    def read(self) -> Snapshot:
        values: dict[str, Any] = {}
        collector = self._get(f"{self.urls['collector']}/metrics")
        if collector is not None:
            samples = parse_metrics(collector.text)
            values["captured"] = total(samples, "driftline_collector_events_captured_total", model=MODEL)
            values["delivered"] = total(samples, "driftline_collector_events_sent_total", model=MODEL)
            values["dropped"] = total(samples, "driftline_collector_events_dropped_total", model=MODEL)
            values["unparsed"] = total(samples, "driftline_collector_requests_unparsed_total", model=MODEL)
        serve = self._get(f"{self.urls['serve']}/metrics")
        if serve is not None:
            samples = parse_metrics(serve.text)
            values["consumed"] = total(samples, "driftline_events_total", model=MODEL)
            values["window_rows"] = int(total(samples, "driftline_window_rows", model=MODEL))
            values["window_fill"] = total(samples, "driftline_window_fill_ratio", model=MODEL)
            values["labels_joined"] = total(samples, "driftline_labels_joined_total", model=MODEL)
            values["performance"] = by_label(samples, "driftline_model_performance", "metric", model=MODEL)
            values["streak"] = total(samples, "driftline_dataset_drift_streak", model=MODEL)
        history = self._get(f"{self.urls['serve']}/models/{MODEL}/history")
        if history is not None:
            values["windows"] = tuple(history.json())
        if self.urls["prometheus"]:
            alerts = self._get(f"{self.urls['prometheus']}/api/v1/alerts")
            if alerts is not None:
                values["alerts"] = tuple(alerts.json()["data"]["alerts"])
        actions = self._get(f"{self.urls['remediate']}/actions", {"limit": 100})
        if actions is not None:
            values["actions"] = tuple(sorted(actions.json()["actions"], key=lambda a: str(a.get("at"))))
        self.last = Snapshot(**{**self.last.__dict__, **values})
        return self.last
