"""The receiver's Kubernetes edge: :class:`alerts.cluster.Cluster` over the official client.

The only module of the package that imports ``kubernetes``.  Every object goes through the
dynamic client (discovery maps apiVersion/kind to the URL), so a retrain template may be a
``batch/v1`` Job, an Argo Workflow, a Kubeflow PipelineRun or PyTorchJob alike.  The
manifests and patches themselves are built by :mod:`alerts.manifests` (pure).

Requests, per method (the Roles in ``k8s/remediate/role.yaml`` and ``role-crds.yaml`` allow
exactly these; ``tests/test_remediate_rbac.py`` checks it)::

    observe        list <template kind> ?labelSelector=driftline.io/model=<m>; get <target>
    claim          patch <target> (merge patch: the last-action annotation + resourceVersion)
                   [409: get <target>, then Claimed or a bounded retry]
    create_retrain create <template kind> (deterministic name: 409 AlreadyExists -> Claimed)
    rollback       Deployment: get deployments, list replicasets, patch deployments (JSON patch)
                   InferenceService: get, patch (merge patch canaryTrafficPercent: 0)
                   Rollout: patch rollouts/status (merge patch status.abort), falling back to
                   patch rollouts on 404, as ``kubectl argo rollouts abort`` does
    record_event   create events

Errors: 429, 5xx and transport failures (refused, reset, timeout) are retried with
exponential backoff and full jitter, bounded in tries and in total time; the sleep, the clock
and the random source are injected so tests never wait.  Anything else (403, 404, 422, ...)
is not retried and becomes :class:`ActionFailed` with the API's own Status message.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient, LazyDiscoverer
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from alerts.cluster import ActionFailed, Claimed, Retrain
from alerts.manifests import (
    event_manifest,
    label_selector,
    last_action_annotation,
    parse_last_actions,
    past_retrain,
    retrain_manifest,
    rollback_patch,
    rollback_target,
    same_template,
)
from alerts.types import ANNOTATION_LAST_ACTION, LABEL_MODEL, Decision, PastAction
from monitor.config import ObjectRef

log = logging.getLogger("driftline.remediate.kube")

T = TypeVar("T")

#: apiVersion of each kind a rollback or the action lock can name (monitor.config TARGET_KINDS).
TARGET_API_VERSIONS: Mapping[str, str] = {
    "Deployment": "apps/v1",
    "InferenceService": "serving.kserve.io/v1beta1",
    "Rollout": "argoproj.io/v1alpha1",
}

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

_TRANSIENT_STATUS = frozenset({429}) | frozenset(range(500, 600))
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


class _Transient(Exception):
    """One try failed in a way worth another (429, 5xx, transport)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _ApiRefused(Exception):
    """The API answered with a non-retryable error; ``status`` and ``reason`` as in its Status."""

    def __init__(self, status: int, api_reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.api_reason = api_reason
        self.message = message

    def one_line(self) -> str:
        words = _CAMEL.sub(" ", self.api_reason).lower() if self.api_reason else f"http {self.status}"
        return " ".join(f"{words}: {self.message}".split())


class _Conflict(Exception):
    """409 Conflict: the resourceVersion precondition failed."""


class _AlreadyExists(Exception):
    """409 AlreadyExists: an object of that name exists."""


class _NotFound(Exception):
    """404 NotFound, asked for by the caller."""


class _NoSubresource(Exception):
    """Discovery lists no such subresource of the kind."""


class _NoCacheDiscoverer(LazyDiscoverer):
    """Discovery kept in memory: never read from or written to a cache file in /tmp (stale
    across API servers on one port in tests; a read-only root filesystem in the pod)."""

    def _write_cache(self) -> None:
        return None


def _of_kind(actions: tuple[PastAction, ...], kind: str) -> PastAction | None:
    return next((p for p in actions if p.action == kind), None)


@dataclass(frozen=True)
class _Seen:
    """What observe() read on a lock target: the basis the decision was made on."""

    resource_version: str
    last: tuple[PastAction, ...]  # the latest action of each kind, from the annotation


def _status_body(exc: ApiException) -> tuple[str, str]:
    """The (reason, message) of an error answer's Status body; the raw body when it is not one."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        status = json.loads(body) if body else None
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status.get("reason") or ""), str(status["message"])
    return str(exc.reason or ""), " ".join(str(body or exc.reason or f"http {exc.status}").split())[:500]


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _transport_reason(exc: BaseException) -> str:
    inner: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    text = str(inner)
    lowered = text.lower()
    for words in ("connection refused", "connection reset", "remote end closed", "timed out",
                  "name or service not known", "no route to host"):
        if words in lowered:
            return words
    return " ".join(f"{type(inner).__name__}: {text}".split())[:300]


class KubeCluster:
    """:class:`alerts.cluster.Cluster` against a real (or fake) API server.

    ``api_client``: a configured ``kubernetes.client.ApiClient`` (see :meth:`from_environment`
    and :meth:`for_url`; build it with ``configuration.retries = 0`` so that urllib3 does not
    retry underneath this class's own bounded retries).  ``sleep``/``clock``/``rng``: injected
    for tests.  ``max_attempts`` tries per API call, spaced ``backoff_base * 2**n`` seconds
    (capped at ``backoff_max``, full jitter, at least a 429's Retry-After), and never past
    ``max_elapsed`` seconds in all.  ``request_timeout``: (connect, read) seconds per request.
    ``claim_attempts``: how often :meth:`claim` re-reads and retries after a 409 that was not
    another claim."""

    def __init__(self, api_client: Any, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 max_attempts: int = 5, backoff_base: float = 0.2, backoff_max: float = 5.0,
                 max_elapsed: float = 30.0, request_timeout: tuple[float, float] = (5.0, 30.0),
                 claim_attempts: int = 5) -> None:
        if max_attempts < 1 or claim_attempts < 1:
            raise ValueError("max_attempts and claim_attempts must be at least 1")
        self.api_client = api_client
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_elapsed = max_elapsed
        self.request_timeout = request_timeout
        self.claim_attempts = claim_attempts
        self._lock = threading.Lock()
        self._dynamic: DynamicClient | None = None
        self._seen: dict[tuple[str, str, str], _Seen] = {}
        self._uids: dict[tuple[str, str, str], str] = {}
        self._created: dict[str, tuple[str, str, str, str]] = {}  # name -> namespace, apiVersion, kind, uid
        self._discovery_lock = threading.RLock()
        self._cache_file = os.path.join(tempfile.gettempdir(), "driftline-discovery-never-written",
                                        f"{uuid.uuid4().hex}.json")

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def from_environment(cls, **options: Any) -> KubeCluster:
        """In a pod, the ServiceAccount's token and CA; elsewhere, the kubeconfig
        (``KUBECONFIG`` or ``~/.kube/config``, current context).  ActionFailed when neither."""
        configuration = k8s_client.Configuration()
        config: Any = k8s_config  # the loaders are untyped
        try:
            config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException as in_cluster:
            try:
                # KUBECONFIG read now (the client reads it once, at import)
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None,
                                        client_configuration=configuration)
            except (k8s_config.ConfigException, OSError) as kubeconfig:
                raise ActionFailed(f"not in a pod ({' '.join(str(in_cluster).split())}) and no usable "
                                   f"kubeconfig ({' '.join(str(kubeconfig).split())})") from None
        configuration.retries = 0
        return cls(k8s_client.ApiClient(configuration), **options)

    @classmethod
    def for_url(cls, url: str, token: str | None = None, **options: Any) -> KubeCluster:
        """An API server at ``url`` (tests: the fake), with an optional bearer token."""
        configuration = k8s_client.Configuration()
        configuration.host = url.rstrip("/")
        configuration.retries = 0
        if token is not None:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return cls(k8s_client.ApiClient(configuration), **options)

    def close(self) -> None:
        self.api_client.close()

    # --- the port -------------------------------------------------------------------------------

    def observe(self, model: str, namespace: str, template: Mapping[str, Any] | None,
                target: ObjectRef | None) -> tuple[PastAction, ...]:
        past: list[PastAction] = []
        if template is not None:
            api_version, kind = str(template.get("apiVersion", "")), str(template.get("kind", ""))
            listing = self._request("get", api_version, kind, namespace,
                                    label_selector=f"{LABEL_MODEL}={model}")
            items = listing.get("items") or []
            past.extend(past_retrain(item, model, api_version, kind)
                        for item in items if isinstance(item, dict))
        if target is not None:
            obj = self._get_target(target, namespace)
            seen = self._remember(target, namespace, obj)
            past.extend(seen.last)
        return tuple(past)

    def claim(self, target: ObjectRef, namespace: str, action: PastAction) -> None:
        """Compare-and-swap on the target's last-action annotation.

        The precondition is the resourceVersion observe() read (the state the decision was
        based on), or a fresh GET when observe() did not read this target.  On 409 Conflict
        the target is read again: if its annotation now holds a different claim for the same
        model and action (another receiver acted since), :class:`Claimed`; if it holds this
        very alert's claim, :class:`Claimed` too; otherwise the change was someone else's
        (a controller, a user) and the claim is retried on the fresh resourceVersion, at most
        ``claim_attempts`` times."""
        ns = target.namespace or namespace
        api_version = TARGET_API_VERSIONS[target.kind]
        key = (target.kind, ns, target.name)
        with self._lock:
            seen = self._seen.get(key)
        if seen is None:
            seen = self._remember(target, namespace, self._get_target(target, namespace))
        basis = _of_kind(seen.last, action.action)  # what the decision was based on
        ours = PastAction(model=action.model, action=action.action, alert_key=action.alert_key,
                          at=action.at)
        for _ in range(self.claim_attempts):
            others = [p for p in seen.last if p.action != action.action]
            value = last_action_annotation(*others, action)
            body = {"metadata": {"resourceVersion": seen.resource_version,
                                 "annotations": {ANNOTATION_LAST_ACTION: value}}}
            try:
                written = self._request("patch", api_version, target.kind, ns, name=target.name,
                                        body=body, content_type=MERGE_PATCH, conflict=True)
            except _Conflict:
                now = self._remember(target, namespace, self._get_target(target, namespace))
                latest = _of_kind(now.last, action.action)
                if latest == ours:
                    return  # our own write, whose answer a retried try had lost
                if latest is not None and latest != basis and latest.model == action.model:
                    raise Claimed(f"{target.kind.lower()} {target.name}: {latest.action} for model "
                                  f"{latest.model} claimed by another receiver "
                                  f"(alert {latest.alert_key})") from None
                if latest is not None and latest.alert_key == action.alert_key:
                    raise Claimed(f"{target.kind.lower()} {target.name}: alert {action.alert_key} "
                                  "already claimed") from None
                seen = now  # someone else's change: claim again on it, keeping its other entries
                continue
            self._remember(target, namespace, written)
            return
        raise ActionFailed(f"{target.kind.lower()} {target.name} in {ns} kept changing: "
                           f"no claim after {self.claim_attempts} conflicts")

    def create_retrain(self, retrain: Retrain) -> str:
        manifest = retrain_manifest(retrain)
        api_version, kind = str(manifest.get("apiVersion", "")), str(manifest.get("kind", ""))
        name = str(manifest["metadata"]["name"])
        lost: list[str] = []
        try:
            created = self._request("post", api_version, kind, retrain.namespace, body=manifest,
                                    exists=True, lost=lost)
        except _AlreadyExists:
            if lost:
                # an earlier try of ours may have reached the server with its answer lost
                # (a dropped connection, a timeout, 500/504): the object is this alert's, ours
                log.info("retrain %s/%s already exists after a lost answer; taking it as created",
                         retrain.namespace, name)
                return name
            raise Claimed(f"{kind.lower()} {name} for alert {retrain.alert_key} already exists") from None
        meta = created.get("metadata") or {}
        with self._lock:
            self._created[name] = (retrain.namespace, api_version, kind, str(meta.get("uid") or ""))
            while len(self._created) > 1024:  # only the recent ones get their Event
                del self._created[next(iter(self._created))]
        return str(meta.get("name") or name)

    def rollback(self, target: ObjectRef, namespace: str) -> str:
        ns = target.namespace or namespace
        if target.kind == "Deployment":
            return self._rollback_deployment(target.name, ns)
        if target.kind == "InferenceService":
            return self._rollback_canary(target.name, ns)
        if target.kind == "Rollout":
            return self._abort_rollout(target.name, ns)
        raise ActionFailed(f"cannot roll back a {target.kind}")

    def record_event(self, target: ObjectRef | None, namespace: str, decision: Decision) -> None:
        ns = (target.namespace if target is not None else None) or namespace
        involved: dict[str, str]
        job = decision.detail.get("job") or decision.detail.get("name")
        with self._lock:
            created = self._created.get(job or "")
        if decision.action == "retrain" and decision.outcome == "acted" and job and (
                created is not None or "job" in decision.detail):
            ns, api_version, kind, uid = created or (namespace, "batch/v1", "Job", "")
            involved = {"apiVersion": api_version, "kind": kind, "name": job, "uid": uid}
        elif target is not None:
            involved = {"apiVersion": TARGET_API_VERSIONS[target.kind], "kind": target.kind,
                        "name": target.name}
            with self._lock:
                uid = self._uids.get((target.kind, ns, target.name), "")
            if uid:
                involved["uid"] = uid
        else:
            involved = {"apiVersion": "v1", "kind": "Namespace", "name": ns}
        try:
            self._request("post", "v1", "Event", ns,
                          body=event_manifest(involved, ns, decision, self._clock()), exists=True)
        except _AlreadyExists:
            return  # a retry whose first try had been written: the event is there
        except ActionFailed as exc:
            log.warning("could not record an event for decision %s: %s", decision.id, exc.reason)
        except Exception as exc:  # an event is best effort: never let it break the decision
            log.warning("could not record an event for decision %s: %s", decision.id, exc)

    # --- rollbacks ------------------------------------------------------------------------------

    def _rollback_deployment(self, name: str, ns: str) -> str:
        deployment = self._request("get", "apps/v1", "Deployment", ns, name=name)
        spec = deployment.get("spec") or {}
        if spec.get("paused"):
            raise ActionFailed(f"deployment {name} is paused: resume it before rolling back")
        try:
            selector = label_selector(spec.get("selector"))
        except ValueError as exc:
            raise ActionFailed(f"deployment {name}: {exc}") from None
        listing = self._request("get", "apps/v1", "ReplicaSet", ns, label_selector=selector)
        replicasets = [item for item in listing.get("items") or [] if isinstance(item, dict)]
        try:
            replicaset, current, previous = rollback_target(deployment, replicasets)
        except ValueError as exc:
            raise ActionFailed(str(exc)) from None
        rs_name = (replicaset.get("metadata") or {}).get("name", "?")
        if same_template((replicaset.get("spec") or {}).get("template") or {}, spec.get("template") or {}):
            return (f"deployment {name}: already at the template of revision {previous} ({rs_name}); "
                    "nothing patched")
        try:
            self._request("patch", "apps/v1", "Deployment", ns, name=name,
                          body=rollback_patch(deployment, replicaset), content_type=JSON_PATCH, conflict=True)
        except _Conflict:
            now = self._request("get", "apps/v1", "Deployment", ns, name=name)
            if not same_template((replicaset.get("spec") or {}).get("template") or {},
                                 (now.get("spec") or {}).get("template") or {}):
                raise ActionFailed(f"deployment {name} changed while rolling back; not retried") from None
        return f"deployment {name}: revision {current} -> {previous} ({rs_name})"

    def _rollback_canary(self, name: str, ns: str) -> str:
        api_version = TARGET_API_VERSIONS["InferenceService"]
        isvc = self._request("get", api_version, "InferenceService", ns, name=name)
        predictor = (isvc.get("spec") or {}).get("predictor") or {}
        percent = predictor.get("canaryTrafficPercent")
        if percent is None:
            raise ActionFailed(f"inferenceservice {name} has no canary (spec.predictor.canaryTrafficPercent "
                               "is not set)")
        if percent == 0:
            raise ActionFailed(f"inferenceservice {name} has no canary to roll back (canaryTrafficPercent "
                               "is already 0)")
        body = {"metadata": {"resourceVersion": (isvc.get("metadata") or {}).get("resourceVersion")},
                "spec": {"predictor": {"canaryTrafficPercent": 0}}}
        try:
            self._request("patch", api_version, "InferenceService", ns, name=name, body=body,
                          content_type=MERGE_PATCH, conflict=True)
        except _Conflict:
            now = self._request("get", api_version, "InferenceService", ns, name=name)
            if ((now.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent") != 0:
                raise ActionFailed(f"inferenceservice {name} changed while rolling back; "
                                   "not retried") from None
        return f"inferenceservice {name}: canary traffic {percent}% -> 0%"

    def _abort_rollout(self, name: str, ns: str) -> str:
        """``kubectl argo rollouts abort``: a merge patch ``{"status":{"abort":true}}`` on the
        status subresource, and on the main resource when the subresource answers 404."""
        api_version = TARGET_API_VERSIONS["Rollout"]
        body = {"status": {"abort": True}}
        try:
            self._request("patch", api_version, "Rollout", ns, name=name, body=body,
                          content_type=MERGE_PATCH, subresource="status", not_found=True)
        except _NotFound:
            self._request("patch", api_version, "Rollout", ns, name=name, body=body, content_type=MERGE_PATCH)
        return f"rollout {name}: aborted"

    # --- the lock target ------------------------------------------------------------------------

    def _get_target(self, target: ObjectRef, namespace: str) -> dict[str, Any]:
        return self._request("get", TARGET_API_VERSIONS[target.kind], target.kind,
                             target.namespace or namespace, name=target.name)

    def _remember(self, target: ObjectRef, namespace: str, obj: Mapping[str, Any]) -> _Seen:
        ns = target.namespace or namespace
        meta = obj.get("metadata") or {}
        text = (meta.get("annotations") or {}).get(ANNOTATION_LAST_ACTION)
        last: tuple[PastAction, ...] = ()
        if text is not None:
            try:
                last = parse_last_actions(str(text))
            except ValueError as exc:
                log.warning("ignoring the malformed %s annotation on %s %s/%s: %s", ANNOTATION_LAST_ACTION,
                            target.kind.lower(), ns, target.name, exc)
        seen = _Seen(str(meta.get("resourceVersion") or ""), last)
        with self._lock:
            self._seen[(target.kind, ns, target.name)] = seen
            if meta.get("uid"):
                self._uids[(target.kind, ns, target.name)] = str(meta["uid"])
        return seen

    # --- one API call, retried ------------------------------------------------------------------

    def _client(self) -> DynamicClient:
        with self._discovery_lock:
            if self._dynamic is None:
                dynamic_client: Any = DynamicClient  # untyped
                self._dynamic = dynamic_client(self.api_client, cache_file=self._cache_file,
                                              discoverer=_NoCacheDiscoverer)
            return self._dynamic

    def _once(self, method: str, api_version: str, kind: str, namespace: str, name: str | None,
              body: Any, content_type: str | None, subresource: str | None,
              label_selector: str | None) -> dict[str, Any]:
        try:
            dynamic: Any = self._client()  # the dynamic client is untyped
            with self._discovery_lock:  # the lazy discoverer's cache is not thread-safe
                resource = dynamic.resources.get(api_version=api_version, kind=kind)
        except ValueError as exc:  # the discoverer's word for a connection dropped while reading /version
            raise _Transient(f"discovery failed: {' '.join(str(exc).split())[:200]}") from None
        except ResourceNotFoundError:
            raise _ApiRefused(404, "NotFound", f"the server does not serve {kind} in {api_version} "
                                               "(is its CRD installed?)") from None
        if subresource is not None:
            if subresource not in resource.subresources:  # discovery lists none: as a 404 would say
                raise _NoSubresource(f"the server does not serve {kind} {name}/{subresource}")
            resource = resource.subresources[subresource]
        ns = namespace if resource.namespaced else None
        kwargs: dict[str, Any] = {"serialize": False, "_request_timeout": self.request_timeout}
        if method == "get":
            if label_selector is not None:
                kwargs["label_selector"] = label_selector
            response = dynamic.get(resource, name=name, namespace=ns, **kwargs)
        elif method == "post":
            response = dynamic.create(resource, body=body, namespace=ns, **kwargs)
        elif method == "patch":
            response = dynamic.patch(resource, body=body, name=name, namespace=ns, content_type=content_type,
                                     **kwargs)
        else:  # pragma: no cover - programming error
            raise ValueError(method)
        data = response.data
        parsed = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data) if data else {}
        return parsed if isinstance(parsed, dict) else {}

    def _request(self, method: str, api_version: str, kind: str, namespace: str, *, name: str | None = None,
                 body: Any = None, content_type: str | None = None, subresource: str | None = None,
                 label_selector: str | None = None, conflict: bool = False, exists: bool = False,
                 not_found: bool = False, lost: list[str] | None = None) -> dict[str, Any]:
        """One API call with the retries; ``conflict``/``exists``/``not_found`` turn a 409
        Conflict / 409 AlreadyExists / 404 into :class:`_Conflict` / :class:`_AlreadyExists` /
        :class:`_NotFound` for the caller to handle; ``lost`` collects the failed tries whose
        request may have been carried out all the same (transport errors, 500, 504)."""
        what = f"{method} {kind} {name or ''}".strip()

        def attempt() -> dict[str, Any]:
            try:
                return self._once(method, api_version, kind, namespace, name, body, content_type,
                                  subresource, label_selector)
            except ApiException as exc:
                status = int(exc.status or 0)
                reason, message = _status_body(exc)
                if status in _TRANSIENT_STATUS:
                    if lost is not None and status in (500, 504):
                        lost.append(str(status))
                    raise _Transient(" ".join(f"{status} {message}".split())[:300],
                                     _retry_after(exc)) from None
                if status == 0:
                    raise _Transient(" ".join(str(exc.reason).split())[:300]) from None
                if status == 409 and reason == "AlreadyExists" and exists:
                    raise _AlreadyExists(message) from None
                if status == 409 and conflict and reason != "AlreadyExists":
                    raise _Conflict(message) from None
                if status == 404 and not_found:
                    raise _NotFound(message) from None
                raise _ApiRefused(status, reason, message) from None
            except _NoSubresource as exc:
                if not_found:
                    raise _NotFound(str(exc)) from None
                raise _ApiRefused(404, "NotFound", str(exc)) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if lost is not None and _transport_reason(exc) != "connection refused":
                    lost.append(type(exc).__name__)
                raise _Transient(_transport_reason(exc)) from None

        try:
            return self._retrying(attempt)
        except _ApiRefused as exc:
            log.info("kubernetes refused %s in %s: %s", what, namespace, exc.one_line())
            raise ActionFailed(exc.one_line()) from None

    def _retrying(self, attempt: Callable[[], T]) -> T:
        start = self._clock()
        last = ""
        for number in range(1, self.max_attempts + 1):
            try:
                return attempt()
            except _Transient as exc:
                last = exc.reason
                if number == self.max_attempts:
                    break
                delay = self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (number - 1)))
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.backoff_max))
                if self._clock() - start + delay > self.max_elapsed:
                    break
                log.info("kubernetes API: %s; try %d of %d in %.2fs", last, number + 1,
                         self.max_attempts, delay)
                self._sleep(delay)
        raise ActionFailed(f"kubernetes API unreachable after {number} tries: {last}")
