"""The receiver's RBAC (``k8s/remediate``) is exactly what ``alerts.kube`` calls.

Every code path of :class:`alerts.kube.KubeCluster` runs against the fake API server; each
recorded request becomes the (apiGroup, resource, verb) the API server's authorizer would
check (discovery excluded: non-resource URLs that ``system:discovery`` allows every
authenticated user).  The Roles must allow each one, and every verb they grant must be used.
The manifests render with ``kubectl kustomize`` and validate against the Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from alerts.cluster import Retrain
from alerts.kube import KubeCluster
from alerts.types import Alert, Decision, PastAction
from monitor.config import ObjectRef, validate_file
from tests.k8s_fake import FakeKube

ROOT = Path(__file__).resolve().parent.parent
K8S = "1.30"
NS = "ml"
ROLE_FILES = ("role.yaml", "role-crds.yaml")

Attribute = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


def rules(*files: str) -> set[Attribute]:
    granted: set[Attribute] = set()
    for name in files:
        for doc in yaml.safe_load_all((ROOT / "k8s/remediate" / name).read_text()):
            assert doc["kind"] == "Role" and doc["metadata"]["namespace"] == NS
            for rule in doc["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert "resourceNames" not in rule and "nonResourceURLs" not in rule
                granted |= {(group, resource, verb) for group in rule["apiGroups"]
                            for resource in rule["resources"] for verb in rule["verbs"]}
    return granted


def seeded(kube: FakeKube) -> None:
    kube.add({"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "flight-delay", "namespace": NS, "uid": "uid-d",
                           "annotations": {"deployment.kubernetes.io/revision": "2"}},
              "spec": {"selector": {"matchLabels": {"app": "fd"}},
                       "template": {"metadata": {"labels": {"app": "fd"}},
                                    "spec": {"containers": [{"name": "m", "image": "m:2"}]}}}})
    kube.add({"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "flight-delay-1", "namespace": NS, "labels": {"app": "fd"},
                           "annotations": {"deployment.kubernetes.io/revision": "1"},
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": "flight-delay", "uid": "uid-d", "controller": True}]},
              "spec": {"selector": {"matchLabels": {"app": "fd"}},
                       "template": {"metadata": {"labels": {"app": "fd"}},
                                    "spec": {"containers": [{"name": "m", "image": "m:1"}]}}}})
    kube.add({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
              "metadata": {"name": "fd", "namespace": NS},
              "spec": {"predictor": {"canaryTrafficPercent": 10}}})
    kube.add({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
              "metadata": {"name": "fd", "namespace": NS}, "spec": {}})


def every_code_path(cluster: KubeCluster) -> None:
    """Each public method, each target kind, a Job and an Argo Workflow template."""
    job = yaml.safe_load((ROOT / "k8s/remediate/retrain.yaml").read_text())
    workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "w-"},
                "spec": {"entrypoint": "fit", "templates": [{"name": "fit", "container": {"image": "t"}}]}}
    alert = Alert(status="firing", labels={"alertname": "DriftlineDatasetDrift", "model": "flight-delay"},
                  annotations={}, starts_at="2026-12-07T00:00:00Z", ends_at=None, fingerprint="f00d")
    targets = (ObjectRef(deployment="flight-delay"), ObjectRef(inference_service="fd"),
               ObjectRef(rollout="fd"))
    for number, (template, target) in enumerate(zip((job, workflow, job), targets, strict=True)):
        cluster.observe("flight-delay", NS, template, target)
        cluster.claim(target, NS, PastAction(model="flight-delay", action="retrain", alert_key=f"k{number}",
                                             at=1796600000.0 + number))
        name = cluster.create_retrain(Retrain(
            template=template, namespace=NS, model="flight-delay", model_version="v1",
            reason="DriftlineDatasetDrift", fingerprint="f00d", alert_key=f"k{number}",
            drifted_features=("distance",), window="rows 0-1000"))
        cluster.rollback(target, NS)
        for outcome in ("acted", "failed"):
            cluster.record_event(target, NS, Decision(
                id=f"d{number}", alert=alert, model="flight-delay", action="retrain", outcome=outcome,
                reason="x", at=1796600000.0, detail={"job": name}))


@pytest.fixture
def recorded() -> Iterator[list[Attribute]]:
    with FakeKube() as kube:
        seeded(kube)
        every_code_path(KubeCluster.for_url(kube.url, sleep=lambda _: None))
        attributes = []
        for request in kube.requests:
            found = request.attributes()
            if found is None:
                assert request.method == "GET" and request.discovery
                continue
            group, resource, verb, namespace = found
            assert namespace == NS
            attributes.append((group, resource, verb))
        yield attributes


def test_every_request_of_every_code_path_is_allowed_by_the_roles(recorded: list[Attribute]) -> None:
    denied = sorted(set(recorded) - rules(*ROLE_FILES))
    assert denied == []


def test_the_roles_grant_nothing_that_no_code_path_uses(recorded: list[Attribute]) -> None:
    unused = sorted(rules(*ROLE_FILES) - set(recorded))
    assert unused == []


def test_the_core_role_covers_a_job_and_deployment_setup_without_the_optional_crd_role() -> None:
    with FakeKube() as kube:
        seeded(kube)
        cluster = KubeCluster.for_url(kube.url)
        job = yaml.safe_load((ROOT / "k8s/remediate/retrain.yaml").read_text())
        target = ObjectRef(deployment="flight-delay")
        cluster.observe("flight-delay", NS, job, target)
        cluster.claim(target, NS, PastAction(model="flight-delay", action="rollback", alert_key="k", at=1.0))
        cluster.create_retrain(Retrain(template=job, namespace=NS, model="flight-delay", model_version=None,
                                       reason="DriftlineDatasetDrift", fingerprint="f", alert_key="k",
                                       drifted_features=(), window=""))
        cluster.rollback(target, NS)
        alert = Alert(status="firing", labels={"alertname": "DriftlinePerformanceBelowMin"}, annotations={},
                      starts_at="2026-12-07T00:00:00Z", ends_at=None, fingerprint="f")
        cluster.record_event(target, NS, Decision(id="d", alert=alert, model="flight-delay",
                                                  action="rollback", outcome="acted", reason="x", at=1.0))
        used = {found[:3] for request in kube.requests if (found := request.attributes()) is not None}
    assert used == rules("role.yaml")


def test_the_attributes_are_the_ones_the_api_server_checks(recorded: list[Attribute]) -> None:
    assert set(recorded) == {
        ("batch", "jobs", "list"), ("batch", "jobs", "create"),
        ("apps", "deployments", "get"), ("apps", "deployments", "patch"), ("apps", "replicasets", "list"),
        ("", "events", "create"),
        ("serving.kserve.io", "inferenceservices", "get"),
        ("serving.kserve.io", "inferenceservices", "patch"),
        ("argoproj.io", "rollouts", "get"), ("argoproj.io", "rollouts", "patch"),
        ("argoproj.io", "rollouts/status", "patch"),
        ("argoproj.io", "workflows", "list"), ("argoproj.io", "workflows", "create"),
    }


# --- the manifests -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    text = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s/remediate")], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(text)}


def test_the_kustomization_renders_and_every_object_validates_against_the_kubernetes_schemas(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    kinds = sorted(kind for kind, _ in rendered)
    assert kinds == ["ConfigMap", "Deployment", "Role", "Role", "RoleBinding", "RoleBinding", "Service",
                     "ServiceAccount"]
    for doc in rendered.values():
        kubernetes_validate.validate(doc, K8S, strict=True)


def test_the_rendered_roles_are_the_files_the_rbac_tests_read(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    granted = {(group, resource, verb) for (kind, _), doc in rendered.items() if kind == "Role"
               for rule in doc["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
               for verb in rule["verbs"]}
    assert granted == rules(*ROLE_FILES)


def test_the_bindings_give_the_receivers_service_account_both_roles(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = rendered[("Deployment", "driftline-remediate")]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    namespace = deployment["metadata"]["namespace"]
    assert (("ServiceAccount", account)) in rendered
    bound = {doc["roleRef"]["name"] for (kind, _), doc in rendered.items() if kind == "RoleBinding"
             if doc["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]}
    assert bound == {name for kind, name in rendered if kind == "Role"}


def test_the_deployment_runs_remediate_non_root_read_only_with_the_token_file_and_probes(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = rendered[("Deployment", "driftline-remediate")]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["remediate", "--config", "/etc/driftline/driftline.yaml",
                                 "--host", "0.0.0.0", "--port", "9095"]
    assert container["image"] == "ghcr.io/example/driftline:latest"  # the monitor's image
    assert {"name": "DRIFTLINE_REMEDIATE_TOKEN_FILE", "value": "/var/run/secrets/driftline/token"} \
        in container["env"]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert mounts["token"]["mountPath"] == "/var/run/secrets/driftline" and mounts["token"]["readOnly"]
    assert volumes["token"]["secret"]["items"] == [{"key": "token", "path": "token"}]
    config_map = volumes["config"]["configMap"]["name"]
    assert config_map.startswith("driftline-remediate-config-") and ("ConfigMap", config_map) in rendered
    assert set(rendered[("ConfigMap", config_map)]["data"]) == {"driftline.yaml", "retrain.yaml"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = rendered[("Service", "driftline-remediate")]
    assert service["spec"]["ports"] == [{"name": "http", "port": 9095, "targetPort": "http"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_receivers_config_and_job_template_are_valid() -> None:
    assert validate_file(ROOT / "k8s/remediate/driftline.yaml") == []
    template = yaml.safe_load((ROOT / "k8s/remediate/retrain.yaml").read_text())
    assert template == yaml.safe_load((ROOT / "k8s/jobs/retrain.yaml").read_text())  # the copy is in step
    kubernetes_validate.validate({**template, "metadata": {"name": "retrain-x"}}, K8S, strict=True)
