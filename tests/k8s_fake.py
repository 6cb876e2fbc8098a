"""A fake Kubernetes API server over real HTTP, speaking the API server's JSON.

No kube-apiserver can be installed here, so the receiver's Kubernetes edge is tested with the
official client against this instead.  Why our own (a threaded ``http.server``) rather than
kmock: the tests need what kmock's emulator leaves out, namely resourceVersion preconditions
(409 Conflict), ``generateName``, label selectors, JSON patch, the status subresource
semantics and exact Status bodies; and a synchronous server in a thread needs no event loop
in the test.

What it does, as kube-apiserver does:

- discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``
  (APIVersions, APIGroupList, APIResourceList with verbs and ``<plural>/status`` subresources);
- ``GET`` one object, ``GET`` a list (``labelSelector``: ``=``, ``==``, ``!=``, ``in``, ``notin``,
  ``key``, ``!key``; ``fieldSelector`` on ``metadata.name``/``metadata.namespace``), ``POST``
  (``generateName``; 409 AlreadyExists), ``PATCH`` (merge, strategic merge treated as merge for
  built-in kinds and 415 for custom resources as the real server answers, JSON patch with
  ``test``), ``PUT``, ``DELETE``;
- a cluster-wide resourceVersion bumped on every write; a write whose object carries a stale
  ``metadata.resourceVersion`` gets 409 Conflict; a no-op patch does not bump it;
- kinds with a ``status`` subresource ignore status changes sent to the main resource, and
  the ``/status`` subresource changes only the status;
- list items of built-in kinds come without ``apiVersion``/``kind`` (custom resources keep them);
- every error is a ``Status`` (``kind: Status, apiVersion: v1, status: Failure, message, reason,
  details, code``) with the API server's own wording.

Test controls: :meth:`FakeKube.add`, :meth:`FakeKube.get`, :meth:`FakeKube.modify` (another
writer), :meth:`FakeKube.fail` (the next N matching requests answer 403/404/409/429/5xx or drop
the connection), :meth:`FakeKube.down`/:meth:`FakeKube.up` (port closed), and
:attr:`FakeKube.requests` (every request: method, path, query, content type, parsed body).
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.http_fake import FakeHandler, FakeServer

DRIFTLINE_USER = "system:serviceaccount:driftline:driftline-remediate"


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update",
                              "watch")

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        return self.group in ("", "apps", "batch")

    @property
    def qualified(self) -> str:
        """``jobs.batch``, ``events`` (the API server's wording in messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


#: What the fake serves by default: the kinds the receiver touches plus the CRDs it may use.
DEFAULT_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Event", "events"),
    ResourceType("", "v1", "Namespace", "namespaces", namespaced=False, subresources=("status",)),
    ResourceType("", "v1", "Pod", "pods", subresources=("status",)),
    ResourceType("", "v1", "ConfigMap", "configmaps"),
    ResourceType("apps", "v1", "Deployment", "deployments", subresources=("status", "scale")),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", subresources=("status", "scale")),
    ResourceType("batch", "v1", "Job", "jobs", subresources=("status",)),
    ResourceType("batch", "v1", "CronJob", "cronjobs", subresources=("status",)),
    ResourceType("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices",
                 subresources=("status",)),
    ResourceType("argoproj.io", "v1alpha1", "Rollout", "rollouts", subresources=("status", "scale")),
    ResourceType("argoproj.io", "v1alpha1", "Workflow", "workflows"),
    ResourceType("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs", subresources=("status",)),
    ResourceType("kubeflow.org", "v1", "TFJob", "tfjobs", subresources=("status",)),
    ResourceType("tekton.dev", "v1", "PipelineRun", "pipelineruns", subresources=("status",)),
)


@dataclass(frozen=True)
class Request:
    """One request the fake received (faulted and dropped ones included)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any  # parsed JSON, or None
    authorization: str | None = None

    @property
    def discovery(self) -> bool:
        """A non-resource URL (``/version``, ``/api``, ``/apis``, ``/apis/<g>/<v>``): allowed to
        every authenticated user by the ``system:discovery`` ClusterRole, not by a Role."""
        parts = [part for part in self.path.split("/") if part]
        return self.path in ("/version", "/api", "/apis") or (
            parts[:1] == ["api"] and len(parts) == 2) or (parts[:1] == ["apis"] and len(parts) <= 3)

    def attributes(self) -> tuple[str, str, str, str | None] | None:
        """(apiGroup, resource[/subresource], verb, namespace) as RBAC sees this request, or
        None for discovery."""
        if self.discovery:
            return None
        parsed = _parse_path(self.path)
        if parsed is None:
            return None
        group, _version, namespace, plural, name, sub = parsed
        resource = f"{plural}/{sub}" if sub else plural
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(self.method)
        if verb is None and self.method == "GET":
            verb = "get" if name else ("watch" if self.query.get("watch") in ("true", "1") else "list")
        if verb is None and self.method == "DELETE":
            verb = "delete" if name else "deletecollection"
        return group, resource, verb or self.method.lower(), namespace


@dataclass
class _Fault:
    method: str
    prefix: str
    status: int  # 0: drop the connection without an answer
    times: int
    message: str | None
    retry_after: int | None
    processed: bool = False


def _parse_path(path: str) -> tuple[str, str, str | None, str, str | None, str | None] | None:
    """(group, version, namespace, plural, name, subresource) of a resource URL."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3:
        return None
    return group, version, namespace, plural, name, sub


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_body(code: int, reason: str, message: str,
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


# --- label selectors ---------------------------------------------------------------------------------

_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$")


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector string; ApiError 400 when it is malformed."""
    for requirement in _split_selector(selector):
        match = _REQUIREMENT.match(requirement)
        if match is None or (match["neg"] and (match["op"] or match["setop"])):
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {requirement.strip()!r}")
        key = match["key"]
        if match["neg"]:
            ok = key not in labels
        elif match["op"] in ("=", "=="):
            ok = labels.get(key) == match["value"]
        elif match["op"] == "!=":
            ok = labels.get(key) != match["value"]
        elif match["setop"]:
            values = {value.strip() for value in match["values"].split(",") if value.strip()}
            ok = labels.get(key) in values if match["setop"] == "in" else labels.get(key) not in values
        else:
            ok = key in labels
        if not ok:
            return False
    return True


# --- patches -----------------------------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); ValueError on a failed op."""
    if not isinstance(ops, list):
        raise ValueError("a JSON patch is a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ValueError(f"invalid operation {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        try:
            if kind == "test":
                if _walk(doc, parts) != op.get("value"):
                    raise ValueError(f"testing value {op['path']} failed")
                continue
            if kind in ("move", "copy"):
                value = copy.deepcopy(_walk(doc, _pointer(op["from"])))
                if kind == "move":
                    doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
                kind, op = "add", {"op": "add", "path": op["path"], "value": value}
            if not parts:
                if kind in ("add", "replace"):
                    doc = copy.deepcopy(op["value"])
                    continue
                raise ValueError("cannot remove the document")
            parent, last = _walk(doc, parts[:-1]), parts[-1]
            if kind == "add":
                if isinstance(parent, list):
                    parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
                else:
                    parent[last] = copy.deepcopy(op["value"])
            elif kind == "replace":
                if isinstance(parent, list):
                    parent[int(last)] = copy.deepcopy(op["value"])
                else:
                    if last not in parent:
                        raise ValueError(f"replace operation does not apply: doc is missing key: "
                                         f"{op['path']}")
                    parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                if isinstance(parent, list):
                    del parent[int(last)]
                else:
                    if last not in parent:
                        raise ValueError(f"remove operation does not apply: doc is missing path: "
                                         f"{op['path']}")
                    del parent[last]
            else:
                raise ValueError(f"unexpected kind of operation {kind!r}")
        except (KeyError, IndexError, TypeError) as exc:
            raise ValueError(f"{kind} operation does not apply: doc is missing path: {op['path']} "
                             f"({exc})") from None
    return doc


# --- the server ----------------------------------------------------------------------------------------

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class FakeKube(FakeServer):
    """The fake API server.  Use as a context manager (or :meth:`start`/:meth:`stop`); ``url``
    is ``http://127.0.0.1:<port>``.  ``token``: when set, requests without ``Authorization:
    Bearer <token>`` get 401.  ``resources``: the kinds served (default :data:`DEFAULT_RESOURCES`)."""

    def __init__(self, *, token: str | None = None, resources: tuple[ResourceType, ...] = DEFAULT_RESOURCES,
                 now: Callable[[], datetime.datetime] | None = None, seed: int = 12) -> None:
        super().__init__()
        self.token = token
        self.resources: list[ResourceType] = list(resources)
        self.requests: list[Request] = []
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # (gv, plural, ns, name)
        self._faults: list[_Fault] = []
        self._rv = 1000
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self._rng = random.Random(seed)

    # --- test controls -------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> ResourceType:
        for resource in self.resources:
            if resource.group_version == api_version and resource.kind == kind:
                return resource
        raise KeyError(f"{api_version} {kind} is not served")

    def _by_plural(self, group: str, version: str, plural: str) -> ResourceType | None:
        for resource in self.resources:
            if (resource.group, resource.version, resource.plural) == (group, version, plural):
                return resource
        return None

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as if created (uid, resourceVersion, creationTimestamp filled in when
        absent; a ``creationTimestamp`` given is kept); returns the stored copy."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            meta.setdefault("namespace", "default")
        with self._lock:
            meta.setdefault("uid", str(uuid.UUID(int=self._rng.getrandbits(128), version=4)))
            meta.setdefault("creationTimestamp", self._stamp())
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._bump()
            self._objects[self._key(resource, meta.get("namespace", ""), meta["name"])] = obj
        return copy.deepcopy(obj)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        resource = self.resource(api_version, kind)
        with self._lock:
            obj = self._objects.get(self._key(resource, namespace or "", name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        resource = self.resource(api_version, kind)
        with self._lock:
            return [copy.deepcopy(obj) for (gv, plural, ns, _), obj in sorted(self._objects.items())
                    if (gv, plural) == (resource.group_version, resource.plural)
                    and (namespace is None or ns == namespace)]

    def modify(self, api_version: str, kind: str, namespace: str | None, name: str,
               change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Another writer: apply ``change`` to the stored object in place and bump its
        resourceVersion (so a client holding the old one gets 409)."""
        resource = self.resource(api_version, kind)
        with self._lock:
            obj = self._objects[self._key(resource, namespace or "", name)]
            change(obj)
            obj["metadata"]["resourceVersion"] = self._bump()
            return copy.deepcopy(obj)

    def fail(self, method: str, path_prefix: str, status: int, times: int = 1, *,
             message: str | None = None, retry_after: int | None = None, processed: bool = False) -> None:
        """The next ``times`` requests with ``method`` (or ``"*"``) whose path starts with
        ``path_prefix`` answer ``status`` (403, 404, 409, 429, 500, 503, 504, ...) with the API
        server's Status body, or drop the connection unanswered when ``status`` is 0.
        ``processed=True`` (with ``status`` 0): carry the request out first, then drop the
        connection: the answer is lost but the write happened."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_prefix, status, times, message, retry_after,
                                       processed))

    def api_requests(self) -> list[Request]:
        """The requests other than discovery."""
        return [request for request in self.requests if not request.discovery]

    def clear(self) -> None:
        """Forget the recorded requests (the objects stay)."""
        with self._lock:
            self.requests.clear()

    # --- internals -----------------------------------------------------------------------------

    def _stamp(self) -> str:
        return self._now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    @staticmethod
    def _key(resource: ResourceType, namespace: str, name: str) -> tuple[str, str, str, str]:
        return resource.group_version, resource.plural, namespace if resource.namespaced else "", name

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method in ("*", method) and path.startswith(fault.prefix):
                    fault.times -= 1
                    return fault
            self._faults = [fault for fault in self._faults if fault.times > 0]
        return None

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.4", "gitCommit": "fake",
                    "gitTreeState": "clean", "buildDate": "2024-08-14T19:29:06Z", "goVersion": "go1.22.5",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": "10.0.0.1:6443"}]}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for resource in self.resources:
                if resource.group and resource.version not in groups.setdefault(resource.group, []):
                    groups[resource.group].append(resource.version)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group,
                 "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                 "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]}}
                for group, versions in groups.items()]}
        parts = [part for part in path.split("/") if part]
        if parts[:1] == ["api"] and len(parts) == 2:
            group_version = parts[1]
        elif parts[:1] == ["apis"] and len(parts) == 3:
            group_version = f"{parts[1]}/{parts[2]}"
        elif parts[:1] == ["apis"] and len(parts) == 2:
            versions = sorted({r.version for r in self.resources if r.group == parts[1]})
            if not versions:
                return None
            return {"kind": "APIGroup", "apiVersion": "v1", "name": parts[1],
                    "versions": [{"groupVersion": f"{parts[1]}/{v}", "version": v} for v in versions],
                    "preferredVersion": {"groupVersion": f"{parts[1]}/{versions[0]}", "version": versions[0]}}
        else:
            return None
        served = [r for r in self.resources if r.group_version == group_version]
        if not served:
            return None
        listed: list[dict[str, Any]] = []
        for resource in served:
            listed.append({"name": resource.plural, "singularName": resource.kind.lower(),
                           "namespaced": resource.namespaced, "kind": resource.kind,
                           "verbs": list(resource.verbs)})
            for sub in resource.subresources:
                listed.append({"name": f"{resource.plural}/{sub}", "singularName": "",
                               "namespaced": resource.namespaced,
                               "kind": "Scale" if sub == "scale" else resource.kind,
                               "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": listed}

    def handle(self, method: str, path: str, query: dict[str, str], content_type: str | None,
               body: Any) -> tuple[int, dict[str, Any]]:
        discovered = self._discovery(path) if method == "GET" else None
        if discovered is not None:
            return 200, discovered
        parsed = _parse_path(path)
        if parsed is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        group, version, namespace, plural, name, sub = parsed
        resource = self._by_plural(group, version, plural)
        if resource is None or (sub is not None and sub not in resource.subresources):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        ns = (namespace or "") if resource.namespaced else ""
        with self._lock:
            if method == "GET" and name is None:
                return 200, self._list(resource, ns if namespace else None, query)
            if method == "GET" and name is not None:
                return 200, copy.deepcopy(self._existing(resource, ns, name))
            if method == "POST" and name is None:
                return 201, self._create(resource, ns, body)
            if method == "PATCH" and name is not None:
                return 200, self._patch(resource, ns, name, sub, content_type, body)
            if method == "PUT" and name is not None:
                return 200, self._update(resource, ns, name, sub, body)
            if method == "DELETE" and name is not None:
                obj = self._existing(resource, ns, name)
                del self._objects[self._key(resource, ns, name)]
                return 200, obj
        raise ApiError(405, "MethodNotAllowed",
                       "the server does not allow this method on the requested resource", {})

    def _not_found(self, resource: ResourceType, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found',
                        {"name": name, "group": resource.group, "kind": resource.plural})

    def _existing(self, resource: ResourceType, ns: str, name: str) -> dict[str, Any]:
        obj = self._objects.get(self._key(resource, ns, name))
        if obj is None:
            raise self._not_found(resource, name)
        return obj

    def _list(self, resource: ResourceType, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        selector = query.get("labelSelector", "")
        fields = query.get("fieldSelector", "")
        items = []
        for (gv, plural, ns, _name), obj in sorted(self._objects.items()):
            if (gv, plural) != (resource.group_version, resource.plural):
                continue
            if namespace is not None and ns != namespace:
                continue
            meta = obj.get("metadata", {})
            if selector and not selector_matches(selector, meta.get("labels") or {}):
                continue
            if fields and not self._fields_match(fields, meta):
                continue
            item = copy.deepcopy(obj)
            if resource.builtin:
                item.pop("apiVersion", None)
                item.pop("kind", None)
            items.append(item)
        return {"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    @staticmethod
    def _fields_match(selector: str, meta: dict[str, Any]) -> bool:
        for requirement in selector.split(","):
            key, sep, value = requirement.partition("=")
            key = key.rstrip("=!")
            if not sep or key not in ("metadata.name", "metadata.namespace"):
                raise ApiError(400, "BadRequest", f'"{key}" is not a known field selector: only '
                                                  '"metadata.name", "metadata.namespace"')
            actual = meta.get(key.split(".")[1], "")
            if requirement.partition("=")[0].endswith("!") == (actual == value.lstrip("=")):
                return False
        return True

    def _check_kind(self, resource: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format - "
                                              "accepted media types include: application/json, "
                                              "application/yaml")
        if body.get("apiVersion") != resource.group_version or body.get("kind") != resource.kind:
            raise ApiError(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) "
                                              "does not match the expected API version "
                                              f"({resource.group_version})")
        return body

    def _create(self, resource: ResourceType, ns: str, body: Any) -> dict[str, Any]:
        obj = copy.deepcopy(self._check_kind(resource, body))
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                                                  "namespace sent on the request")
            meta["namespace"] = ns
        if meta.get("resourceVersion"):
            raise ApiError(500, "InternalError", "Internal error occurred: resourceVersion should not be "
                                                 "set on objects to be created")
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiError(422, "Invalid", f"{resource.kind} \"\" is invalid: metadata.name: Required "
                                               "value: name or generateName is required",
                               {"kind": resource.kind, "group": resource.group, "causes": [
                                   {"reason": "FieldValueRequired",
                                    "message": "Required value: name or generateName is required",
                                    "field": "metadata.name"}]})
            suffix = "".join(self._rng.choice(_GENERATE_ALPHABET) for _ in range(5))
            meta["name"] = f"{prefix[:63 - 5]}{suffix}"
        name = meta["name"]
        limit = 63 if resource.kind == "Job" else 253
        if not _DNS_SUBDOMAIN.match(name) or len(name) > limit:
            raise ApiError(422, "Invalid", f'{resource.kind}.{resource.group or "core"} "{name}" is invalid: '
                                           f"metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 "
                                           "subdomain must consist of lower case alphanumeric characters, "
                                           "'-' or '.', and must start and end with an alphanumeric "
                                           "character",
                           {"name": name, "group": resource.group, "kind": resource.kind})
        key = self._key(resource, ns, name)
        if key in self._objects:
            raise ApiError(409, "AlreadyExists", f'{resource.qualified} "{name}" already exists',
                           {"name": name, "group": resource.group, "kind": resource.plural})
        meta["uid"] = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        meta["creationTimestamp"] = self._stamp()
        meta["generation"] = 1
        meta["resourceVersion"] = self._bump()
        if resource.kind == "Job":
            obj.setdefault("status", {})
        self._objects[key] = obj
        return copy.deepcopy(obj)

    def _store(self, resource: ResourceType, ns: str, name: str, old: dict[str, Any], new: dict[str, Any],
               sub: str | None) -> dict[str, Any]:
        new = copy.deepcopy(new)
        if not isinstance(new.get("metadata"), dict):
            raise ApiError(422, "Invalid", f'{resource.kind} "{name}" is invalid: metadata: Required value')
        sent_rv = new["metadata"].get("resourceVersion")
        if sent_rv not in (None, "") and sent_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"Operation cannot be fulfilled on {resource.qualified} "
                                            f'"{name}": the object has been modified; please apply your '
                                            "changes to the latest version and try again",
                           {"name": name, "group": resource.group, "kind": resource.plural})
        for immutable in ("name", "namespace", "uid", "creationTimestamp"):
            if new["metadata"].get(immutable) != old["metadata"].get(immutable):
                if immutable in ("name", "namespace") or new["metadata"].get(immutable) is not None:
                    raise ApiError(422, "Invalid", f'{resource.kind} "{name}" is invalid: '
                                                   f"metadata.{immutable}: Invalid value: field is immutable")
                new["metadata"][immutable] = old["metadata"].get(immutable)
        if "status" in resource.subresources:
            if sub == "status":  # only the status changes
                kept = copy.deepcopy(old)
                if "status" in new:
                    kept["status"] = new["status"]
                else:
                    kept.pop("status", None)
                new = kept
            elif "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return copy.deepcopy(old)  # a no-op write keeps the resourceVersion
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = self._bump()
        self._objects[self._key(resource, ns, name)] = new
        return copy.deepcopy(new)

    def _patch(self, resource: ResourceType, ns: str, name: str, sub: str | None, content_type: str | None,
               body: Any) -> dict[str, Any]:
        old = self._existing(resource, ns, name)
        media = (content_type or "").split(";")[0].strip()
        if media == "application/json-patch+json":
            try:
                new = json_patch(old, body)
            except ValueError as exc:
                raise ApiError(422, "Invalid", str(exc)) from None
        elif media == "application/merge-patch+json" or (
                media == "application/strategic-merge-patch+json" and resource.builtin):
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "json: cannot unmarshal array into Go value of type "
                                                  "map[string]interface {}")
            new = merge_patch(old, body)
        else:
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media types "
                           "include: application/json-patch+json, application/merge-patch+json, "
                           "application/apply-patch+yaml")
        if not isinstance(new, dict):
            raise ApiError(422, "Invalid", "the patched object is not an object")
        return self._store(resource, ns, name, old, new, sub)

    def _update(self, resource: ResourceType, ns: str, name: str, sub: str | None,
                body: Any) -> dict[str, Any]:
        old = self._existing(resource, ns, name)
        new = self._check_kind(resource, body)
        if (new.get("metadata") or {}).get("name") != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        return self._store(resource, ns, name, old, new, sub)

    def forbidden(self, method: str, path: str, query: dict[str, str]) -> str:
        request = Request(method, path, query, None, None)
        attributes = request.attributes()
        if attributes is None:
            return f'forbidden: User "{DRIFTLINE_USER}" cannot get path "{path}"'
        group, resource, verb, namespace = attributes
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        qualified = f"{resource.split('/')[0]}.{group}" if group else resource.split("/")[0]
        return (f'{qualified} is forbidden: User "{DRIFTLINE_USER}" cannot {verb} resource "{resource}" '
                f'in API group "{group}"{where}')


_FAULT_REASONS = {
    401: ("Unauthorized", "Unauthorized"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: ("Conflict", "the object has been modified; please apply your changes to the latest version and "
                      "try again"),
    422: ("Invalid", "the object is invalid"),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: etcdserver: request timed out"),
    502: ("InternalError", "Internal error occurred: bad gateway"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "Timeout: request did not complete within the allowed duration"),
}


class _Handler(FakeHandler):
    fake: FakeKube

    def _answer(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        query = {key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        method = self.command
        kube = self.fake
        with kube._lock:
            kube.requests.append(Request(method, path, query, content_type, body,
                                         self.headers.get("Authorization")))
        if kube.token is not None and self.headers.get("Authorization") != f"Bearer {kube.token}":
            self._answer(401, status_body(401, "Unauthorized", "Unauthorized"))
            return
        fault = kube._take_fault(method, path)
        if fault is not None:
            if fault.status == 0:
                if fault.processed:
                    try:
                        kube.handle(method, path, query, content_type, body)
                    except ApiError:
                        pass
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.status == 403:
                reason, message = "Forbidden", kube.forbidden(method, path, query)
            else:
                reason, message = _FAULT_REASONS.get(fault.status,
                                                     ("InternalError", "Internal error occurred"))
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else (
                {"Retry-After": "1"} if fault.status == 429 else None)
            self._answer(fault.status, status_body(fault.status, reason, fault.message or message, {}),
                         headers)
            return
        if raw and body is None:
            self._answer(400, status_body(400, "BadRequest",
                                          "the body of the request could not be decoded as JSON"))
            return
        try:
            code, answer = kube.handle(method, path, query, content_type, body)
        except ApiError as exc:
            self._answer(exc.code, status_body(exc.code, exc.reason, exc.message, exc.details))
            return
        self._answer(code, answer)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


FakeKube.handler = _Handler  # the handler class reads the fake, so it is defined after it
FakeKube.name = "fake-kube"


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    """A started :class:`FakeKube` (no token), stopped after the test.  Import it into a test
    module, or name this module in a conftest's ``pytest_plugins``."""
    with FakeKube() as kube:
        yield kube

