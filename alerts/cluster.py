"""The port to Kubernetes: what the receiver asks of the cluster.

:mod:`alerts.kube` implements it with the official client (the only module that
imports ``kubernetes``); tests implement it in memory or drive the real one
against a fake API server.  Every method raises :class:`ActionFailed` with the
API's message when the cluster refuses (403, 404, 422, or a transient error that
outlasted the retries); nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from alerts.types import Decision, PastAction
from monitor.config import ObjectRef


class ActionFailed(Exception):
    """The cluster refused an action or stayed unreachable; ``reason`` is one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Claimed(Exception):
    """Another receiver wrote the lock target's last-action first (a 409 on the
    resourceVersion precondition, and a re-read showed its claim)."""


@dataclass(frozen=True)
class Retrain:
    """A retrain to create: the job template (any kind) plus what the receiver adds."""

    template: Mapping[str, Any]  # the parsed job_template manifest
    namespace: str
    model: str
    model_version: str | None
    reason: str  # the alert name, e.g. DriftlineDatasetDrift
    fingerprint: str
    alert_key: str
    drifted_features: Sequence[str]
    window: str  # e.g. "rows 4000-5000" or an ISO interval; "" when unknown


class Cluster(Protocol):
    def observe(self, model: str, namespace: str, template: Mapping[str, Any] | None,
                target: ObjectRef | None) -> tuple[PastAction, ...]:
        """Past actions of ``model``: retrain objects of the template's kind labelled
        ``driftline.io/model=<model>`` (running or not), and the lock target's
        ``driftline.io/last-action`` annotation."""
        ...

    def claim(self, target: ObjectRef, namespace: str, action: PastAction) -> None:
        """Write ``action`` as the target's ``driftline.io/last-action``, with the
        resourceVersion read just before as a precondition.  Raises :class:`Claimed`
        when another writer got there first with a claim that blocks this one."""
        ...

    def create_retrain(self, retrain: Retrain) -> str:
        """Create the retrain object; returns its name."""
        ...

    def rollback(self, target: ObjectRef, namespace: str) -> str:
        """Roll the target back; returns a one-line account (e.g. "deployment
        flight-delay: revision 7 -> 6").  ActionFailed when there is nothing to roll
        back to (no previous revision, no canary)."""
        ...

    def record_event(self, target: ObjectRef | None, namespace: str, decision: Decision) -> None:
        """A Kubernetes Event about ``decision`` on the target (or in the namespace)."""
        ...
