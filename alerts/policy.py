"""The policy: alerts, the config and what the cluster shows in; decisions out.

Pure: no I/O and no clock (``now`` is a parameter), so every rule is a table test
and the property test can replay any sequence of deliveries.

:func:`decide` gives one :class:`~alerts.types.Decision` per (alert, action): an
alert whose model's action set has both ``retrain`` and ``rollback`` gives two
(retrain first); an alert that maps to no cluster action gives one, with
``action`` ``"notify"`` (an alert that only notifies) or ``None``.

The rules, in the order they are applied (the first that holds gives the reason):

Mapping (outcome ``ignored``):

1. ``resolved``: only ``firing`` alerts act; a resolved one is recorded.
2. ``notify-only``: the alert is not in :data:`~alerts.types.TRIGGERS`.
3. ``missing-label``: no (or an empty) ``model`` label.
4. ``unknown-model``: the model is not in the config.
5. ``no-action-configured``: the model has no ``actions``, or not the set the alert
   triggers.

Safety (outcome ``skipped``), per action; the past is ``view.past`` plus the
decisions made earlier in the same call (so one payload is as safe as several):

6. ``duplicate``: this alert episode (``fingerprint@startsAt``) was already acted
   on, dry-run or held pending for this action.  First, because it names exactly
   what happened: this very alert was handled, whatever else holds.
7. ``retrain-running``: a retrain of the model is still running (or is being
   started by an earlier decision of this call).  Before the cooldown because it is
   the concrete fact that blocks (a training run can outlast the cooldown, and then
   the cooldown would be a wrong account); it applies to ``retrain`` only.
8. ``cooldown``: the model had this action (acted, dry-run or pending) less than
   ``actions.cooldown`` seconds ago.
9. ``rate-limit``: ``remediate.max_actions_per_hour`` actions (acted or dry-run,
   every model) in the last 3600 s.  Last: it is global, the least specific reason.

Then: ``dry_run: true`` (the default) gives ``dry_run``; else ``approval: manual``
gives ``pending``; else ``acted`` (to be carried out; the executor turns a failure
into ``failed``).  Their ``reason`` is a one-line account naming the action, the
model, the alert and its ``startsAt``.

:func:`approve` re-checks rules 4-9 for a pending decision against a fresh view.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerts.types import (
    TAKEN,
    TRIGGERS,
    ActionName,
    Alert,
    ClusterView,
    Decision,
    Outcome,
    PastAction,
    decision_id,
)
from monitor.config import ActionSet, Config, ModelConfig
from monitor.errors import UnknownModel

#: The window of the global rate limit, in seconds.
RATE_WINDOW = 3600.0

#: Outcomes that count against the global rate limit.
_RATED: frozenset[Outcome] = frozenset({"acted", "dry_run"})


def decide(alerts: Sequence[Alert], config: Config, view: ClusterView, now: float) -> list[Decision]:
    """The decisions for one webhook payload, in the payload's order (see the module doc)."""
    past: list[PastAction] = list(view.past)  # grows with this call's own decisions
    decisions: list[Decision] = []
    for alert in alerts:
        decisions.extend(_decide_one(alert, config, past, now))
    return decisions


def approve(pending: Decision, config: Config, view: ClusterView, now: float) -> Decision:
    """A pending decision, approved: ``acted`` if the safety rules still let it through
    against ``view`` (the pending decision's own record in it, same alert key and action
    with outcome ``pending``, is left out), else ``skipped`` with the rule's reason (or
    ``ignored`` if the config no longer has the model or its action).  If the config has
    since turned ``dry_run`` on, the outcome is ``dry_run``.

    Raises :class:`ValueError` (one line) when ``pending`` is not a pending retrain or
    rollback: approving anything else is the caller's mistake (HTTP 409), not a decision
    to record.
    """
    if pending.outcome != "pending" or pending.action not in ("retrain", "rollback"):
        raise ValueError(f"decision {pending.id} is {pending.label}, not pending; nothing to approve")
    action: ActionName = pending.action
    alert = pending.alert
    past = [p for p in view.past
            if not (p.alert_key == alert.key and p.action == action and p.outcome == "pending")]
    model_name = alert.model or None
    mapped = _action_set(alert, config)
    if isinstance(mapped, str):  # the config changed since: the model or its action set is gone
        return _decision(alert, model_name, action, "ignored", mapped, now)
    model, action_set = mapped
    if getattr(action_set, action) is None:
        return _decision(alert, model_name, action, "ignored", "no-action-configured", now)
    assert model.actions is not None
    why = _safety(alert, model, action, config, past, now)
    if why is not None:
        return _decision(alert, model_name, action, "skipped", why, now)
    if model.actions.dry_run:
        return _decision(alert, model_name, action, "dry_run",
                         _account(alert, model, action_set, action, "would"), now)
    return _decision(alert, model_name, action, "acted",
                     "approved: " + _account(alert, model, action_set, action, "will"), now)


def _decide_one(alert: Alert, config: Config, past: list[PastAction], now: float) -> list[Decision]:
    """The decisions for one alert; appends the ones that claim an action to ``past``."""
    model_name = alert.model or None
    if alert.status != "firing":
        return [_decision(alert, model_name, None, "ignored", "resolved", now)]
    if alert.name not in TRIGGERS:
        return [_decision(alert, model_name, "notify", "ignored", "notify-only", now)]
    mapped = _action_set(alert, config)
    if isinstance(mapped, str):
        return [_decision(alert, model_name, None, "ignored", mapped, now)]
    model, action_set = mapped
    assert model.actions is not None
    decisions: list[Decision] = []
    for action in _actions_of(action_set):
        why = _safety(alert, model, action, config, past, now)
        if why is not None:
            decisions.append(_decision(alert, model.name, action, "skipped", why, now))
            continue
        if model.actions.dry_run:
            outcome: Outcome = "dry_run"
            reason = _account(alert, model, action_set, action, "would")
        elif model.actions.approval == "manual":
            outcome = "pending"
            reason = "awaits approval: " + _account(alert, model, action_set, action, "would")
        else:
            outcome = "acted"
            reason = _account(alert, model, action_set, action, "will")
        decisions.append(_decision(alert, model.name, action, outcome, reason, now))
        past.append(PastAction(model=model.name, action=action, alert_key=alert.key, at=now,
                               running=action == "retrain" and outcome == "acted", outcome=outcome))
    return decisions


def _action_set(alert: Alert, config: Config) -> tuple[ModelConfig, ActionSet] | str:
    """The model and the action set a firing trigger alert asks for, or why there is none."""
    if not alert.model:
        return "missing-label"
    try:
        model = config.model(alert.model)
    except UnknownModel:
        return "unknown-model"
    trigger = TRIGGERS.get(alert.name)
    action_set = None if model.actions is None or trigger is None else getattr(model.actions, trigger)
    if not isinstance(action_set, ActionSet):
        return "no-action-configured"
    return model, action_set


def _actions_of(action_set: ActionSet) -> list[ActionName]:
    actions: list[ActionName] = []
    if action_set.retrain is not None:
        actions.append("retrain")
    if action_set.rollback is not None:
        actions.append("rollback")
    return actions


def _safety(alert: Alert, model: ModelConfig, action: ActionName, config: Config,
            past: Sequence[PastAction], now: float) -> str | None:
    """The first safety rule (duplicate, retrain-running, cooldown, rate-limit) that holds
    ``action`` back, or None."""
    assert model.actions is not None
    mine = [p for p in past if p.model == model.name and p.action == action]
    if any(p.alert_key == alert.key and p.outcome in TAKEN for p in mine):
        return "duplicate"
    if action == "retrain" and any(p.running for p in mine):
        return "retrain-running"
    cooldown = model.actions.cooldown
    if any(p.outcome in TAKEN and now - p.at < cooldown for p in mine):
        return "cooldown"
    recent = sum(1 for p in past if p.outcome in _RATED and now - p.at < RATE_WINDOW)
    if recent >= config.remediate.max_actions_per_hour:
        return "rate-limit"
    return None


def _account(alert: Alert, model: ModelConfig, action_set: ActionSet, action: ActionName,
             verb: str) -> str:
    """One line: what is (or would be) done, for which model, because of which alert."""
    if action == "retrain":
        assert action_set.retrain is not None
        what = f"create a retrain object from {action_set.retrain.job_template.path.name} for {model.name}"
    else:
        assert action_set.rollback is not None
        target = action_set.rollback
        what = f"roll back {target.kind} {target.name} of {model.name}"
    return f"{verb} {what}: {alert.name} since {alert.starts_at}"


def _decision(alert: Alert, model: str | None, action: ActionName | None, outcome: Outcome,
              reason: str, now: float) -> Decision:
    return Decision(id=decision_id(alert, action), alert=alert, model=model, action=action,
                    outcome=outcome, reason=reason, at=now)

