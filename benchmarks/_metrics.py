"""Scraping a ``/metrics`` endpoint for the benchmarks, with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def scrape(url: str, timeout: float = 2.0) -> list[Sample]:
    """(name, labels, value) of every sample on ``url``/metrics (Prometheus text format)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    return [(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text) for s in family.samples]
