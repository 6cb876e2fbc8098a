"""What the monitor says about a model's latest window, for the retrain's context.

A retrain Job is told which features drifted and in which window
(``DRIFTLINE_DRIFTED_FEATURES``, ``DRIFTLINE_WINDOW``).  The alerts carry the
features that fired; the monitor's ``GET /models/{m}/drift`` (at
``links.monitor_url``) has the exact window.  Best effort: the monitor being
away costs the context, never the action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowContext:
    drifted_features: tuple[str, ...]
    window: str  # "rows 4000-5000 (evaluated 2026-12-07T00:10:00.000+00:00)"


class MonitorLookup:
    """Reads ``/models/{m}/drift`` with a short timeout; None when it cannot."""

    def __init__(self, base_url: str, timeout_s: float = 1.0) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout_s

    def __call__(self, model: str) -> WindowContext | None:
        url = f"{self._base}/models/{quote(model, safe='')}/drift"
        try:
            response = httpx.get(url, timeout=self._timeout)
            if response.status_code != 200:
                log.info("monitor answered %d for %s: no window context", response.status_code, url)
                return None
            return context(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.info("monitor unreachable at %s (%s): no window context", url, exc)
            return None


def context(body: Any) -> WindowContext | None:
    """The window context in a ``/models/{m}/drift`` body; None when it has none."""
    if not isinstance(body, dict):
        return None
    features = body.get("features")
    drifted = tuple(sorted(name for name, result in features.items()
                           if isinstance(result, dict) and result.get("drift") is True)) \
        if isinstance(features, dict) else ()
    window = body.get("window")
    text = ""
    if isinstance(window, dict):
        unit = "rows" if window.get("kind") == "count" else "ms"
        text = f"{unit} {window.get('start')}-{window.get('end')}"
        if body.get("evaluated_at"):
            text += f" (evaluated {body['evaluated_at']})"
    return WindowContext(drifted, text)
