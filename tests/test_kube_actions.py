"""``alerts.kube.KubeCluster``: the official client against the fake API server over HTTP
(``tests/k8s_fake.py``), asserting the exact requests, bodies and patches; plus the pure
manifest building of ``alerts.manifests``.  Sleeps are injected (recorded, never slept)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from alerts.cluster import ActionFailed, Claimed, Retrain
from alerts.kube import KubeCluster
from alerts.manifests import (
    containers,
    finished,
    label_selector,
    last_action_annotation,
    parse_last_action,
    parse_last_actions,
    retrain_manifest,
    retrain_name,
)
from alerts.types import Alert, Decision, PastAction
from monitor.config import ObjectRef
from tests.k8s_fake import DEFAULT_RESOURCES, FakeKube, ResourceType
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
NS = "ml"
KEY = "3f2a9c1b7d4e5f60@2026-12-07T00:10:00Z"
FINGERPRINT = "3f2a9c1b7d4e5f60"
ENV_NAMES = ["DRIFTLINE_MODEL", "DRIFTLINE_MODEL_VERSION", "DRIFTLINE_REASON", "DRIFTLINE_DRIFTED_FEATURES",
             "DRIFTLINE_WINDOW", "DRIFTLINE_ALERT_FINGERPRINT"]


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def cluster(kube: FakeKube, sleeps: list[float]) -> Iterator[KubeCluster]:
    client = KubeCluster.for_url(kube.url, sleep=sleeps.append, rng=random.Random(7))
    yield client
    client.close()


def job_template() -> dict[str, Any]:
    template: dict[str, Any] = yaml.safe_load((ROOT / "k8s/jobs/retrain.yaml").read_text())
    return template


def retrain(template: dict[str, Any] | None = None, *, key: str = KEY,
            model: str = "flight-delay") -> Retrain:
    return Retrain(template=template or job_template(), namespace=NS, model=model, model_version="v3",
                   reason="DriftlineDatasetDrift", fingerprint=FINGERPRINT, alert_key=key,
                   drifted_features=("distance", "dep_hour"), window="rows 4000-5000")


def env(model: str = "flight-delay") -> list[dict[str, str]]:
    return [{"name": "DRIFTLINE_MODEL", "value": model}, {"name": "DRIFTLINE_MODEL_VERSION", "value": "v3"},
            {"name": "DRIFTLINE_REASON", "value": "DriftlineDatasetDrift"},
            {"name": "DRIFTLINE_DRIFTED_FEATURES", "value": "distance,dep_hour"},
            {"name": "DRIFTLINE_WINDOW", "value": "rows 4000-5000"},
            {"name": "DRIFTLINE_ALERT_FINGERPRINT", "value": FINGERPRINT}]


def api(kube: FakeKube) -> list[tuple[str, str, dict[str, str]]]:
    return [(request.method, request.path, request.query) for request in kube.api_requests()]


def decision(outcome: str = "acted", action: str | None = "rollback", reason: str = "revision 7 -> 6",
             detail: dict[str, str] | None = None) -> Decision:
    alert = Alert(status="firing",
                  labels={"alertname": "DriftlinePerformanceBelowMin", "model": "flight-delay"},
                  annotations={}, starts_at="2026-12-07T00:10:00Z", ends_at=None, fingerprint=FINGERPRINT)
    return Decision(id="d1", alert=alert, model="flight-delay", action=action,  # type: ignore[arg-type]
                    outcome=outcome, reason=reason, at=1796602200.0, detail=detail or {})  # type: ignore[arg-type]


# --- retrain ----------------------------------------------------------------------------------------

def test_a_retrain_job_is_posted_with_the_alerts_labels_annotations_env_on_every_container_and_a_fixed_name(
        kube: FakeKube, cluster: KubeCluster) -> None:
    template = job_template()
    template["spec"]["template"]["spec"]["initContainers"] = [{"name": "fetch", "image": "busybox"}]
    template["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "busybox", "env": [{"name": "DRIFTLINE_MODEL", "value": "stale"},
                                                         {"name": "KEEP", "value": "1"}]})
    name = cluster.create_retrain(retrain(template))

    assert name == "retrain-flight-delay-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert api(kube) == [("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", {})]
    request = kube.api_requests()[0]
    assert request.content_type == "application/json"
    assert request.body == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app.kubernetes.io/part-of": "driftline", "driftline.io/model": "flight-delay",
                       "driftline.io/reason": "DriftlineDatasetDrift",
                       "driftline.io/alert-fingerprint": FINGERPRINT},
            "annotations": {"driftline.io/alert-key": KEY, "driftline.io/model-version": "v3",
                            "driftline.io/drifted-features": "distance,dep_hour",
                            "driftline.io/window": "rows 4000-5000"},
        },
        "spec": {
            "backoffLimit": 1,
            "ttlSecondsAfterFinished": 86400,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "retrain", "image": "ghcr.io/example/flight-delay-trainer:latest",
                     "args": ["--train-window", "30d"],
                     "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                                   "limits": {"cpu": "2", "memory": "4Gi"}},
                     "env": env()},
                    {"name": "sidecar", "image": "busybox",
                     "env": [{"name": "DRIFTLINE_MODEL", "value": "flight-delay"},
                             {"name": "KEEP", "value": "1"},
                             *env()[1:]]},
                ],
                "initContainers": [{"name": "fetch", "image": "busybox", "env": env()}],
            }},
        },
    }
    stored = kube.get("batch/v1", "Job", NS, name)
    assert stored is not None and stored["metadata"]["uid"] and "generateName" not in stored["metadata"]


def test_the_same_alert_created_twice_gets_409_already_exists_which_is_claimed(kube: FakeKube,
                                                                                cluster: KubeCluster) -> None:
    cluster.create_retrain(retrain())
    with pytest.raises(Claimed, match="already exists"):
        cluster.create_retrain(retrain())
    assert [method for method, _, _ in api(kube)] == ["POST", "POST"]
    assert len(kube.objects("batch/v1", "Job", NS)) == 1


def test_two_receivers_racing_on_one_alert_create_one_job_and_the_loser_is_claimed(kube: FakeKube) -> None:
    first, second = KubeCluster.for_url(kube.url), KubeCluster.for_url(kube.url)
    outcomes = []
    for receiver in (first, second):
        try:
            outcomes.append(receiver.create_retrain(retrain()))
        except Claimed:
            outcomes.append("claimed")
    assert outcomes[1] == "claimed" and len(kube.objects("batch/v1", "Job", NS)) == 1


def test_a_new_alert_episode_for_the_same_model_gets_a_new_job(kube: FakeKube, cluster: KubeCluster) -> None:
    one = cluster.create_retrain(retrain())
    two = cluster.create_retrain(retrain(key=f"{FINGERPRINT}@2026-12-07T03:00:00Z"))
    assert one != two and len(kube.objects("batch/v1", "Job", NS)) == 2


def test_an_argo_workflow_template_is_created_through_the_dynamic_client(kube: FakeKube,
                                                                         cluster: KubeCluster) -> None:
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "train-"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "steps": [[{"name": "fit", "template": "fit"}]]},
            {"name": "fit", "container": {"image": "trainer:1", "command": ["python", "fit.py"]}},
            {"name": "report", "script": {"image": "python:3.11", "source": "print(1)"}},
        ]},
    }
    name = cluster.create_retrain(retrain(workflow))

    assert name.startswith("train-flight-delay-")
    assert api(kube) == [("POST", f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/workflows", {})]
    body = kube.api_requests()[0].body
    assert body["metadata"]["labels"]["driftline.io/model"] == "flight-delay"
    steps = body["spec"]["templates"]
    assert steps[0] == workflow["spec"]["templates"][0]  # type: ignore[index]
    assert steps[1]["container"]["env"] == env() and steps[2]["script"]["env"] == env()
    assert kube.get("argoproj.io/v1alpha1", "Workflow", NS, name) is not None


def test_a_kind_the_server_does_not_serve_fails_with_a_reason_naming_the_crd(kube: FakeKube,
                                                                             cluster: KubeCluster) -> None:
    template = {"apiVersion": "example.com/v1", "kind": "Trainer", "metadata": {"name": "t"}, "spec": {}}
    with pytest.raises(ActionFailed, match="does not serve Trainer in example.com/v1 .is its CRD installed"):
        cluster.create_retrain(retrain(template))
    assert api(kube) == []


# --- observe ------------------------------------------------------------------------------------------

def job(name: str, status: dict[str, Any], *, model: str = "flight-delay", key: str = KEY,
        created: str = "2026-12-07T00:11:00Z") -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": created,
                         "labels": {"driftline.io/model": model},
                         "annotations": {"driftline.io/alert-key": key}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}, "status": status}


def deployment(name: str = "flight-delay", revision: int | None = 4, uid: str = "uid-deploy",
               image: str = "model:4", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    notes = dict(annotations or {})
    if revision is not None:
        notes["deployment.kubernetes.io/revision"] = str(revision)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "uid": uid, "annotations": notes,
                         "labels": {"app": name}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "model", "image": image}]}}},
            "status": {"replicas": 2}}


def test_observe_reports_running_and_finished_jobs_of_the_model_and_the_targets_last_action(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(job("a-running", {"active": 1}))
    kube.add(job("b-succeeded", {"succeeded": 1}, key="k2", created="2026-12-06T00:00:00Z"))
    kube.add(job("c-failed", {"failed": 2, "conditions": [{"type": "Failed", "status": "True"}]}, key="k3"))
    kube.add(job("d-other-model", {}, model="churn"))
    claim = PastAction(model="flight-delay", action="rollback", alert_key="k9", at=1796600000.0)
    kube.add(deployment(annotations={"driftline.io/last-action": last_action_annotation(claim)}))

    seen = cluster.observe("flight-delay", NS, job_template(), ObjectRef(deployment="flight-delay"))

    assert seen == (
        PastAction(model="flight-delay", action="retrain", alert_key=KEY, at=1796602260.0, running=True),
        PastAction(model="flight-delay", action="retrain", alert_key="k2", at=1796515200.0, running=False),
        PastAction(model="flight-delay", action="retrain", alert_key="k3", at=1796602260.0, running=False),
        claim,
    )
    assert api(kube) == [
        ("GET", f"/apis/batch/v1/namespaces/{NS}/jobs", {"labelSelector": "driftline.io/model=flight-delay"}),
        ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/flight-delay", {}),
    ]


def test_observe_reads_the_phase_of_argo_workflows(kube: FakeKube, cluster: KubeCluster) -> None:
    for name, phase in (("w-running", "Running"), ("w-done", "Succeeded"), ("w-error", "Error")):
        kube.add({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                  "metadata": {"name": name, "namespace": NS,
                               "labels": {"driftline.io/model": "flight-delay"}},
                  "spec": {}, "status": {"phase": phase}})
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "t-"}}
    seen = cluster.observe("flight-delay", NS, template, None)
    assert [action.running for action in seen] == [False, False, True]  # listed by name


def test_a_malformed_last_action_annotation_is_ignored_with_a_warning(
        kube: FakeKube, cluster: KubeCluster, caplog: pytest.LogCaptureFixture) -> None:
    kube.add(deployment(annotations={"driftline.io/last-action": "{not json"}))
    with caplog.at_level(logging.WARNING, logger="driftline.remediate.kube"):
        assert cluster.observe("flight-delay", NS, None, ObjectRef(deployment="flight-delay")) == ()
    assert "malformed driftline.io/last-action annotation on deployment ml/flight-delay" in caplog.text


# --- claim --------------------------------------------------------------------------------------------

def mine(key: str = KEY, at: float = 1796602300.0) -> PastAction:
    return PastAction(model="flight-delay", action="rollback", alert_key=key, at=at)


def test_claim_writes_the_annotation_with_the_observed_resource_version_as_a_merge_patch(
        kube: FakeKube, cluster: KubeCluster) -> None:
    stored = kube.add(deployment())
    target = ObjectRef(deployment="flight-delay")
    cluster.observe("flight-delay", NS, None, target)
    cluster.claim(target, NS, mine())

    patch = kube.api_requests()[-1]
    assert (patch.method, patch.path) == ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/flight-delay")
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"metadata": {"resourceVersion": stored["metadata"]["resourceVersion"],
                                       "annotations": {
                                           "driftline.io/last-action": last_action_annotation(mine())}}}
    after = kube.get("apps/v1", "Deployment", NS, "flight-delay")
    assert after is not None
    assert parse_last_actions(after["metadata"]["annotations"]["driftline.io/last-action"]) == (mine(),)


def test_a_claim_keeps_the_latest_action_of_the_other_kind_so_a_restart_still_sees_both(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(deployment())
    target = ObjectRef(deployment="flight-delay")
    rollback = mine(key="perf-alert", at=1796602000.0)
    retrain = PastAction(model="flight-delay", action="retrain", alert_key="drift-alert", at=1796602100.0)
    cluster.observe("flight-delay", NS, None, target)
    cluster.claim(target, NS, rollback)
    cluster.claim(target, NS, retrain)
    after = kube.get("apps/v1", "Deployment", NS, "flight-delay")
    assert after is not None
    assert json.loads(after["metadata"]["annotations"]["driftline.io/last-action"]) == {
        "retrain": {"model": "flight-delay", "action": "retrain", "alert_key": "drift-alert",
                    "at": 1796602100.0},
        "rollback": {"model": "flight-delay", "action": "rollback", "alert_key": "perf-alert",
                     "at": 1796602000.0}}
    fresh = KubeCluster.for_url(kube.url, sleep=lambda s: None)
    assert set(fresh.observe("flight-delay", NS, None, target)) == {rollback, retrain}


def test_an_annotation_of_one_bare_action_is_still_read() -> None:
    text = '{"model": "m", "action": "retrain", "alert_key": "k", "at": 5}'
    assert parse_last_actions(text) == (PastAction(model="m", action="retrain", alert_key="k", at=5.0),)


def test_claim_on_a_stale_resource_version_gets_409_rereads_and_is_claimed_when_another_receiver_won(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(deployment())
    target = ObjectRef(deployment="flight-delay")
    assert cluster.observe("flight-delay", NS, None, target) == ()
    theirs = last_action_annotation(mine(key="other-replica-alert", at=1796602299.0))
    kube.modify("apps/v1", "Deployment", NS, "flight-delay",
                lambda obj: obj["metadata"]["annotations"].update({"driftline.io/last-action": theirs}))

    with pytest.raises(Claimed, match="claimed by another receiver"):
        cluster.claim(target, NS, mine())

    assert [(method, path.rsplit("/", 1)[-1]) for method, path, _ in api(kube)] == [
        ("GET", "flight-delay"), ("PATCH", "flight-delay"), ("GET", "flight-delay")]
    after = kube.get("apps/v1", "Deployment", NS, "flight-delay")
    assert after is not None and after["metadata"]["annotations"]["driftline.io/last-action"] == theirs


def test_a_restarted_receiver_sees_the_claim_of_its_predecessor_in_observe(kube: FakeKube) -> None:
    kube.add(deployment())
    target = ObjectRef(deployment="flight-delay")
    before = KubeCluster.for_url(kube.url)
    before.observe("flight-delay", NS, None, target)
    before.claim(target, NS, mine())
    restarted = KubeCluster.for_url(kube.url)
    assert restarted.observe("flight-delay", NS, None, target) == (mine(),)


def test_a_conflict_that_is_not_a_claim_is_retried_on_the_fresh_resource_version(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(deployment())
    target = ObjectRef(deployment="flight-delay")
    cluster.observe("flight-delay", NS, None, target)
    changed = kube.modify("apps/v1", "Deployment", NS, "flight-delay",
                          lambda obj: obj["metadata"]["labels"].update({"team": "ml"}))
    cluster.claim(target, NS, mine())

    patches = [request for request in kube.api_requests() if request.method == "PATCH"]
    assert len(patches) == 2
    assert patches[1].body["metadata"]["resourceVersion"] == changed["metadata"]["resourceVersion"]
    after = kube.get("apps/v1", "Deployment", NS, "flight-delay")
    assert after is not None and "driftline.io/last-action" in after["metadata"]["annotations"]


def test_claim_without_an_observe_reads_the_target_first(kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
              "metadata": {"name": "fd", "namespace": NS}, "spec": {}})
    cluster.claim(ObjectRef(rollout="fd"), NS, mine())
    assert [method for method, _, _ in api(kube)] == ["GET", "PATCH"]
    assert kube.api_requests()[1].content_type == "application/merge-patch+json"


# --- rollback -----------------------------------------------------------------------------------------

def replicaset(name: str, revision: int, owner: str, image: str, app: str = "flight-delay",
               extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"app": app, "pod-template-hash": name[-5:]},
                         "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                         "deployment.kubernetes.io/desired-replicas": "2", **(extra or {})},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "x",
                                              "uid": owner, "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": app, "pod-template-hash": name[-5:]}},
                     "template": {"metadata": {"labels": {"app": app, "pod-template-hash": name[-5:]}},
                                  "spec": {"containers": [{"name": "model", "image": image}]}}}}


def test_rollback_picks_the_previous_revision_among_several_replicasets_and_sends_kubectls_json_patch(
        kube: FakeKube, cluster: KubeCluster) -> None:
    stored = kube.add(deployment(revision=4, image="model:4",
                                 annotations={"kubernetes.io/change-cause": "v4", "team": "ml"}))
    kube.add(replicaset("flight-delay-aaaa1", 1, "uid-deploy", "model:1"))
    kube.add(replicaset("flight-delay-bbbb4", 4, "uid-deploy", "model:4"))
    kube.add(replicaset("flight-delay-cccc2", 2, "uid-deploy", "model:2",
                        extra={"kubernetes.io/change-cause": "v2"}))
    kube.add(replicaset("flight-delay-dddd3", 3, "uid-someone-else", "model:3"))  # same labels, not ours

    account = cluster.rollback(ObjectRef(deployment="flight-delay"), NS)

    assert account == "deployment flight-delay: revision 4 -> 2 (flight-delay-cccc2)"
    assert api(kube) == [
        ("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/flight-delay", {}),
        ("GET", f"/apis/apps/v1/namespaces/{NS}/replicasets", {"labelSelector": "app=flight-delay"}),
        ("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/flight-delay", {}),
    ]
    patch = kube.api_requests()[-1]
    assert patch.content_type == "application/json-patch+json"
    assert patch.body == [
        {"op": "replace", "path": "/metadata/resourceVersion",
         "value": stored["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/template",
         "value": {"metadata": {"labels": {"app": "flight-delay"}},
                   "spec": {"containers": [{"name": "model", "image": "model:2"}]}}},
        {"op": "replace", "path": "/metadata/annotations",
         "value": {"deployment.kubernetes.io/revision": "4", "kubernetes.io/change-cause": "v2"}},
    ]
    after = kube.get("apps/v1", "Deployment", NS, "flight-delay")
    assert after is not None and after["spec"]["template"]["spec"]["containers"][0]["image"] == "model:2"


def test_rollback_keeps_driftlines_lock_annotation_on_the_deployment(kube: FakeKube,
                                                                     cluster: KubeCluster) -> None:
    lock = last_action_annotation(mine())
    kube.add(deployment(revision=2, annotations={"driftline.io/last-action": lock}))
    kube.add(replicaset("flight-delay-aaaa1", 1, "uid-deploy", "model:1",
                        extra={"driftline.io/last-action": "an old copy"}))
    cluster.rollback(ObjectRef(deployment="flight-delay"), NS)
    after = kube.get("apps/v1", "Deployment", NS, "flight-delay")
    assert after is not None and after["metadata"]["annotations"]["driftline.io/last-action"] == lock


def test_rollback_refuses_a_deployment_without_a_previous_revision(kube: FakeKube,
                                                                   cluster: KubeCluster) -> None:
    kube.add(deployment(revision=1))
    kube.add(replicaset("flight-delay-aaaa1", 1, "uid-deploy", "model:1"))
    kube.add(replicaset("flight-delay-zzzz1", 0, "uid-someone-else", "model:0"))
    with pytest.raises(ActionFailed, match="^deployment flight-delay has no previous revision$"):
        cluster.rollback(ObjectRef(deployment="flight-delay"), NS)
    assert "PATCH" not in [method for method, _, _ in api(kube)]


def test_rollback_uses_match_expressions_of_the_selector(kube: FakeKube, cluster: KubeCluster) -> None:
    spec = deployment(revision=2)
    spec["spec"]["selector"] = {"matchLabels": {"app": "flight-delay"},
                                "matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                      "values": ["canary"]}]}
    kube.add(spec)
    kube.add(replicaset("flight-delay-aaaa1", 1, "uid-deploy", "model:1"))
    cluster.rollback(ObjectRef(deployment="flight-delay"), NS)
    assert api(kube)[1][2] == {"labelSelector": "app=flight-delay,tier notin (canary)"}


def test_rollback_of_a_deployment_that_changed_meanwhile_fails_on_the_409(kube: FakeKube,
                                                                           cluster: KubeCluster) -> None:
    kube.add(deployment(revision=2))
    kube.add(replicaset("flight-delay-aaaa1", 1, "uid-deploy", "model:1"))
    kube.fail("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/flight-delay", 409)
    with pytest.raises(ActionFailed, match="changed while rolling back"):
        cluster.rollback(ObjectRef(deployment="flight-delay"), NS)


def test_rollback_of_a_missing_deployment_fails_with_the_apis_not_found(kube: FakeKube,
                                                                         cluster: KubeCluster) -> None:
    with pytest.raises(ActionFailed, match='^not found: deployments.apps "gone" not found$'):
        cluster.rollback(ObjectRef(deployment="gone"), NS)
    assert len(api(kube)) == 1


def isvc(canary: int | None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://m/v4"}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "fd", "namespace": NS}, "spec": {"predictor": predictor}}


def test_an_inferenceservice_canary_is_rolled_back_by_a_merge_patch_of_its_traffic_to_zero(
        kube: FakeKube, cluster: KubeCluster) -> None:
    stored = kube.add(isvc(20))
    account = cluster.rollback(ObjectRef(inference_service="fd"), NS)
    assert account == "inferenceservice fd: canary traffic 20% -> 0%"
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices/fd"
    assert api(kube) == [("GET", path, {}), ("PATCH", path, {})]
    patch = kube.api_requests()[1]
    assert patch.content_type == "application/merge-patch+json"
    assert patch.body == {"metadata": {"resourceVersion": stored["metadata"]["resourceVersion"]},
                          "spec": {"predictor": {"canaryTrafficPercent": 0}}}
    after = kube.get("serving.kserve.io/v1beta1", "InferenceService", NS, "fd")
    assert after is not None and after["spec"]["predictor"]["canaryTrafficPercent"] == 0


@pytest.mark.parametrize(("canary", "why"), [
    (None, "has no canary .spec.predictor.canaryTrafficPercent is not set"),
    (0, "has no canary to roll back .canaryTrafficPercent is already 0")])
def test_an_inferenceservice_without_a_canary_is_refused_with_the_reason(kube: FakeKube, cluster: KubeCluster,
                                                                        canary: int | None, why: str) -> None:
    kube.add(isvc(canary))
    with pytest.raises(ActionFailed, match=f"^inferenceservice fd {why}"):
        cluster.rollback(ObjectRef(inference_service="fd"), NS)
    assert [method for method, _, _ in api(kube)] == ["GET"]


def rollout() -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "fd", "namespace": NS},
            "spec": {"replicas": 3}, "status": {"phase": "Paused"}}


def test_an_argo_rollout_is_aborted_by_a_merge_patch_of_its_status_subresource_as_the_kubectl_plugin_does(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(rollout())
    assert cluster.rollback(ObjectRef(rollout="fd"), NS) == "rollout fd: aborted"
    assert api(kube) == [("PATCH", f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/fd/status", {})]
    assert kube.api_requests()[0].content_type == "application/merge-patch+json"
    assert kube.api_requests()[0].body == {"status": {"abort": True}}
    after = kube.get("argoproj.io/v1alpha1", "Rollout", NS, "fd")
    assert after is not None and after["status"] == {"phase": "Paused", "abort": True}


def test_a_rollout_crd_without_the_status_subresource_is_aborted_on_the_main_resource() -> None:
    bare = ResourceType("argoproj.io", "v1alpha1", "Rollout", "rollouts")  # no status subresource
    resources = tuple(bare if r.kind == "Rollout" else r for r in DEFAULT_RESOURCES)
    with FakeKube(resources=resources) as kube:
        kube.add(rollout())
        KubeCluster.for_url(kube.url).rollback(ObjectRef(rollout="fd"), NS)
        assert api(kube) == [("PATCH", f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/fd", {})]
        after = kube.get("argoproj.io/v1alpha1", "Rollout", NS, "fd")
        assert after is not None and after["status"]["abort"] is True


def test_a_status_patch_answered_404_falls_back_to_the_main_resource(kube: FakeKube,
                                                                      cluster: KubeCluster) -> None:
    kube.add(rollout())
    kube.fail("PATCH", f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/fd/status", 404)
    cluster.rollback(ObjectRef(rollout="fd"), NS)
    assert [path.rsplit("/", 1)[-1] for _, path, _ in api(kube)] == ["status", "fd"]


# --- events -------------------------------------------------------------------------------------------

def test_a_decision_is_recorded_as_an_event_on_the_target(kube: FakeKube) -> None:
    stored = kube.add(deployment())
    cluster = KubeCluster.for_url(kube.url, clock=lambda: 1796602300.5)
    target = ObjectRef(deployment="flight-delay")
    cluster.observe("flight-delay", NS, None, target)
    cluster.record_event(target, NS, decision())

    request = kube.api_requests()[-1]
    assert (request.method, request.path) == ("POST", f"/api/v1/namespaces/{NS}/events")
    assert request.body == {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"flight-delay.{int(1796602300.5 * 1e9):x}", "namespace": NS},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "flight-delay",
                           "namespace": NS, "uid": stored["metadata"]["uid"]},
        "reason": "DriftlineRemediation",
        "message": "acted: rollback for model flight-delay on DriftlinePerformanceBelowMin (revision 7 -> 6)",
        "type": "Normal",
        "source": {"component": "driftline-remediate"},
        "reportingComponent": "driftline-remediate",
        "firstTimestamp": "2026-12-07T00:11:40Z", "lastTimestamp": "2026-12-07T00:11:40Z",
        "count": 1,
    }


def test_a_failed_decision_is_a_warning_event_with_a_one_line_message(kube: FakeKube,
                                                                      cluster: KubeCluster) -> None:
    kube.add(deployment())
    cluster.record_event(ObjectRef(deployment="flight-delay"), NS,
                         decision("failed", reason="forbidden: deployments.apps is forbidden:\nUser x"))
    body = kube.api_requests()[-1].body
    assert body["type"] == "Warning"
    assert body["message"] == ("failed:forbidden: deployments.apps is forbidden: User x: rollback for model "
                               "flight-delay on DriftlinePerformanceBelowMin")


def test_a_retrain_decision_is_recorded_on_the_job_it_created(kube: FakeKube, cluster: KubeCluster) -> None:
    name = cluster.create_retrain(retrain())
    cluster.record_event(ObjectRef(deployment="flight-delay"), NS,
                         decision(action="retrain", reason="created", detail={"job": name}))
    involved = kube.api_requests()[-1].body["involvedObject"]
    stored = kube.get("batch/v1", "Job", NS, name)
    assert stored is not None
    assert involved == {"apiVersion": "batch/v1", "kind": "Job", "name": name, "namespace": NS,
                        "uid": stored["metadata"]["uid"]}


def test_a_retrain_decision_the_remediator_describes_by_kind_and_name_is_recorded_on_the_workflow(
        kube: FakeKube, cluster: KubeCluster) -> None:
    workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"generateName": "w-"},
                "spec": {"entrypoint": "fit", "templates": [{"name": "fit", "container": {"image": "t"}}]}}
    name = cluster.create_retrain(retrain(workflow))
    cluster.record_event(ObjectRef(deployment="flight-delay"), NS, decision(
        action="retrain", reason="created", detail={"kind": "Workflow", "name": name, "namespace": NS}))
    involved = kube.api_requests()[-1].body["involvedObject"]
    assert (involved["apiVersion"], involved["kind"], involved["name"]) == (
        "argoproj.io/v1alpha1", "Workflow", name)


def test_a_dry_run_retrain_is_recorded_on_the_target_not_on_a_job_that_does_not_exist(
        kube: FakeKube, cluster: KubeCluster) -> None:
    cluster.record_event(ObjectRef(deployment="flight-delay"), NS, decision(
        "dry_run", action="retrain", reason="dry-run", detail={"kind": "Job", "name": "retrain-x-1"}))
    involved = kube.api_requests()[-1].body["involvedObject"]
    assert (involved["kind"], involved["name"]) == ("Deployment", "flight-delay")


def test_from_environment_without_a_pod_or_a_kubeconfig_is_an_action_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ActionFailed, match="^not in a pod .* and no usable kubeconfig"):
        KubeCluster.from_environment()


def test_failing_to_write_an_event_is_logged_and_never_raised(kube: FakeKube, cluster: KubeCluster,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    kube.fail("POST", f"/api/v1/namespaces/{NS}/events", 403)
    with caplog.at_level(logging.WARNING, logger="driftline.remediate.kube"):
        cluster.record_event(None, NS, decision("skipped", reason="cooldown"))
    assert "could not record an event for decision d1: forbidden: events is forbidden" in caplog.text
    assert kube.api_requests()[-1].body["involvedObject"] == {"apiVersion": "v1", "kind": "Namespace",
                                                              "name": NS, "namespace": NS}


# --- errors and retries -------------------------------------------------------------------------------

def test_a_403_is_not_retried_and_fails_with_the_apis_message(kube: FakeKube, cluster: KubeCluster,
                                                              sleeps: list[float]) -> None:
    kube.fail("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", 403)
    with pytest.raises(ActionFailed) as failed:
        cluster.create_retrain(retrain())
    assert failed.value.reason == (
        'forbidden: jobs.batch is forbidden: User "system:serviceaccount:driftline:driftline-remediate" '
        'cannot create resource "jobs" in API group "batch" in the namespace "ml"')
    assert len(kube.api_requests()) == 1 and sleeps == []


def test_a_422_is_not_retried(kube: FakeKube, cluster: KubeCluster, sleeps: list[float]) -> None:
    kube.fail("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", 422, message='Job.batch "x" is invalid: spec')
    with pytest.raises(ActionFailed, match='^invalid: Job.batch "x" is invalid: spec$'):
        cluster.create_retrain(retrain())
    assert len(kube.api_requests()) == 1 and sleeps == []


def test_503_twice_then_success_takes_three_requests_and_two_backoffs(kube: FakeKube, cluster: KubeCluster,
                                                                      sleeps: list[float]) -> None:
    kube.fail("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", 503, times=2)
    name = cluster.create_retrain(retrain())
    assert [method for method, _, _ in api(kube)] == ["POST"] * 3
    assert len(sleeps) == 2 and all(0 <= delay <= 0.2 * 2 ** n for n, delay in enumerate(sleeps))
    assert kube.get("batch/v1", "Job", NS, name) is not None


def test_a_429_waits_at_least_its_retry_after(kube: FakeKube, cluster: KubeCluster,
                                              sleeps: list[float]) -> None:
    kube.fail("GET", f"/apis/apps/v1/namespaces/{NS}/deployments", 429, retry_after=2)
    kube.add(deployment())
    cluster.observe("flight-delay", NS, None, ObjectRef(deployment="flight-delay"))
    assert sleeps and sleeps[0] >= 2


def test_a_dropped_connection_is_retried(kube: FakeKube, cluster: KubeCluster, sleeps: list[float]) -> None:
    kube.fail("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", 0)
    cluster.create_retrain(retrain())
    assert [method for method, _, _ in api(kube)] == ["POST", "POST"] and len(sleeps) == 1


def test_a_create_written_but_whose_answer_was_lost_is_taken_as_created_on_the_retry(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.fail("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", 0, processed=True)
    name = cluster.create_retrain(retrain())
    assert [method for method, _, _ in api(kube)] == ["POST", "POST"]
    assert [job["metadata"]["name"] for job in kube.objects("batch/v1", "Job", NS)] == [name]


def test_a_claim_written_but_whose_answer_was_lost_is_not_mistaken_for_another_receivers(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(deployment())
    target = ObjectRef(deployment="flight-delay")
    cluster.observe("flight-delay", NS, None, target)
    kube.fail("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/flight-delay", 0, processed=True)
    cluster.claim(target, NS, mine())  # the retried PATCH gets 409; the re-read shows our own claim
    assert [method for method, _, _ in api(kube)] == ["GET", "PATCH", "PATCH", "GET"]


def test_a_rollback_written_but_whose_answer_was_lost_is_not_reported_as_failed(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(deployment(revision=2))
    kube.add(replicaset("flight-delay-aaaa1", 1, "uid-deploy", "model:1"))
    kube.fail("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/flight-delay", 0, processed=True)
    account = cluster.rollback(ObjectRef(deployment="flight-delay"), NS)
    assert account == "deployment flight-delay: revision 2 -> 1 (flight-delay-aaaa1)"


def test_a_create_whose_answer_was_lost_is_taken_as_created_on_the_409_of_its_retry(
        kube: FakeKube, cluster: KubeCluster) -> None:
    first = KubeCluster.for_url(kube.url)
    name = first.create_retrain(retrain())  # as if our first try had reached the server
    kube.fail("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", 504)
    assert cluster.create_retrain(retrain()) == name


def test_the_api_server_down_fails_after_the_bounded_tries(kube: FakeKube, cluster: KubeCluster,
                                                           sleeps: list[float]) -> None:
    kube.down()
    with pytest.raises(ActionFailed, match="^kubernetes API unreachable after 5 tries: connection refused$"):
        cluster.create_retrain(retrain())
    assert len(sleeps) == 4 and all(delay <= 5.0 for delay in sleeps)


def test_the_total_retry_time_is_bounded_by_max_elapsed() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    cluster = KubeCluster.for_url(f"http://127.0.0.1:{free_port()}", sleep=sleep, clock=lambda: now[0],
                                  max_attempts=50, backoff_base=1.0, backoff_max=4.0, max_elapsed=10.0)
    with pytest.raises(ActionFailed, match="unreachable after"):
        cluster.rollback(ObjectRef(deployment="x"), NS)
    assert now[0] <= 10.0


def test_the_server_coming_back_is_used_again(kube: FakeKube, cluster: KubeCluster) -> None:
    cluster.create_retrain(retrain())
    kube.down()
    with pytest.raises(ActionFailed):
        cluster.observe("flight-delay", NS, job_template(), None)
    kube.up()
    assert len(cluster.observe("flight-delay", NS, job_template(), None)) == 1


def test_the_bearer_token_is_sent_and_a_wrong_one_is_refused() -> None:
    with FakeKube(token="s3cret") as kube:
        KubeCluster.for_url(kube.url, token="s3cret").create_retrain(retrain())
        assert kube.requests[-1].authorization == "Bearer s3cret"
        with pytest.raises(ActionFailed, match="^unauthorized: Unauthorized$"):
            KubeCluster.for_url(kube.url, token="wrong").create_retrain(retrain())


def test_from_environment_falls_back_to_the_kubeconfig_outside_a_pod(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeKube(token="from-kubeconfig") as kube:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                  "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
                  "users": [{"name": "me", "user": {"token": "from-kubeconfig"}}],
                  "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}]}
        (tmp_path / "config").write_text(yaml.safe_dump(config))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
        cluster = KubeCluster.from_environment(sleep=lambda _: None)
        assert cluster.observe("flight-delay", NS, job_template(), None) == ()
        assert kube.requests[-1].authorization == "Bearer from-kubeconfig"


def test_what_is_sent_and_what_a_rollback_leaves_validate_against_the_kubernetes_schemas(
        kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add(deployment(revision=2))
    kube.add(replicaset("flight-delay-aaaa1", 1, "uid-deploy", "model:1"))
    target = ObjectRef(deployment="flight-delay")
    name = cluster.create_retrain(retrain())
    cluster.rollback(target, NS)
    cluster.record_event(target, NS, decision())
    cluster.record_event(target, NS, decision(action="retrain", detail={"job": name}))
    posted = [request.body for request in kube.api_requests() if request.method == "POST"]
    assert [body["kind"] for body in posted] == ["Job", "Event", "Event"]
    rolled = kube.get("apps/v1", "Deployment", NS, "flight-delay")
    for doc in [*posted, rolled]:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_receivers_on_many_threads_racing_on_one_alert_create_one_job() -> None:
    with FakeKube() as kube:
        cluster = KubeCluster.for_url(kube.url)
        outcomes: list[str] = []

        def race() -> None:
            try:
                outcomes.append(cluster.create_retrain(retrain()))
            except Claimed:
                outcomes.append("claimed")

        threads = [threading.Thread(target=race) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes)[:7] == ["claimed"] * 7 and len(outcomes) == 8
        assert len(kube.objects("batch/v1", "Job", NS)) == 1


# --- the manifests, pure ------------------------------------------------------------------------------

def test_the_name_is_deterministic_dns_safe_and_at_most_63_characters() -> None:
    long_model = "A_Very_Long_Model_Name_" * 4
    name = retrain_name({"metadata": {"generateName": "retrain-"}}, long_model[:63], KEY)
    assert len(name) <= 63 and name == name.lower() and "_" not in name
    assert name == retrain_name({"metadata": {"generateName": "retrain-"}}, long_model[:63], KEY)
    assert retrain_name({"metadata": {"name": "nightly"}}, "m", KEY).startswith("nightly-m-")
    assert retrain_name({}, "m", KEY).startswith("retrain-m-")


def test_env_goes_to_every_replica_of_a_pytorchjob_and_to_a_cronjobs_job_template() -> None:
    pod = {"spec": {"containers": [{"name": "pytorch", "image": "t"}]}}
    pytorch = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "p"},
               "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": copy.deepcopy(pod)},
                                                "Worker": {"replicas": 2, "template": copy.deepcopy(pod)}}}}
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": copy.deepcopy(pod)}}}}
    for template in (pytorch, cron):
        built = retrain_manifest(retrain(template))
        found = list(containers(built))
        assert found and all([item["name"] for item in c["env"]] == ENV_NAMES for c in found)
        assert template != built  # the template itself is left untouched
        assert "env" not in str(template)


def test_an_unknown_shape_is_left_alone_apart_from_metadata() -> None:
    template = {"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"generateName": "run-"},
                "spec": {"pipelineRef": {"name": "train"}, "params": [{"name": "model", "value": "m"}]}}
    built = retrain_manifest(retrain(template))
    assert built["spec"] == template["spec"]


@pytest.mark.parametrize(("obj", "done"), [
    ({"apiVersion": "batch/v1", "kind": "Job", "status": {"active": 1}}, False),
    ({"apiVersion": "batch/v1", "kind": "Job", "status": {"succeeded": 1}}, True),
    ({"apiVersion": "batch/v1", "kind": "Job",
      "status": {"conditions": [{"type": "Complete", "status": "True"}]}},
     True),
    ({"apiVersion": "batch/v1", "kind": "Job",
      "status": {"conditions": [{"type": "Failed", "status": "False"}]}},
     False),
    ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
      "status": {"conditions": [{"type": "Running", "status": "True"}]}}, False),
    ({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
      "status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}, True),
    ({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
      "status": {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}}, False),
    ({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
      "status": {"conditions": [{"type": "Succeeded", "status": "False"}]}}, True),
    ({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "status": {"phase": "Failed"}}, True),
    ({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow"}, False),
])
def test_finished_knows_jobs_workflows_pipelineruns_and_training_jobs(obj: dict[str, Any],
                                                                      done: bool) -> None:
    assert finished(obj) is done


@pytest.mark.parametrize("text", ["{not json", "[]",
                                  '{"model": "m", "action": "dance", "alert_key": "", "at": 1}',
                                  '{"model": "m", "action": "retrain", "alert_key": "", "at": "yesterday"}',
                                  '{"model": "", "action": "retrain", "alert_key": "", "at": 1}'])
def test_a_malformed_last_action_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_last_action(text)


def test_label_selectors_render_every_operator() -> None:
    selector = {"matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "x", "operator": "In", "values": ["p", "q"]},
                                     {"key": "y", "operator": "Exists"},
                                     {"key": "z", "operator": "DoesNotExist"}]}
    assert label_selector(selector) == "a=1,b=2,x in (p,q),y,!z"
