"""What a collector captures: instances of a prediction, before the wire format.

An inference request may carry a batch; each :class:`Instance` is one row of
it, its inputs (feature -> JSON scalar) and outputs (name -> JSON scalar).
:class:`Capture` is one request/response pair after extraction, with the
request id, the time and what the proxy measured.  :meth:`Capture.events`
turns it into events of the wire contract (``monitor.wire.decode``): one
event per instance, request ids ``<id>`` for a single instance and
``<id>/<i>`` within a batch, so labels can be joined to each row, and, when the
call's path named a model (a multi-model server), that name as ``served_model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Instance:
    inputs: Mapping[str, Scalar]
    outputs: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class Capture:
    """One proxied (or logged) prediction call."""

    model: str
    request_id: str
    ts_ms: int
    instances: tuple[Instance, ...]
    latency_ms: float | None = None
    status: int | None = None
    model_version: str | None = None
    served_model: str | None = None  # the model named by the call's path (multi-model servers)

    def events(self) -> list[dict[str, Any]]:
        single = len(self.instances) == 1
        events = [{"request_id": self.request_id if single else f"{self.request_id}/{i}",
                   "ts": self.ts_ms, "inputs": dict(x.inputs), "outputs": dict(x.outputs),
                   "latency_ms": self.latency_ms, "status": self.status}
                  for i, x in enumerate(self.instances)]
        if self.served_model is not None:
            for event in events:
                event["served_model"] = self.served_model
        return events
