"""The collector's counters from a scrape, and their identity (issue 15, defect 5).

Every row the collector takes in is counted ``captured`` once and then exactly once more, as
sent, failed or dropped (any reason); a request left out before its rows were known is counted
in ``requests_unparsed`` instead, and a call left out for its answer (outside 2xx, or no whole
answer) in ``responses_uncaptured``.  :func:`assert_identity` checks, from one scrape (text or bytes of the
Prometheus exposition), that ``captured == sent + failed + sum(dropped)``, per model or over all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

PREFIX = "driftline_collector_"


@dataclass
class Counts:
    captured: float = 0.0
    sent: float = 0.0
    failed: float = 0.0
    dropped: dict[str, float] = field(default_factory=dict)  # by reason
    unparsed: dict[str, float] = field(default_factory=dict)  # requests, by reason
    uncaptured: dict[str, float] = field(default_factory=dict)  # answers, by status class

    @property
    def dropped_total(self) -> float:
        return sum(self.dropped.values())


def counts(scrape: str | bytes, model: str | None = None) -> Counts:
    """The counters of one scrape (of ``model``'s rows only, when given)."""
    text = scrape.decode() if isinstance(scrape, bytes) else scrape
    out = Counts()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if not name.startswith(PREFIX) or not name.endswith("_total"):
                continue
            what = name[len(PREFIX):-len("_total")]
            if what == "requests_unparsed":
                out.unparsed[labels["reason"]] = out.unparsed.get(labels["reason"], 0.0) + value
                continue
            if what == "responses_uncaptured":
                out.uncaptured[labels["class"]] = out.uncaptured.get(labels["class"], 0.0) + value
                continue
            if model is not None and labels.get("model") != model:
                continue
            if what == "events_captured":
                out.captured += value
            elif what == "events_sent":
                out.sent += value
            elif what == "events_failed":
                out.failed += value
            elif what == "events_dropped":
                out.dropped[labels["reason"]] = out.dropped.get(labels["reason"], 0.0) + value
    return out


def assert_identity(scrape: str | bytes, model: str | None = None) -> Counts:
    """Assert ``captured == sent + failed + sum(dropped)`` (the queue must be empty, nothing in
    flight) and return the counts."""
    c = counts(scrape, model)
    assert c.captured == c.sent + c.failed + c.dropped_total, (
        f"captured {c.captured} != sent {c.sent} + failed {c.failed} + dropped {c.dropped}")
    return c
