"""The receiver's core: observe, decide, claim, act, record.

For each webhook (:meth:`Remediator.handle`):

1. **observe**: what the cluster records for the models concerned (retrain objects
   by label, the lock target's ``driftline.io/last-action``), plus this receiver's
   own memory (dry-run and pending decisions exist nowhere else);
2. **decide**: :func:`alerts.policy.decide`, pure;
3. for each decision to carry out, **claim** the model's lock target (an annotation
   written with a resourceVersion precondition: a second replica, or a restarted
   receiver that lost its memory, finds the claim and skips), then **act** (create
   the retrain object, roll back);
4. **record**: the audit trail and its JSON log line, the metrics, and a
   Kubernetes Event on the target.

Webhooks are handled one at a time (a lock): two alerts of one model in
flight at once must see each other's decisions.  A payload that this receiver's
memory already holds back whole (re-sends, an alert in its cooldown) is decided
without reading the cluster: the cluster can only hold back more, never less.
Every decision gets a Kubernetes Event except ``ignored`` ones and re-sends
(``skipped:duplicate``), whose original decision has its Event already.

Without a cluster (``cluster=None``: ``driftline remediate --no-cluster``) every
decision that would act is recorded as a dry run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from alerts import policy
from alerts.audit import Audit
from alerts.cluster import ActionFailed, Claimed, Cluster, Retrain
from alerts.manifests import retrain_name
from alerts.metrics import ReceiverMetrics
from alerts.monitor_api import WindowContext
from alerts.types import TAKEN, TRIGGERS, Alert, ClusterView, Decision, PastAction
from monitor.config import ActionSet, Config, ModelConfig, ObjectRef
from monitor.errors import InputError

log = logging.getLogger(__name__)




class UnknownDecision(LookupError):
    """No decision with this id in the audit trail."""


class NotPending(ValueError):
    """The decision exists but is not waiting for approval."""


def load_templates(config: Config) -> dict[str, dict[str, Any]]:
    """Each model's retrain template, parsed: one manifest with apiVersion, kind and
    metadata.  :class:`InputError` (one line, naming the file) otherwise."""
    templates: dict[str, dict[str, Any]] = {}
    for model in config.models:
        for action_set in _action_sets(model):
            if action_set.retrain is None:
                continue
            path = action_set.retrain.job_template.path
            templates[model.name] = _read_template(path)
    return templates


def _read_template(path: Path) -> dict[str, Any]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    except OSError as exc:
        raise InputError(f"{path}: cannot read the job template ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: the job template is not YAML ({' '.join(str(exc).split())})") from None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise InputError(f"{path}: the job template must be one Kubernetes manifest")
    manifest: dict[str, Any] = documents[0]
    for key in ("apiVersion", "kind"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise InputError(f"{path}: the job template has no {key}")
    if not isinstance(manifest.get("metadata", {}), dict):
        raise InputError(f"{path}: the job template's metadata is not a mapping")
    return manifest


class Remediator:
    def __init__(self, config: Config, cluster: Cluster | None, *, templates: Mapping[str, Mapping[str, Any]],
                 audit: Audit, metrics: ReceiverMetrics, clock: Callable[[], float] = time.time,
                 lookup: Callable[[str], WindowContext | None] | None = None) -> None:
        self.config = config
        self.cluster = cluster
        self.templates = templates
        self.audit = audit
        self.metrics = metrics
        self._clock = clock
        self._lookup = lookup
        self._lock = threading.Lock()

    # ---- webhooks

    def handle(self, alerts: Sequence[Alert]) -> list[Decision]:
        """Decide on (and carry out) one webhook's alerts; never raises for a cluster error."""
        with self._lock:
            started = time.perf_counter()
            now = self._clock()
            # The cluster can only add past actions, and past actions only ever hold an action
            # back: when this receiver's memory alone already holds every alert back, reading
            # the cluster cannot change a decision and is skipped (re-sends, cooldowns).
            remembered = ClusterView(self.audit.memory())
            decisions = policy.decide(alerts, self.config, remembered, now)
            trouble = None
            if any(d.outcome in TAKEN for d in decisions):
                view, trouble = self._observe(alerts)
                decisions = policy.decide(alerts, self.config, view, now)
            done = [self._carry_out(d, alerts, trouble) for d in decisions]
            for decision in done:
                self._record(decision)
            self.metrics.handle_seconds.observe(time.perf_counter() - started)
            return done

    def approve(self, decision_id: str) -> Decision:
        """Carry out a pending decision, after checking the safety rules again."""
        with self._lock:
            pending = self.audit.get(decision_id)
            if pending is None:
                raise UnknownDecision(decision_id)
            if pending.outcome != "pending":
                raise NotPending(f"decision {decision_id} is {pending.label}, not pending")
            view, trouble = self._observe([pending.alert])
            decision = policy.approve(pending, self.config, view, self._clock())
            decision = self._carry_out(decision, [pending.alert], trouble)
            self._record(decision)
            return decision

    # ---- observing

    def _observe(self, alerts: Sequence[Alert]) -> tuple[ClusterView, str | None]:
        """The view to decide on, and why the cluster could not be read (None when it could)."""
        memory = self.audit.memory()
        models = self._concerned(alerts)
        if self.cluster is None or not models:
            return ClusterView(memory), None
        past: list[PastAction] = list(memory)
        try:
            for model in sorted(models):
                config = self.config.model(model)
                assert config.actions is not None
                template = self.templates.get(model)
                target = config.actions.lock_target()
                namespace = self._retrain_namespace(config)
                past.extend(self.cluster.observe(model, namespace, template, target))
        except ActionFailed as exc:
            return ClusterView(memory), exc.reason
        return ClusterView(tuple(past)), None

    def _concerned(self, alerts: Sequence[Alert]) -> set[str]:
        """Models whose firing alerts could act and are not already known re-sends."""
        known = self.audit.taken_keys()
        models: set[str] = set()
        configured = set(self.config.model_names())
        for alert in alerts:
            model = alert.model
            if (alert.status != "firing" or alert.name not in TRIGGERS or model not in configured
                    or alert.key in known):
                continue
            assert model is not None
            if self.config.model(model).actions is not None:
                models.add(model)
        return models

    # ---- acting

    def _carry_out(self, decision: Decision, alerts: Sequence[Alert], trouble: str | None) -> Decision:
        if decision.outcome not in ("acted", "dry_run") or decision.model is None:
            return decision
        model = self.config.model(decision.model)
        actions = model.actions
        assert actions is not None
        context = self._context(decision, alerts) if decision.action == "retrain" else None
        if decision.outcome == "dry_run" or self.cluster is None:
            return self._dry_run(decision, model, context)
        if trouble is not None:
            return replace(decision, outcome="failed", reason=f"cannot read the cluster's state: {trouble}",
                           detail={**decision.detail, "cluster": "unreachable"})
        cluster = self.cluster
        target = actions.lock_target()
        try:
            if target is not None:
                cluster.claim(target, self._namespace(target), PastAction(
                    model=model.name, action=decision.action or "notify", alert_key=decision.alert.key,
                    at=decision.at))
            if decision.action == "retrain":
                assert context is not None
                retrain = self._retrain(decision, model, context)
                name = cluster.create_retrain(retrain)
                kind = str(retrain.template.get("kind"))
                return replace(decision, reason=f"created {kind} {name} in {retrain.namespace} for "
                               f"{model.name} because {decision.alert.name} fired since "
                               f"{decision.alert.starts_at}",
                               detail={**decision.detail, "kind": kind, "name": name,
                                       "namespace": retrain.namespace,
                                       "drifted_features": ",".join(context.drifted_features),
                                       "window": context.window})
            rollback = self._rollback_target(model, decision)
            account = cluster.rollback(rollback, self._namespace(rollback))
            return replace(decision, reason=f"rolled back: {account}",
                           detail={**decision.detail, "kind": rollback.kind, "name": rollback.name,
                                   "namespace": self._namespace(rollback)})
        except Claimed as exc:
            return replace(decision, outcome="skipped", reason="claimed-elsewhere",
                           detail={**decision.detail, "claim": str(exc)})
        except ActionFailed as exc:
            return replace(decision, outcome="failed", reason=exc.reason)

    def _dry_run(self, decision: Decision, model: ModelConfig, context: WindowContext | None) -> Decision:
        note = "" if self.cluster is not None or decision.outcome == "dry_run" else " (no cluster)"
        if decision.action == "retrain":
            assert context is not None
            retrain = self._retrain(decision, model, context)
            kind = str(retrain.template.get("kind"))
            reason = (f"dry-run{note}: would create {kind} {_job_name(retrain)} in {retrain.namespace} "
                      f"for {model.name} because {decision.alert.name} fired since "
                      f"{decision.alert.starts_at}")
            if context.drifted_features:
                reason += f"; drifted: {', '.join(context.drifted_features)}"
            detail = {**decision.detail, "kind": kind, "name": _job_name(retrain),
                      "namespace": retrain.namespace, "drifted_features": ",".join(context.drifted_features),
                      "window": context.window}
        else:
            target = self._rollback_target(model, decision)
            reason = (f"dry-run{note}: would roll back {target.kind} {target.name} in "
                      f"{self._namespace(target)} because {decision.alert.name} fired since "
                      f"{decision.alert.starts_at}")
            detail = {**decision.detail, "kind": target.kind, "name": target.name,
                      "namespace": self._namespace(target)}
        return replace(decision, outcome="dry_run", reason=reason, detail=detail)

    def _retrain(self, decision: Decision, model: ModelConfig, context: WindowContext) -> Retrain:
        return Retrain(template=self.templates[model.name], namespace=self._retrain_namespace(model),
                       model=model.name, model_version=model.version, reason=decision.alert.name,
                       fingerprint=decision.alert.fingerprint, alert_key=decision.alert.key,
                       drifted_features=context.drifted_features, window=context.window)

    def _rollback_target(self, model: ModelConfig, decision: Decision) -> ObjectRef:
        assert model.actions is not None
        for action_set in _action_sets(model):
            if action_set.rollback is not None:
                return action_set.rollback
        raise AssertionError(f"decision {decision.id} rolls back {model.name}, which has no rollback")

    def _context(self, decision: Decision, alerts: Sequence[Alert]) -> WindowContext:
        """Drifted features from the payload's feature alerts, the window from the monitor."""
        fired = {a.labels["feature"] for a in alerts
                 if a.status == "firing" and a.model == decision.model and "feature" in a.labels
                 and a.name == "DriftlineFeatureDrift"}
        looked = self._lookup(decision.model) if self._lookup is not None and decision.model else None
        features = tuple(sorted(fired | set(looked.drifted_features if looked else ())))
        return WindowContext(features, looked.window if looked else "")

    def _namespace(self, target: ObjectRef) -> str:
        return target.namespace or self.config.remediate.namespace

    def _retrain_namespace(self, model: ModelConfig) -> str:
        for action_set in _action_sets(model):
            if action_set.retrain is not None and action_set.retrain.namespace:
                return action_set.retrain.namespace
        return self.config.remediate.namespace

    # ---- recording

    def _record(self, decision: Decision) -> None:
        self.audit.record(decision)
        self.metrics.count(decision)
        if self.cluster is None or decision.model is None or decision.outcome == "ignored":
            return
        if decision.outcome == "skipped" and decision.reason == "duplicate":
            return  # a re-send: the Event of the decision it repeats stands (no Event flood)
        if decision.detail.get("cluster") == "unreachable":
            return  # the Event could not be written either: the log and /actions have it
        model = self.config.model(decision.model)
        target = model.actions.lock_target() if model.actions is not None else None
        namespace = self._namespace(target) if target is not None else self._retrain_namespace(model)
        self.cluster.record_event(target, namespace, decision)


def _action_sets(model: ModelConfig) -> list[ActionSet]:
    actions = model.actions
    if actions is None:
        return []
    return [s for s in (actions.on_drift, actions.on_performance_drop) if s is not None]


def _job_name(retrain: Retrain) -> str:
    return retrain_name(retrain.template, retrain.model, retrain.alert_key)
