"""Attach the collector sidecar to Kubernetes workloads: ``driftline inject`` and the webhook.

Pure functions, dicts in and dicts out (inputs are never modified); YAML is
read and written only by :func:`inject_yaml`.

* :func:`inject_pod_spec` adds the container ``driftline-collector`` (``driftline
  collect``, configured by the ``DRIFTLINE_*`` variables it reads) to a PodSpec.
  The model container is left as it is: the collector proxies
  ``http://127.0.0.1:<model port>``, where the model port is
  ``options.model_port`` or the first ``containerPort`` of the first container.
  The collector listens on ``options.collector_port`` (port ``driftline``) and
  serves ``/metrics`` and ``/healthz`` on ``options.metrics_port`` (port
  ``driftline-metrics``).  With ``native_sidecar`` (Kubernetes >= 1.29) it is an
  init container with ``restartPolicy: Always``; pods that run to completion
  (``restartPolicy`` ``Never`` or ``OnFailure``, as a Job's must) always get the
  native form, since a regular sidecar would keep them from ever completing.
* :func:`inject_pod_template` does the same for a Pod or a PodTemplateSpec
  (metadata + spec): per-pod ``driftline.io/*`` annotations override the
  options, and ``prometheus.io/*`` annotations for the collector's metrics are
  added where the pod has none.
* :func:`inject_manifests` injects every workload (Deployment, StatefulSet,
  DaemonSet, ReplicaSet, Job, Pod; ``kind: List`` items too) and rewires each
  Service that selects an injected pod template and targets the model port
  (by number or by name) to the collector port, so traffic passes through the
  collector.  Other kinds are left untouched.  A workload annotated
  ``driftline.io/inject: "false"`` is skipped.

Injecting twice changes nothing: a pod that already has a container named
``driftline-collector`` is returned as it is.  Anything that cannot be injected
raises :class:`~monitor.errors.InputError` with a one-line message.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from collectors import defaults
from collectors.extractors import PROTOCOLS, ExtractError, GenericSpec, compile_spec
from collectors.routing import parse_model_map
from monitor.errors import InputError

COLLECTOR = "driftline-collector"
PROXY_PORT_NAME = "driftline"
METRICS_PORT_NAME = "driftline-metrics"
NAME_LABEL = "app.kubernetes.io/name"
VERSION_LABEL = "app.kubernetes.io/version"

INJECT_ANNOTATION = "driftline.io/inject"
MODEL_ANNOTATION = "driftline.io/model"
KAFKA_ANNOTATION = "driftline.io/kafka"
MODEL_PORT_ANNOTATION = "driftline.io/model-port"
SAMPLE_RATE_ANNOTATION = "driftline.io/sample-rate"
IMAGE_ANNOTATION = "driftline.io/image"
NATIVE_SIDECAR_ANNOTATION = "driftline.io/native-sidecar"
OUTPUT_NAMES_ANNOTATION = "driftline.io/output-names"
MODEL_FROM_PATH_ANNOTATION = "driftline.io/model-from-path"
MODEL_MAP_ANNOTATION = "driftline.io/model-map"
FEATURE_NAMES_ANNOTATION = "driftline.io/feature-names"
PROTOCOL_ANNOTATION = "driftline.io/protocol"
GENERIC_ANNOTATIONS = {"driftline.io/generic-instances": "generic_instances",
                       "driftline.io/generic-inputs": "generic_inputs",
                       "driftline.io/generic-outputs": "generic_outputs"}

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"})
_RUNS_TO_COMPLETION = frozenset({"Never", "OnFailure"})
_TRUE, _FALSE = frozenset({"true", "yes", "1", "on"}), frozenset({"false", "no", "0", "off"})
_RUN_AS_USER = 10001  # the driftline image's user (as in k8s/monitor)

JSON = dict[str, Any]


def _cores(quantity: str) -> float:
    """A Kubernetes CPU quantity (``500m``, ``1``, ``1.5``) in cores."""
    text = quantity.strip() if isinstance(quantity, str) else ""
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        cores = 0.0
    if not cores > 0 or cores != cores or cores == float("inf"):
        raise InputError(f"cpu_limit must be a CPU quantity such as 500m or 1; got {quantity!r}")
    return cores


@dataclass(frozen=True)
class InjectOptions:
    """How the collector is attached.  ``model=None`` takes the model name from the pod's
    ``app.kubernetes.io/name`` label (downward API); ``model_port=None`` from the first
    container's first ``containerPort``; ``sample_rate=None`` keeps the collector's default;
    ``output_names`` names the model's positional predictions (``collect --output-names``),
    ``feature_names`` its positional features (``--feature-names``); ``protocol`` and the
    ``generic_*`` JSONPaths are ``collect``'s flags of the same names (None: its defaults).
    ``model_from_path`` leaves the model out (no ``DRIFTLINE_MODEL``), so the collector keys each
    call by the model its path names (a multi-model server); ``model_map`` is ``collect
    --model-map`` (``served=configured,...``)."""

    image: str = defaults.IMAGE
    kafka: str = defaults.KAFKA_IN_CLUSTER
    model: str | None = None
    model_from_path: bool = False
    model_map: str | None = None
    model_port: int | None = None
    collector_port: int = defaults.PROXY_PORT
    metrics_port: int = defaults.METRICS_PORT
    sample_rate: float | None = None
    output_names: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    protocol: str | None = None
    generic_instances: str | None = None
    generic_inputs: str | None = None
    generic_outputs: str | None = None
    native_sidecar: bool = False
    cpu_request: str = "50m"
    memory_request: str = "64Mi"
    memory_limit: str = "256Mi"
    cpu_limit: str | None = None

    def __post_init__(self) -> None:
        for name in ("image", "kafka", "model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name} must be a non-empty string; got {value!r}")
        if self.model is not None and self.model_from_path:
            raise InputError("give model or model_from_path, not both")
        if self.model_map is not None:
            try:
                if not isinstance(self.model_map, str) or not parse_model_map(self.model_map):
                    raise ValueError(f"model_map must be served=configured,...; got {self.model_map!r}")
            except ValueError as exc:
                raise InputError(str(exc).replace("--model-map", "model_map")) from None
        for name in ("model_port", "collector_port", "metrics_port"):
            value = getattr(self, name)
            if value is not None and not _is_port(value):
                raise InputError(f"{name} must be a port number 1-65535; got {value!r}")
        if self.collector_port == self.metrics_port:
            raise InputError(f"collector_port and metrics_port are both {self.collector_port}")
        if self.sample_rate is not None and not (
                isinstance(self.sample_rate, int | float) and not isinstance(self.sample_rate, bool)
                and 0.0 <= self.sample_rate <= 1.0):
            raise InputError(f"sample_rate must be between 0 and 1; got {self.sample_rate!r}")
        for name in ("output_names", "feature_names"):
            names = getattr(self, name)
            if names is not None and not (
                    names and all(isinstance(n, str) and n.strip() and "," not in n for n in names)):
                raise InputError(f"{name} must be non-empty names without commas; got {names!r}")
        if self.protocol is not None and self.protocol not in ("auto", *PROTOCOLS):
            raise InputError(f"protocol must be auto or one of {', '.join(PROTOCOLS)}; "
                             f"got {self.protocol!r}")
        self._check_generic()
        if self.cpu_limit is not None:
            _cores(self.cpu_limit)

    def _check_generic(self) -> None:
        """The generic protocol's JSONPaths as ``driftline collect`` checks them at start-up."""
        for name in ("generic_instances", "generic_inputs", "generic_outputs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"{name} must be a non-empty JSONPath; got {value!r}")
        instances, outputs = self.generic_instances, self.generic_outputs
        if instances or outputs:
            if not (instances and outputs):
                raise InputError("give generic_instances and generic_outputs together")
            try:
                compile_spec(GenericSpec(instances=instances, inputs=self.generic_inputs, outputs=outputs))
            except ExtractError as exc:
                raise InputError(f"a generic JSONPath: {str(exc).split('generic spec: ')[-1]}") from None
        elif self.protocol == "generic":
            raise InputError("protocol generic needs generic_instances and generic_outputs")
        elif self.generic_inputs is not None:
            raise InputError("generic_inputs needs generic_instances and generic_outputs")

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any] | None,
                         base: InjectOptions | None = None) -> InjectOptions:
        """``base`` (default: the defaults) overridden by a pod's ``driftline.io/*`` annotations:
        ``model`` (or ``model-from-path: "true"``), ``model-map``, ``kafka``, ``model-port``,
        ``sample-rate``, ``image``, ``native-sidecar``,
        ``output-names`` and ``feature-names`` (comma-separated), ``protocol``,
        ``generic-instances``, ``generic-inputs``, ``generic-outputs``.
        An invalid value raises :class:`InputError` naming the annotation."""
        base = base if base is not None else cls()
        annotations = annotations or {}
        changes: dict[str, Any] = {}
        for key, field in ((MODEL_ANNOTATION, "model"), (KAFKA_ANNOTATION, "kafka"),
                           (IMAGE_ANNOTATION, "image"), (PROTOCOL_ANNOTATION, "protocol"),
                           (MODEL_MAP_ANNOTATION, "model_map"), *GENERIC_ANNOTATIONS.items()):
            if key in annotations:
                text = _text(annotations[key])
                if not text:
                    raise InputError(f"annotation {key} must not be empty")
                changes[field] = text
        if MODEL_PORT_ANNOTATION in annotations:
            text = _text(annotations[MODEL_PORT_ANNOTATION])
            if not (text.isdigit() and _is_port(int(text))):
                raise InputError(f"annotation {MODEL_PORT_ANNOTATION} must be a port number 1-65535; "
                                 f"got {text!r}")
            changes["model_port"] = int(text)
        if SAMPLE_RATE_ANNOTATION in annotations:
            text = _text(annotations[SAMPLE_RATE_ANNOTATION])
            try:
                rate = float(text)
            except ValueError:
                rate = math.nan
            if not 0.0 <= rate <= 1.0:
                raise InputError(f"annotation {SAMPLE_RATE_ANNOTATION} must be a number between 0 and 1; "
                                 f"got {text!r}")
            changes["sample_rate"] = rate
        for key, field in ((OUTPUT_NAMES_ANNOTATION, "output_names"),
                           (FEATURE_NAMES_ANNOTATION, "feature_names")):
            if key in annotations:
                names = tuple(n.strip() for n in _text(annotations[key]).split(","))
                if not all(names):
                    raise InputError(f"annotation {key} must be comma-separated names; "
                                     f"got {_text(annotations[key])!r}")
                changes[field] = names
        if NATIVE_SIDECAR_ANNOTATION in annotations:
            changes["native_sidecar"] = _flag(annotations[NATIVE_SIDECAR_ANNOTATION],
                                              NATIVE_SIDECAR_ANNOTATION)
        # a pod's own choice of how its model is named replaces the options' one
        if MODEL_FROM_PATH_ANNOTATION in annotations:
            changes["model_from_path"] = _flag(annotations[MODEL_FROM_PATH_ANNOTATION],
                                               MODEL_FROM_PATH_ANNOTATION)
            if changes["model_from_path"] and MODEL_ANNOTATION not in annotations:
                changes["model"] = None
        elif MODEL_ANNOTATION in annotations:
            changes["model_from_path"] = False
        try:
            return dataclasses.replace(base, **changes)
        except InputError as exc:  # the protocol and its JSONPaths are checked together
            keys = [k for k in (PROTOCOL_ANNOTATION, MODEL_MAP_ANNOTATION, MODEL_ANNOTATION,
                                MODEL_FROM_PATH_ANNOTATION, *GENERIC_ANNOTATIONS) if k in annotations]
            if not keys:
                raise
            raise InputError(f"annotation {', '.join(keys)}: {exc}") from None


def is_injected(pod_spec: Mapping[str, Any]) -> bool:
    """Whether the pod spec already has the collector (as a container or an init container)."""
    return any(isinstance(c, Mapping) and c.get("name") == COLLECTOR
               for key in ("containers", "initContainers") for c in _list(pod_spec.get(key)))


def inject_pod_spec(pod_spec: Mapping[str, Any], options: InjectOptions) -> JSON:
    """A copy of the PodSpec with the collector sidecar added (unchanged if already there)."""
    if not isinstance(pod_spec, Mapping):
        raise InputError(f"a pod spec must be a mapping; got {type(pod_spec).__name__}")
    spec: JSON = copy.deepcopy(dict(pod_spec))
    if is_injected(spec):
        return spec
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers or not all(
            isinstance(c, Mapping) for c in containers):
        raise InputError("the pod has no containers")
    model_port, _ = model_port_of(spec, options)
    taken = {p.get("containerPort"): c.get("name") for c in _all_containers(spec)
             for p in _list(c.get("ports")) if isinstance(p, Mapping)}
    for port in (options.collector_port, options.metrics_port):
        if port == model_port or port in taken:
            owner = "the model" if port == model_port else f"container {taken[port]!r}"
            raise InputError(f"port {port} of the collector is already used by {owner}; "
                             "choose other collector ports")
    collector = _collector_container(model_port, options)
    if options.native_sidecar or spec.get("restartPolicy") in _RUNS_TO_COMPLETION:
        collector["restartPolicy"] = "Always"
        init = spec.get("initContainers")
        spec["initContainers"] = [*(init if isinstance(init, list) else []), collector]
    else:
        containers.append(collector)
    return spec


def model_port_of(pod_spec: Mapping[str, Any], options: InjectOptions) -> tuple[int, str | None]:
    """The model's port number and its name (when a container names it)."""
    containers = [c for c in _list(pod_spec.get("containers")) if isinstance(c, Mapping)]
    ports = [p for c in containers for p in _list(c.get("ports")) if isinstance(p, Mapping)]
    if options.model_port is not None:
        names = [p.get("name") for p in ports if p.get("containerPort") == options.model_port]
        name = names[0] if names and isinstance(names[0], str) else None
        return options.model_port, name
    first = containers[0] if containers else {}
    first_ports = [p for p in _list(first.get("ports")) if isinstance(p, Mapping)]
    if not first_ports:
        raise InputError(f"container {first.get('name', '?')!r} declares no containerPort; "
                         f"give the model port ({MODEL_PORT_ANNOTATION} or --model-port)")
    number, name = first_ports[0].get("containerPort"), first_ports[0].get("name")
    if not isinstance(number, int) or not _is_port(number):
        raise InputError(f"container {first.get('name', '?')!r} has an invalid containerPort "
                         f"{number!r}")
    return number, name if isinstance(name, str) else None


def inject_pod_template(template: Mapping[str, Any], options: InjectOptions) -> JSON:
    """A copy of a Pod or PodTemplateSpec (``metadata`` + ``spec``) with the collector added,
    after applying the pod's ``driftline.io/*`` annotations to ``options``."""
    if not isinstance(template, Mapping):
        raise InputError(f"a pod template must be a mapping; got {type(template).__name__}")
    out: JSON = copy.deepcopy(dict(template))
    metadata = out.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
    spec = out.get("spec")
    if not isinstance(spec, Mapping):
        raise InputError("the pod template has no spec")
    if is_injected(spec):
        return out
    annotations = metadata.get("annotations")
    annotations = dict(annotations) if isinstance(annotations, Mapping) else {}
    options = InjectOptions.from_annotations(annotations, options)
    out["spec"] = inject_pod_spec(spec, options)
    labels = metadata.get("labels")
    if options.model is None and not (isinstance(labels, Mapping) and _text(labels.get(NAME_LABEL))):
        raise InputError(f"the pod has no label {NAME_LABEL}; label it or set the model name "
                         f"({MODEL_ANNOTATION} or --model)")
    if "prometheus.io/port" not in annotations:
        annotations.setdefault("prometheus.io/scrape", "true")
        annotations["prometheus.io/port"] = str(options.metrics_port)
        annotations.setdefault("prometheus.io/path", "/metrics")
    metadata["annotations"] = annotations
    out["metadata"] = metadata
    return out


def inject_manifests(docs: Iterable[Mapping[str, Any]], options: InjectOptions) -> list[JSON]:
    """Every workload injected and the Services in front of them rewired; other documents
    are returned as they are.  Documents are copies: the input is not modified."""
    out = [copy.deepcopy(dict(d)) if isinstance(d, Mapping) else d for d in docs]
    injected: list[tuple[str | None, Mapping[str, Any], int, str | None, int]] = []
    for doc in _flatten(out):
        where = _describe(doc)
        try:
            found = _inject_workload(doc, options)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if found is not None:
            injected.append(found)
    for doc in _flatten(out):
        if doc.get("kind") == "Service" and str(doc.get("apiVersion", "v1")) == "v1":
            _rewire_service(doc, injected)
    return out


def inject_yaml(text: str, options: InjectOptions) -> str:
    """:func:`inject_manifests` over multi-document YAML text (comments are not kept)."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InputError(f"invalid YAML{where}: {' '.join(str(problem).split())}") from None
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise InputError(f"YAML document {i} is not a mapping (a Kubernetes object)")
    return yaml.safe_dump_all(inject_manifests(docs, options), sort_keys=False)


# --- internals ------------------------------------------------------------------------------------

def _collector_container(model_port: int, options: InjectOptions) -> JSON:
    def field(path: str) -> JSON:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    model: JSON = ({"value": options.model} if options.model is not None
                   else field(f"metadata.labels['{NAME_LABEL}']"))
    env: list[JSON] = [
        {"name": "DRIFTLINE_UPSTREAM", "value": f"http://127.0.0.1:{model_port}"},
        {"name": "DRIFTLINE_LISTEN", "value": f"{defaults.LISTEN_HOST}:{options.collector_port}"},
        {"name": "DRIFTLINE_METRICS_PORT", "value": str(options.metrics_port)},
        {"name": "DRIFTLINE_KAFKA", "value": options.kafka},
        {"name": "DRIFTLINE_MODEL", **model},
        {"name": "DRIFTLINE_MODEL_VERSION", **field(f"metadata.labels['{VERSION_LABEL}']")},
        {"name": "POD_NAMESPACE", **field("metadata.namespace")},
        {"name": "POD_NAME", **field("metadata.name")},
    ]
    if options.model_from_path:  # each call's model and version from its path
        env = [e for e in env if e["name"] not in ("DRIFTLINE_MODEL", "DRIFTLINE_MODEL_VERSION")]
    if options.model_map is not None:
        env.append({"name": "DRIFTLINE_MODEL_MAP", "value": options.model_map})
    if options.sample_rate is not None:
        env.append({"name": "DRIFTLINE_SAMPLE_RATE", "value": repr(float(options.sample_rate))})
    if options.output_names is not None:
        env.append({"name": "DRIFTLINE_OUTPUT_NAMES", "value": ",".join(options.output_names)})
    if options.feature_names is not None:
        env.append({"name": "DRIFTLINE_FEATURE_NAMES", "value": ",".join(options.feature_names)})
    for name in ("protocol", "generic_instances", "generic_inputs", "generic_outputs"):
        value = getattr(options, name)
        if value is not None:
            env.append({"name": f"DRIFTLINE_{name.upper()}", "value": value})
    limits: JSON = {"memory": options.memory_limit}
    if options.cpu_limit is not None:
        limits["cpu"] = options.cpu_limit
        # shed captures before the CPU limit throttles the proxy (and the model's callers with it)
        env.append({"name": "DRIFTLINE_MAX_CPU", "value": f"{0.8 * _cores(options.cpu_limit):.3g}"})
    probe: JSON = {"httpGet": {"path": "/healthz", "port": METRICS_PORT_NAME}}
    return {
        "name": COLLECTOR,
        "image": options.image,
        "args": ["collect"],
        "env": env,
        "ports": [{"name": PROXY_PORT_NAME, "containerPort": options.collector_port, "protocol": "TCP"},
                  {"name": METRICS_PORT_NAME, "containerPort": options.metrics_port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": options.cpu_request, "memory": options.memory_request},
                      "limits": limits},
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": _RUN_AS_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _inject_workload(doc: JSON, options: InjectOptions
                     ) -> tuple[str | None, Mapping[str, Any], int, str | None, int] | None:
    """Inject one workload in place; (namespace, pod labels, model port, its name, collector port)."""
    kind = doc.get("kind")
    if kind not in WORKLOAD_KINDS:
        return None
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    workload_annotations = metadata.get("annotations")
    workload_annotations = workload_annotations if isinstance(workload_annotations, Mapping) else {}
    if kind == "Pod":
        holder, key = doc, None
        template: Any = doc
    else:
        spec = doc.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("template"), Mapping):
            raise InputError("the workload has no spec.template")
        holder, key, template = spec, "template", spec["template"]
    pod_metadata = template.get("metadata") if isinstance(template.get("metadata"), Mapping) else {}
    pod_annotations = pod_metadata.get("annotations")
    pod_annotations = pod_annotations if isinstance(pod_annotations, Mapping) else {}
    annotations = {**workload_annotations, **pod_annotations}
    if INJECT_ANNOTATION in annotations and not _flag(annotations[INJECT_ANNOTATION], INJECT_ANNOTATION):
        return None
    # the workload's own driftline.io annotations apply too; the pod template's win
    options = InjectOptions.from_annotations(workload_annotations, options)
    result = inject_pod_template(template, options)
    if key is None:
        doc.clear()
        doc.update(result)
    else:
        holder[key] = result
    pod_options = InjectOptions.from_annotations(pod_annotations, options)
    port, name = model_port_of(result["spec"], pod_options)
    labels = result.get("metadata", {}).get("labels")
    namespace = metadata.get("namespace")
    return (namespace if isinstance(namespace, str) else None,
            labels if isinstance(labels, Mapping) else {}, port, name, pod_options.collector_port)


def _rewire_service(service: JSON, injected: list[tuple[str | None, Mapping[str, Any], int, str | None, int]]
                    ) -> None:
    spec = service.get("spec")
    if not isinstance(spec, dict):
        return
    selector = spec.get("selector")
    if not isinstance(selector, Mapping) or not selector:
        return  # a Service without a selector does not select pods
    metadata = service.get("metadata") if isinstance(service.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    namespace = metadata.get("namespace")
    for pod_namespace, labels, model_port, model_port_name, collector_port in injected:
        if namespace is not None and pod_namespace is not None and namespace != pod_namespace:
            continue
        if not all(labels.get(k) == v for k, v in selector.items()):
            continue
        for port in _list(spec.get("ports")):
            if not isinstance(port, dict):
                continue
            target = port.get("targetPort", port.get("port"))
            if target == model_port or (model_port_name is not None and target == model_port_name) \
                    or (isinstance(target, str) and target.isdigit() and int(target) == model_port):
                port["targetPort"] = collector_port


def _flatten(docs: Iterable[Any]) -> Iterable[JSON]:
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from _flatten(doc["items"])
        else:
            yield doc


def _describe(doc: Mapping[str, Any]) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f"{doc.get('kind', '?')}/{name or '?'}"


def _all_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for key in ("containers", "initContainers") for c in _list(spec.get(key))
            if isinstance(c, Mapping)]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # unquoted YAML true/false
        return "true" if value else "false"
    return str(value).strip()


def _flag(value: Any, annotation: str) -> bool:
    text = _text(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"annotation {annotation} must be \"true\" or \"false\"; got {_text(value)!r}")
