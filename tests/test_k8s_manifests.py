"""The Kubernetes manifests render with kustomize, validate, refer only to objects that exist,
and match the CLI.

Every kustomization under ``k8s/`` (and each component of ``k8s/monitor``, rendered over its
base) is rendered with ``kubectl kustomize``, and then:

* every object validates against the Kubernetes schemas (``kubernetes-validate``), except the
  custom resources of cert-manager, which the webhook's tests check by hand;
* every object a workload's pods need (the ConfigMap, Secret or PersistentVolumeClaim of a
  volume, of ``env``/``envFrom``, the ServiceAccount, the image pull Secrets) is in the same
  rendered output, in the pod's namespace, or is one of ``USER_PROVIDED``: objects the user
  creates, which the kustomization's own comments tell how to create.  A pod that mounts a claim
  nobody creates stays Pending, silently, which is what ``k8s/monitor`` once shipped;
* a claim mounted by a workload that runs more than one pod is ReadWriteMany or ReadOnlyMany: a
  ReadWriteOnce claim cannot be attached on a second node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from monitor.cli.main import main
from monitor.config import validate_file

ROOT = Path(__file__).resolve().parent.parent
K8S = "1.30"
#: Custom resources: kubernetes-validate has no schema for them.
CRD_API_VERSIONS = ("cert-manager.io/", "monitoring.coreos.com/")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")

#: Every kustomization (``kind: Kustomization``) under k8s/, relative to the repository.
KUSTOMIZATIONS = ("k8s/monitor", "k8s/remediate", "k8s/webhook")
#: Every component (``kind: Component``) under k8s/, with the kustomization it is rendered over.
COMPONENTS = {"k8s/monitor/references/image": "k8s/monitor", "k8s/monitor/references/pvc": "k8s/monitor"}
#: Objects a workload needs that no manifest creates: (kustomization, kind, name).  The
#: kustomization's comments must name each one and say how to create it.
USER_PROVIDED = {("k8s/remediate", "Secret", "driftline-remediate-token"):
                 "kubectl -n driftline create secret generic driftline-remediate-token"}
#: A ConfigMap holds at most 1 MiB of data (the API server refuses a bigger one).
CONFIGMAP_LIMIT = 1024 * 1024

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

Docs = list[dict[str, Any]]


def kustomize(directory: Path) -> Docs:
    rendered = subprocess.run(["kubectl", "kustomize", str(directory)],
                              capture_output=True, text=True, timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def render(target: str, tmp_path: Path) -> Docs:
    """A kustomization as is, or a component through an overlay over its base (as a user adds it)."""
    if target not in COMPONENTS:
        return kustomize(ROOT / target)
    overlay = tmp_path / ("overlay-" + target.replace("/", "-"))
    overlay.mkdir()
    base, component = (os.path.relpath(ROOT / path, overlay) for path in (COMPONENTS[target], target))
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [base], "components": [component]}))
    return kustomize(overlay)


def by_key(docs: Docs) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


# ---- what a workload needs, what a render defines


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]
    if doc["kind"] == "Pod":
        return spec
    if doc["kind"] == "CronJob":
        return dict(spec["jobTemplate"]["spec"]["template"]["spec"])
    return dict(spec["template"]["spec"])


def needed(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object the pods of ``spec`` cannot start without."""
    for volume in spec.get("volumes", []):
        if "persistentVolumeClaim" in volume:
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
        sources = [volume, *volume.get("projected", {}).get("sources", [])]
        for source in sources:
            if "configMap" in source and not source["configMap"].get("optional"):
                yield "ConfigMap", source["configMap"]["name"]
            if "secret" in source and not source["secret"].get("optional"):
                yield "Secret", source["secret"].get("secretName") or source["secret"]["name"]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for env in container.get("env", []):
            for ref, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                source = env.get("valueFrom", {}).get(ref)
                if source and not source.get("optional"):
                    yield kind, source["name"]
        for env_from in container.get("envFrom", []):
            for ref, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                source = env_from.get(ref)
                if source and not source.get("optional"):
                    yield kind, source["name"]
    if spec.get("serviceAccountName", "default") != "default":
        yield "ServiceAccount", spec["serviceAccountName"]
    for pull in spec.get("imagePullSecrets", []):
        yield "Secret", pull["name"]


def defined(docs: Docs) -> set[tuple[str, str | None, str]]:
    """(kind, namespace, name) of every object the render creates, and of the Secrets
    cert-manager creates from its Certificates."""
    out = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs}
    out |= {("Secret", d["metadata"].get("namespace"), d["spec"]["secretName"])
            for d in docs if d["kind"] == "Certificate" and d["apiVersion"].startswith("cert-manager.io/")}
    return out


def dangling(docs: Docs) -> list[tuple[str, str, str, str]]:
    """(workload, kind, namespace, name) of everything a workload needs that ``docs`` lacks."""
    have = defined(docs)
    missing = []
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            namespace = doc["metadata"].get("namespace")
            for kind, name in needed(pod_spec(doc)):
                if (kind, namespace, name) not in have:
                    missing.append((f"{doc['kind']}/{doc['metadata']['name']}", kind, str(namespace), name))
    return missing


def shared_single_node_claims(docs: Docs) -> list[tuple[str, str]]:
    """(workload, claim) where a workload that runs several pods mounts a claim that only one
    node can attach (ReadWriteOnce, ReadWriteOncePod)."""
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    out = []
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        several = doc["kind"] == "DaemonSet" or (doc["kind"] in ("Deployment", "ReplicaSet")
                                                 and doc["spec"].get("replicas", 1) > 1)
        for kind, name in needed(pod_spec(doc)):
            if kind == "PersistentVolumeClaim" and several and name in claims:
                modes = set(claims[name]["spec"]["accessModes"])
                if not modes & {"ReadWriteMany", "ReadOnlyMany"}:
                    out.append((doc["metadata"]["name"], name))
    return out


# ---- the checks catch the bugs they are for


def monitor_deployment(volume: dict[str, Any], replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "driftline-monitor", "namespace": "driftline"},
            "spec": {"replicas": replicas, "template": {"spec": {
                "containers": [{"name": "monitor", "image": "x"}], "volumes": [volume]}}}}


def test_a_claim_that_no_manifest_creates_is_dangling():
    deployment = monitor_deployment({"name": "references",
                                     "persistentVolumeClaim": {"claimName": "driftline-references"}})
    assert dangling([deployment]) == [("Deployment/driftline-monitor", "PersistentVolumeClaim", "driftline",
                                       "driftline-references")]
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "driftline-references", "namespace": "driftline"},
             "spec": {"accessModes": ["ReadWriteOnce"]}}
    assert dangling([deployment, claim]) == []
    # ... in another namespace, it does not count
    assert dangling([deployment, {**claim, "metadata": {"name": "driftline-references"}}])
    # a ReadWriteOnce claim and two replicas: the second pod on another node stays Pending
    assert shared_single_node_claims([deployment, claim]) == [("driftline-monitor", "driftline-references")]
    assert shared_single_node_claims([monitor_deployment(deployment["spec"]["template"]["spec"]["volumes"][0],
                                                         replicas=1), claim]) == []
    rwx = {**claim, "spec": {"accessModes": ["ReadWriteMany"]}}
    assert shared_single_node_claims([deployment, rwx]) == []


def test_configmaps_secrets_env_and_service_accounts_are_needs_too():
    spec = {"serviceAccountName": "sa", "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "a", "configMap": {"name": "cm"}},
                        {"name": "b", "secret": {"secretName": "s"}},
                        {"name": "c", "secret": {"secretName": "maybe", "optional": True}},
                        {"name": "d", "projected": {"sources": [{"configMap": {"name": "p"}}]}}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "ef"}}]}],
            "containers": [{"name": "m", "env": [{"name": "X", "valueFrom": {
                "configMapKeyRef": {"name": "env", "key": "k"}}}]}]}
    assert sorted(needed(spec)) == [("ConfigMap", "cm"), ("ConfigMap", "env"), ("ConfigMap", "p"),
                                    ("Secret", "ef"), ("Secret", "pull"), ("Secret", "s"),
                                    ("ServiceAccount", "sa")]


# ---- every kustomization and component


def test_the_lists_above_name_every_kustomization_and_component_under_k8s():
    found: dict[str, list[str]] = {"Kustomization": [], "Component": []}
    for path in sorted((ROOT / "k8s").rglob("kustomization.yaml")):
        kind = yaml.safe_load(path.read_text()).get("kind", "Kustomization")
        found[kind].append(str(path.parent.relative_to(ROOT)))
    assert found == {"Kustomization": sorted(KUSTOMIZATIONS), "Component": sorted(COMPONENTS)}


@needs_kubectl
@pytest.mark.parametrize("target", [*KUSTOMIZATIONS, *COMPONENTS])
def test_every_object_validates_and_everything_a_pod_needs_is_created_or_documented(target, tmp_path):
    docs = render(target, tmp_path)
    for doc in docs:
        if not doc["apiVersion"].startswith(CRD_API_VERSIONS):
            kubernetes_validate.validate(doc, K8S, strict=True)
    kustomization = (ROOT / COMPONENTS.get(target, target) / "kustomization.yaml").read_text()
    for workload, kind, _, name in dangling(docs):
        documented = USER_PROVIDED.get((COMPONENTS.get(target, target), kind, name))
        assert documented, f"{target}: {workload} needs {kind} {name}, which nothing creates"
        assert documented in kustomization, f"{target}: the comments do not say how to create {kind} {name}"
    assert shared_single_node_claims(docs) == []


@needs_kubectl
@pytest.mark.parametrize("target", [*KUSTOMIZATIONS, *COMPONENTS])
def test_every_configmap_fits_the_api_servers_limit(target, tmp_path):
    for doc in render(target, tmp_path):
        if doc["kind"] == "ConfigMap":
            size = sum(len(v.encode()) for v in doc.get("data", {}).values())
            size += sum(len(b64decode(v)) for v in doc.get("binaryData", {}).values())
            assert size < CONFIGMAP_LIMIT, doc["metadata"]["name"]


# ---- the monitor


def test_the_monitor_config_shipped_with_the_manifests_is_valid():
    assert validate_file(ROOT / "k8s/monitor/driftline.yaml") == []


@needs_kubectl
def test_the_monitor_kustomization_renders_a_deployment_that_runs_serve_with_probes(tmp_path):
    docs = by_key(render("k8s/monitor", tmp_path))
    deployment = docs[("Deployment", "driftline-monitor")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["serve", "--config", "/etc/driftline/driftline.yaml"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config_maps = sorted(name for kind, name in docs if kind == "ConfigMap")
    assert [name.rsplit("-", 1)[0] for name in config_maps] == ["driftline-config", "driftline-references"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    # the generated, hashed names: a new config or reference rolls the pods
    assert volumes["config"]["configMap"]["name"] == config_maps[0]
    assert volumes["references"]["configMap"]["name"] == config_maps[1]
    service = docs[("Service", "driftline-monitor")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def mounted_files(docs: Docs, root: Path) -> dict[str, Path]:
    """Write the ConfigMaps the monitor container mounts under ``root`` as the pod sees them;
    mount path -> local directory."""
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    spec = pod_spec(next(d for d in docs if d["kind"] == "Deployment"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    out = {}
    for mount in spec["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" not in volume:
            continue
        local = root / mount["mountPath"].strip("/")
        local.mkdir(parents=True)
        config_map = config_maps[volume["configMap"]["name"]]
        for key, text in config_map.get("data", {}).items():
            (local / key).write_text(text)
        for key, data in config_map.get("binaryData", {}).items():
            (local / key).write_bytes(b64decode(data))
        out[mount["mountPath"]] = local
    return out


@needs_kubectl
def test_the_shipped_reference_is_where_the_config_says_and_profiles_with_its_types(tmp_path, capsys):
    """The pod's /etc/driftline and /references as the ConfigMaps fill them: the config names
    files that are there, and its reference reads with the config's features."""
    mounts = mounted_files(render("k8s/monitor", tmp_path), tmp_path / "pod")
    assert sorted(mounts) == ["/etc/driftline", "/references"]
    config = mounts["/etc/driftline"] / "driftline.yaml"
    text = config.read_text()
    models = yaml.safe_load(text)["models"]
    assert models and all(m["reference"].startswith("/references/") for m in models)
    assert validate_file(config, check_paths=True)  # the pod's paths are not this machine's ...
    config.write_text(text.replace("/references/", f"{mounts['/references']}/"))
    assert validate_file(config, check_paths=True) == []  # ... the mounted files are the ones named
    assert main(["profile", "-C", str(config), "--out", str(tmp_path / "reference.dlprofile")]) == 0
    assert "3 numerical" in capsys.readouterr().out


@needs_kubectl
def test_the_image_component_copies_the_references_into_an_emptydir_before_the_monitor_starts(tmp_path):
    docs = by_key(render("k8s/monitor/references/image", tmp_path))
    assert not [name for kind, name in docs if name.startswith("driftline-references")]
    spec = pod_spec(docs[("Deployment", "driftline-monitor")])
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(volumes["references"]) == {"name", "emptyDir"}
    (init,) = spec["initContainers"]
    assert init["image"].startswith("ghcr.io/example/driftline-references:")
    assert init["command"] == ["cp", "-R", "/references/.", "/mnt/references/"]
    assert init["volumeMounts"] == [{"name": "references", "mountPath": "/mnt/references"}]
    monitor = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert monitor["references"] == {"name": "references", "mountPath": "/references", "readOnly": True}


@needs_kubectl
def test_the_pvc_component_mounts_a_readwritemany_claim_it_creates_read_only(tmp_path):
    docs = by_key(render("k8s/monitor/references/pvc", tmp_path))
    references = [kind for kind, name in docs if name.startswith("driftline-references")]
    assert references == ["PersistentVolumeClaim"]
    claim = docs[("PersistentVolumeClaim", "driftline-references")]
    assert claim["metadata"]["namespace"] == "driftline"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = {v["name"]: v for v in pod_spec(docs[("Deployment", "driftline-monitor")])["volumes"]}
    assert volumes["references"] == {"name": "references", "persistentVolumeClaim": {
        "claimName": "driftline-references", "readOnly": True}}
