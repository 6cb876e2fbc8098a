"""The objects the receiver sends to Kubernetes, built as plain data (no client, no I/O).

:mod:`alerts.kube` sends what these functions build; keeping them pure lets every
manifest, patch and parse be tested without HTTP:

- :func:`retrain_manifest`: the job template plus driftline's labels, annotations and env vars,
  under a deterministic name (a second receiver racing on the same alert gets 409 AlreadyExists);
- :func:`last_action_annotation` / :func:`parse_last_actions`: the lock annotation on the target;
- :func:`finished`: whether a retrain object (Job, Workflow, PipelineRun, PyTorchJob, ...) is done;
- :func:`label_selector`, :func:`rollback_target` and :func:`rollback_patch`: what
  ``kubectl rollout undo`` does for a Deployment;
- :func:`event_manifest`: the core/v1 Event recording a decision.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from alerts.cluster import Retrain
from alerts.types import (
    ACTIONS,
    ANNOTATION_ALERT_KEY,
    LABEL_FINGERPRINT,
    LABEL_MODEL,
    LABEL_REASON,
    Decision,
    PastAction,
)

ANNOTATION_MODEL_VERSION = "driftline.io/model-version"
ANNOTATION_DRIFTED_FEATURES = "driftline.io/drifted-features"
ANNOTATION_WINDOW = "driftline.io/window"

#: The Deployment controller's bookkeeping (k8s.io/kubectl rollback.go ``annotationsToSkip``).
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_ROLLBACK_SKIPPED_ANNOTATIONS = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})
POD_TEMPLATE_HASH = "pod-template-hash"

EVENT_REASON = "DriftlineRemediation"
EVENT_COMPONENT = "driftline-remediate"

_NAME_MAX = 63  # a Job's name becomes the job-name label of its pods: a label value (63)
_NOT_NAME = re.compile(r"[^a-z0-9-]+")

#: Conditions and phases that mean a retrain object (of any kind) will not run any more.
_DONE_CONDITIONS = frozenset({"Succeeded", "Failed", "Complete", "Completed"})
_DONE_PHASES = frozenset({"Succeeded", "Failed", "Error", "Complete", "Completed"})


# --- retrain -------------------------------------------------------------------------------------

def retrain_name(template: Mapping[str, Any], model: str, alert_key: str) -> str:
    """``<prefix><model>-<8 hex of sha256(alert_key)>``, at most 63 characters: the same alert
    always gives the same name.  The prefix is the template's ``generateName``, else its
    ``name`` plus ``-``, else ``retrain-``."""
    meta = template.get("metadata") or {}
    prefix = meta.get("generateName") or (f"{meta['name']}-" if meta.get("name") else "retrain-")
    digest = hashlib.sha256(alert_key.encode()).hexdigest()[:8]
    stem = _NOT_NAME.sub("-", f"{prefix}{model}".lower())[: _NAME_MAX - len(digest) - 1].strip("-")
    return f"{stem or 'retrain'}-{digest}"


def retrain_env(retrain: Retrain) -> dict[str, str]:
    return {
        "DRIFTLINE_MODEL": retrain.model,
        "DRIFTLINE_MODEL_VERSION": retrain.model_version or "",
        "DRIFTLINE_REASON": retrain.reason,
        "DRIFTLINE_DRIFTED_FEATURES": ",".join(retrain.drifted_features),
        "DRIFTLINE_WINDOW": retrain.window,
        "DRIFTLINE_ALERT_FINGERPRINT": retrain.fingerprint,
    }


def retrain_manifest(retrain: Retrain) -> dict[str, Any]:
    """The object to create: a deep copy of the template with namespace and deterministic name
    set (``generateName`` dropped), driftline's labels and annotations added, and the env vars
    set on every container of every pod template found (see :func:`containers`).  An env var
    the template already names gets driftline's value in place, never a duplicate entry."""
    manifest: dict[str, Any] = copy.deepcopy(dict(retrain.template))
    meta = manifest.setdefault("metadata", {})
    meta["name"] = retrain_name(retrain.template, retrain.model, retrain.alert_key)
    meta.pop("generateName", None)
    meta["namespace"] = retrain.namespace
    labels = meta.get("labels") or {}
    labels.update({LABEL_MODEL: retrain.model, LABEL_REASON: retrain.reason,
                   LABEL_FINGERPRINT: retrain.fingerprint})
    meta["labels"] = labels
    annotations = meta.get("annotations") or {}
    annotations.update({
        ANNOTATION_ALERT_KEY: retrain.alert_key,
        ANNOTATION_MODEL_VERSION: retrain.model_version or "",
        ANNOTATION_DRIFTED_FEATURES: ",".join(retrain.drifted_features),
        ANNOTATION_WINDOW: retrain.window,
    })
    meta["annotations"] = annotations
    env = retrain_env(retrain)
    for container in containers(manifest):
        set_env(container, env)
    return manifest


def _pod_spec_containers(pod_spec: Any) -> Iterator[dict[str, Any]]:
    if isinstance(pod_spec, dict):
        for key in ("initContainers", "containers"):
            for container in pod_spec.get(key) or ():
                if isinstance(container, dict):
                    yield container


def _template_spec(holder: Any) -> Any:
    template = holder.get("template") if isinstance(holder, dict) else None
    return template.get("spec") if isinstance(template, dict) else None


def containers(manifest: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container (and init container) of every pod template in ``manifest``, as the
    live dicts inside it: ``spec.template`` (Job, Deployment-like), ``spec.jobTemplate.spec
    .template`` (CronJob), ``spec.<x>ReplicaSpecs.<role>.template`` (Kubeflow PyTorchJob,
    TFJob, MPIJob, ...) and an Argo Workflow's ``spec.templates[].container|script|
    containerSet``.  Any other shape is left alone."""
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return
    yield from _pod_spec_containers(_template_spec(spec))
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict):
        yield from _pod_spec_containers(_template_spec(job_template.get("spec")))
    for key, replica_specs in spec.items():
        if key.endswith("ReplicaSpecs") and isinstance(replica_specs, dict):
            for replica in replica_specs.values():
                yield from _pod_spec_containers(_template_spec(replica))
    if manifest.get("kind") == "Workflow" and str(manifest.get("apiVersion", "")).startswith("argoproj.io/"):
        for step in spec.get("templates") or ():
            if not isinstance(step, dict):
                continue
            for key in ("container", "script"):
                if isinstance(step.get(key), dict):
                    yield step[key]
            yield from _pod_spec_containers(step.get("containerSet"))


def set_env(container: dict[str, Any], values: Mapping[str, str]) -> None:
    env = container.get("env")
    if not isinstance(env, list):
        env = container["env"] = []
    present = {item.get("name"): item for item in env if isinstance(item, dict)}
    for name, value in values.items():
        if name in present:
            present[name].pop("valueFrom", None)
            present[name]["value"] = value
        else:
            env.append({"name": name, "value": value})


# --- past actions ---------------------------------------------------------------------------------

def last_action_annotation(*actions: PastAction) -> str:
    """The lock annotation's value: compact JSON holding the latest action of each kind,
    ``{"retrain": {"model","action","alert_key","at"}, "rollback": {...}}`` (a later
    action of a kind replaces an earlier one), so that a retrain's claim never hides the
    rollback before it from the cooldown, or the other way round."""
    latest: dict[str, dict[str, Any]] = {}
    for action in actions:
        latest[action.action] = {"model": action.model, "action": action.action,
                                 "alert_key": action.alert_key, "at": action.at}
    return json.dumps(latest, separators=(",", ":"), sort_keys=True)


def parse_last_actions(text: str) -> tuple[PastAction, ...]:
    """Every action in the lock annotation (the map :func:`last_action_annotation` writes,
    or one bare action object); ValueError (one line) when it is neither."""
    raw = _json_object(text)
    if "action" in raw:
        return (_past_action(raw),)
    found = []
    for kind, entry in sorted(raw.items()):
        if not isinstance(entry, dict):
            raise ValueError(f"entry {kind!r} is not a JSON object")
        action = _past_action(entry)
        if action.action != kind:
            raise ValueError(f"entry {kind!r} holds a {action.action!r} action")
        found.append(action)
    return tuple(found)


def parse_last_action(text: str) -> PastAction:
    """One action object back into a :class:`PastAction`; ValueError (one line) when it is not one."""
    return _past_action(_json_object(text))


def _json_object(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    return raw


def _past_action(raw: dict[str, Any]) -> PastAction:
    model, action, alert_key, at = (raw.get(key) for key in ("model", "action", "alert_key", "at"))
    if not isinstance(model, str) or not model:
        raise ValueError("'model' is not a non-empty string")
    if action not in ACTIONS:
        raise ValueError(f"'action' is not one of {', '.join(ACTIONS)}")
    if not isinstance(alert_key, str):
        raise ValueError("'alert_key' is not a string")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError("'at' is not a number of epoch seconds")
    return PastAction(model=model, action=action, alert_key=alert_key, at=float(at))


def timestamp(text: Any) -> float:
    """An RFC 3339 ``creationTimestamp`` as epoch seconds (0.0 when absent or unreadable)."""
    if not isinstance(text, str) or not text:
        return 0.0
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(status: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for condition in status.get("conditions") or ():
        if isinstance(condition, dict):
            yield str(condition.get("type", "")), str(condition.get("status", ""))


def finished(obj: Mapping[str, Any], api_version: str | None = None, kind: str | None = None) -> bool:
    """Whether a retrain object is done.  A ``batch/v1`` Job: ``status.succeeded > 0`` or a
    ``Complete``/``Failed`` condition ``True``.  Any other kind: a ``Succeeded``, ``Failed``,
    ``Complete`` or ``Completed`` condition ``True`` (or ``Succeeded`` ``False``: Tekton's
    failed PipelineRun), a finished ``status.phase`` (Argo Workflow: Succeeded/Failed/Error),
    or a ``status.finishedAt``/``completionTime``.  ``api_version`` and ``kind`` default to the
    object's own (list items of built-in kinds come without them)."""
    status = obj.get("status")
    if not isinstance(status, dict):
        return False
    if (api_version or obj.get("apiVersion")) == "batch/v1" and (kind or obj.get("kind")) == "Job":
        succeeded = status.get("succeeded")
        if isinstance(succeeded, int) and succeeded > 0:
            return True
        return any(kind in ("Complete", "Failed") and value == "True" for kind, value in _conditions(status))
    for kind, value in _conditions(status):
        if kind in _DONE_CONDITIONS and value == "True":
            return True
        if kind == "Succeeded" and value == "False":
            return True
    if status.get("phase") in _DONE_PHASES:
        return True
    return bool(status.get("finishedAt") or status.get("completionTime"))


def past_retrain(obj: Mapping[str, Any], model: str, api_version: str, kind: str) -> PastAction:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return PastAction(model=model, action="retrain", alert_key=str(annotations.get(ANNOTATION_ALERT_KEY, "")),
                      at=timestamp(meta.get("creationTimestamp")),
                      running=not finished(obj, api_version, kind))


# --- rollback of a Deployment ---------------------------------------------------------------------

def label_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector (``matchLabels`` and ``matchExpressions``) as the query string form."""
    if not selector:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or ())
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
    return ",".join(parts)


def revision(obj: Mapping[str, Any]) -> int | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(isinstance(ref, dict) and ref.get("uid") == uid and ref.get("controller") is True
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or ())


def rollback_target(deployment: Mapping[str, Any], replicasets: Sequence[Mapping[str, Any]]
                    ) -> tuple[Mapping[str, Any], int, int]:
    """The ReplicaSet to roll back to, the current revision and the previous one.

    Only ReplicaSets whose controller is this Deployment (ownerReferences uid) count.  The
    current revision is the Deployment's ``deployment.kubernetes.io/revision`` annotation (the
    highest ReplicaSet revision when it has none); the previous is the highest ReplicaSet
    revision below it.  ValueError (the reason) when there is none."""
    name = (deployment.get("metadata") or {}).get("name", "?")
    uid = (deployment.get("metadata") or {}).get("uid", "")
    owned = [(rev, rs) for rs in replicasets if controlled_by(rs, uid) and (rev := revision(rs)) is not None]
    current = revision(deployment)
    if current is None:
        current = max((rev for rev, _ in owned), default=0)
    older = [(rev, rs) for rev, rs in owned if rev < current]
    if not older:
        raise ValueError(f"deployment {name} has no previous revision")
    previous, rs = max(older, key=lambda pair: pair[0])
    return rs, current, previous


def rollback_patch(deployment: Mapping[str, Any], replicaset: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch ``kubectl rollout undo`` sends (k8s.io/kubectl rollback.go
    ``getDeploymentPatch``): replace ``/spec/template`` with the ReplicaSet's pod template minus
    its ``pod-template-hash`` label, and ``/metadata/annotations`` with the Deployment's
    controller annotations plus the ReplicaSet's others.  Two differences, both safety: a
    first op sets ``/metadata/resourceVersion`` to the one read, so the API answers 409
    Conflict if the Deployment changed since; and driftline's own ``driftline.io/*``
    annotations on the Deployment (the action lock) are kept, not replaced by stale copies."""
    meta = deployment.get("metadata") or {}
    current_annotations: Mapping[str, str] = meta.get("annotations") or {}
    template = copy.deepcopy((replicaset.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    annotations = {key: value for key, value in current_annotations.items()
                   if key in _ROLLBACK_SKIPPED_ANNOTATIONS or key.startswith("driftline.io/")}
    for key, value in ((replicaset.get("metadata") or {}).get("annotations") or {}).items():
        if key not in _ROLLBACK_SKIPPED_ANNOTATIONS and not key.startswith("driftline.io/"):
            annotations[key] = value
    return [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": meta.get("resourceVersion")},
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace" if "annotations" in meta else "add", "path": "/metadata/annotations",
         "value": annotations},
    ]


def same_template(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Pod templates equal once the ``pod-template-hash`` label is ignored (kubectl's
    ``equalIgnoreHash``)."""
    def strip(template: Mapping[str, Any]) -> dict[str, Any]:
        clean = copy.deepcopy(dict(template))
        labels = (clean.get("metadata") or {}).get("labels")
        if isinstance(labels, dict):
            labels.pop(POD_TEMPLATE_HASH, None)
        return clean
    return strip(left) == strip(right)


# --- events ---------------------------------------------------------------------------------------

def one_line(text: str, limit: int = 1024) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def event_message(decision: Decision) -> str:
    action = decision.action or "no action"
    model = decision.model or "?"
    text = f"{decision.label}: {action} for model {model} on {decision.alert.name or 'alert'}"
    if decision.outcome not in ("skipped", "ignored", "failed") and decision.reason:
        text += f" ({decision.reason})"
    details = ", ".join(f"{key}={value}" for key, value in sorted(decision.detail.items()))
    return one_line(f"{text}; {details}" if details else text)


def event_manifest(involved: Mapping[str, str], namespace: str, decision: Decision,
                   now: float) -> dict[str, Any]:
    """A core/v1 Event about ``decision`` on ``involved`` (apiVersion, kind, name[, uid]); named
    like client-go's recorder does (``<object>.<hex nanoseconds>``)."""
    stamp = rfc3339(now)
    reference = {"apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": involved["name"],
                 "namespace": namespace}
    if involved.get("uid"):
        reference["uid"] = involved["uid"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{involved['name']}.{int(now * 1e9):x}", "namespace": namespace},
        "involvedObject": reference,
        "reason": EVENT_REASON,
        "message": event_message(decision),
        "type": "Warning" if decision.outcome == "failed" else "Normal",
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
