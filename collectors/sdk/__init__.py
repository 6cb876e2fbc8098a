"""The in-process collector (see :mod:`collectors.sdk.collector`)."""

from collectors.sdk.collector import Collector, DriftlineMiddleware, instances

__all__ = ["Collector", "DriftlineMiddleware", "instances"]
