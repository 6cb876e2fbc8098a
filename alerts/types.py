"""The receiver's vocabulary: alerts in, decisions out.

An :class:`Alert` is one entry of Alertmanager's webhook payload (version 4).
The policy (:mod:`alerts.policy`, pure) turns alerts, the config and what the
cluster shows (:class:`ClusterView`) into :class:`Decision`\\ s; the executor
carries out the ones whose outcome is ``acted`` and turns a failure into
``failed``.  Everything here is frozen data: no I/O, no clock.

Outcomes (``driftline_actions_total{outcome}``)::

    acted     the action was (or, before execution, is to be) carried out
    dry_run   dry_run: true; recorded, nothing changed
    pending   approval: manual; waits for POST /actions/{id}/approve
    skipped   a safety rule held it back (reason: duplicate, cooldown,
              retrain-running, rate-limit, claimed-elsewhere)
    ignored   nothing to do (reason: resolved, notify-only, unknown-model,
              missing-label, no-action-configured)
    failed    the Kubernetes API refused or stayed unreachable (reason: its message)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["acted", "dry_run", "pending", "skipped", "ignored", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("acted", "dry_run", "pending", "skipped", "ignored", "failed")
#: Outcomes that stand for an action taken, or about to be (dry run, awaiting approval): what
#: dedupe and cooldown count, what the receiver remembers, and what makes it read the cluster.
TAKEN: frozenset[Outcome] = frozenset({"acted", "dry_run", "pending"})

#: What a model's config can ask for; "notify" means no cluster action.
ActionName = Literal["retrain", "rollback", "notify"]
ACTIONS: tuple[ActionName, ...] = ("retrain", "rollback", "notify")

#: Which alert triggers which ``actions:`` entry of the model; other alerts notify only.
TRIGGERS: Mapping[str, str] = {
    "DriftlineDatasetDrift": "on_drift",
    "DriftlinePerformanceBelowMin": "on_performance_drop",
}

#: Labels and annotations the receiver writes on the objects it creates or changes.
LABEL_MODEL = "driftline.io/model"
LABEL_REASON = "driftline.io/reason"
LABEL_FINGERPRINT = "driftline.io/alert-fingerprint"
ANNOTATION_ALERT_KEY = "driftline.io/alert-key"  # fingerprint@startsAt: the dedupe key
ANNOTATION_LAST_ACTION = "driftline.io/last-action"  # JSON of a PastAction, on the lock target


@dataclass(frozen=True)
class Alert:
    """One alert of an Alertmanager webhook (version 4)."""

    status: Literal["firing", "resolved"]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str  # RFC 3339, as Alertmanager sent it (part of the alert's identity)
    ends_at: str | None
    fingerprint: str
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def model(self) -> str | None:
        return self.labels.get("model")

    @property
    def key(self) -> str:
        """The dedupe key: the same alert episode re-sent (repeat_interval) or replayed
        has the same fingerprint and startsAt; a new episode has a new startsAt."""
        return f"{self.fingerprint}@{self.starts_at}"


@dataclass(frozen=True)
class PastAction:
    """An action already taken (or, in memory, decided), as the cluster or the
    receiver's own record shows it."""

    model: str
    action: ActionName
    alert_key: str
    at: float  # epoch seconds
    running: bool = False  # a retrain object that has not finished yet
    outcome: Outcome = "acted"  # "dry_run" / "pending" for the receiver's in-memory records


@dataclass(frozen=True)
class ClusterView:
    """What the receiver saw before deciding: the actions the cluster records for the
    models concerned (retrain objects by label, the lock target's last-action
    annotation), plus its own dry-run and pending decisions."""

    past: tuple[PastAction, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What the receiver decided about one alert (and, after execution, what happened)."""

    id: str
    alert: Alert
    model: str | None
    action: ActionName | None
    outcome: Outcome
    reason: str  # the why of skipped/ignored/failed; a one-line account otherwise
    at: float  # epoch seconds
    detail: Mapping[str, str] = field(default_factory=dict)  # e.g. {"job": "retrain-m-1a2b"}

    @property
    def label(self) -> str:
        """``outcome`` or ``outcome:reason`` for skipped, ignored and failed (the audit's word)."""
        return f"{self.outcome}:{self.reason}" if self.outcome in ("skipped", "ignored", "failed") \
            else self.outcome


def decision_id(alert: Alert, action: str | None) -> str:
    """A stable id: the same alert episode and action always get the same id."""
    digest = hashlib.sha256(f"{alert.key}|{action or ''}|{alert.status}".encode()).hexdigest()
    return digest[:16]
