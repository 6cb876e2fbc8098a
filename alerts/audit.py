"""The audit trail: every decision, kept for ``GET /actions`` and logged as one JSON line.

:class:`Audit` holds the latest ``size`` decisions in order (newest last) and
indexes them by id, so ``POST /actions/{id}/approve`` finds a pending one.  It
also remembers what the receiver itself decided (:meth:`memory`) as
:class:`~alerts.types.PastAction` records, which the policy reads beside the
cluster's: dry-run and pending decisions exist nowhere else.

Each recorded decision is logged by the ``driftline.remediate.audit`` logger as
one JSON object (ELK and Loki read it as is)::

    {"ts": "2026-12-07T00:10:02.120Z", "event": "decision", "id": "9f2c...", "model": "m",
     "action": "retrain", "outcome": "dry_run", "reason": "...", "alert": "DriftlineDatasetDrift",
     "fingerprint": "1a2b...", "starts_at": "...", "status": "firing", "detail": {...}}
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any

import msgspec

from alerts.types import TAKEN, Decision, PastAction

log = logging.getLogger("driftline.remediate.audit")



def to_dict(decision: Decision) -> dict[str, Any]:
    """The JSON form of a decision (``GET /actions`` and the log line)."""
    alert = decision.alert
    return {
        "id": decision.id,
        "at": _iso(decision.at),
        "model": decision.model,
        "action": decision.action,
        "outcome": decision.outcome,
        "decision": decision.label,
        "reason": decision.reason,
        "alert": alert.name,
        "status": alert.status,
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "labels": dict(alert.labels),
        "detail": dict(decision.detail),
    }


class Audit:
    """The latest decisions (the trail) and the actions this receiver took or would
    take (its memory), thread-safe.  A re-sent alert's ``skipped:duplicate`` joins the
    trail but never displaces the decision it duplicates from the memory."""

    def __init__(self, size: int) -> None:
        self._trail: deque[Decision] = deque(maxlen=size)
        self._taken: OrderedDict[str, Decision] = OrderedDict()  # id -> acted/dry_run/pending
        self._size = size
        self._lock = threading.Lock()

    def record(self, decision: Decision) -> None:
        """Keep ``decision`` and log it as one JSON line."""
        with self._lock:
            self._trail.append(decision)
            if decision.outcome in TAKEN:
                self._taken.pop(decision.id, None)
                self._taken[decision.id] = decision
                while len(self._taken) > self._size:
                    self._taken.popitem(last=False)
            elif decision.id in self._taken and self._taken[decision.id].outcome == "pending":
                del self._taken[decision.id]  # approved into skipped or failed: no longer pending
        line = {"ts": _iso(decision.at), "event": "decision", **to_dict(decision)}
        del line["at"]
        log.info("%s", msgspec.json.encode(line).decode())

    def get(self, decision_id: str) -> Decision | None:
        """The latest decision with this id (a pending one first)."""
        with self._lock:
            taken = self._taken.get(decision_id)
            if taken is not None:
                return taken
            return next((d for d in reversed(self._trail) if d.id == decision_id), None)

    def latest(self, *, model: str | None = None, outcome: str | None = None,
               limit: int = 100) -> list[Decision]:
        """Newest first."""
        with self._lock:
            decisions = list(self._trail)
        picked: list[Decision] = []
        for decision in reversed(decisions):
            if model is not None and decision.model != model:
                continue
            if outcome is not None and decision.outcome != outcome:
                continue
            picked.append(decision)
            if len(picked) >= limit:
                break
        return picked

    def memory(self) -> tuple[PastAction, ...]:
        """What this receiver decided to do (acted, dry-run, pending), as past actions."""
        with self._lock:
            taken = list(self._taken.values())
        return tuple(_past(d) for d in taken if d.model is not None and d.action in ("retrain", "rollback"))

    def taken_keys(self) -> set[str]:
        """Alert keys this receiver acted on, or decided to in dry-run or pending."""
        with self._lock:
            return {d.alert.key for d in self._taken.values()}


def _past(decision: Decision) -> PastAction:
    assert decision.model is not None and decision.action in ("retrain", "rollback")
    return PastAction(model=decision.model, action=decision.action, alert_key=decision.alert.key,
                      at=decision.at, outcome=decision.outcome)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
