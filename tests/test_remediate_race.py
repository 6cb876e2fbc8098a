"""Two receivers racing on one alert, and a receiver restarted between two deliveries, act once:
the cluster (the Job's deterministic name and labels, the target's last-action annotation
written under a resourceVersion precondition) is the source of truth, not their memories."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.audit import Audit
from alerts.cluster import Cluster
from alerts.kube import KubeCluster
from alerts.metrics import ReceiverMetrics
from alerts.remediator import Remediator, load_templates
from alerts.types import Alert, Decision, PastAction
from monitor.config import Config, ObjectRef, load_config
from tests.k8s_fake import FakeKube
from tests.remediate_loop import MODEL, NAMESPACE, ROOT, seed_cluster


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        seed_cluster(fake)
        yield fake


def config(tmp_path: Path) -> Config:
    path = tmp_path / "driftline.yaml"
    path.write_text(yaml.safe_dump({
        "remediate": {"namespace": NAMESPACE},
        "models": [{
            "name": MODEL, "reference": str(ROOT / "sample_data/flights/reference.parquet"),
            "features": {"dep_delay": {"type": "numerical"}},
            "prediction": {"name": "delay_score", "type": "numerical"},
            "target": {"name": "arrived_late", "task": "binary_classification"},
            "performance": {"accuracy": {"min": 0.72}},
            "actions": {"on_drift": {"retrain": {"job_template": str(ROOT / "k8s/jobs/retrain.yaml")}},
                        "on_performance_drop": {"rollback": {"deployment": MODEL}},
                        "cooldown": "1h", "dry_run": False}}]}))
    return load_config(path)


def receiver(settings: Config, cluster: Cluster, now: float = 1_796_602_300.0) -> Remediator:
    return Remediator(settings, cluster, templates=load_templates(settings), audit=Audit(100),
                      metrics=ReceiverMetrics((MODEL,)), clock=lambda: now)


def alert(name: str = "DriftlineDatasetDrift", starts: str = "2026-12-07T00:10:00Z") -> Alert:
    return Alert(status="firing", labels={"alertname": name, "model": MODEL}, annotations={},
                 starts_at=starts, ends_at=None, fingerprint="a1b2c3d4e5f60718")


class PausedBeforeClaim:
    """A cluster that stops between observing and claiming until released: the window in
    which a second replica acts."""

    def __init__(self, inner: KubeCluster) -> None:
        self.inner = inner
        self.observed = threading.Event()
        self.release = threading.Event()

    def observe(self, model: str, namespace: str, template: Mapping[str, Any] | None,
                target: ObjectRef | None) -> tuple[PastAction, ...]:
        seen = self.inner.observe(model, namespace, template, target)
        self.observed.set()
        assert self.release.wait(10)
        return seen

    def claim(self, target: ObjectRef, namespace: str, action: PastAction) -> None:
        self.inner.claim(target, namespace, action)

    def create_retrain(self, retrain: Any) -> str:
        return self.inner.create_retrain(retrain)

    def rollback(self, target: ObjectRef, namespace: str) -> str:
        return self.inner.rollback(target, namespace)

    def record_event(self, target: ObjectRef | None, namespace: str, decision: Decision) -> None:
        self.inner.record_event(target, namespace, decision)


@pytest.mark.parametrize("name", ["DriftlineDatasetDrift", "DriftlinePerformanceBelowMin"])
def test_a_second_replica_racing_on_the_same_alert_is_claimed_elsewhere_and_acts_not(
        tmp_path: Path, kube: FakeKube, name: str) -> None:
    settings = config(tmp_path)
    slow = PausedBeforeClaim(KubeCluster.for_url(kube.url, sleep=lambda s: None))
    # two processes: their clocks differ (by 3 ms here), so their claims do too
    first = receiver(settings, slow, now=1_796_602_300.000)
    second = receiver(settings, KubeCluster.for_url(kube.url), now=1_796_602_300.003)
    results: list[list[Decision]] = []
    racer = threading.Thread(target=lambda: results.append(first.handle([alert(name)])))
    racer.start()
    assert slow.observed.wait(10)  # the first replica has read the cluster, not claimed yet
    [won] = second.handle([alert(name)])
    slow.release.set()
    racer.join(10)
    [lost] = results[0]
    assert won.label == "acted"
    assert lost.label == "skipped:claimed-elsewhere"
    jobs = kube.objects("batch/v1", "Job", NAMESPACE)
    patches = [r for r in kube.api_requests() if r.method == "PATCH" and "/spec/template" in str(r.body)]
    assert (len(jobs), len(patches)) == ((1, 0) if name == "DriftlineDatasetDrift" else (0, 1))


def test_a_restarted_receiver_sees_both_earlier_actions_in_the_cluster_and_repeats_neither(
        tmp_path: Path, kube: FakeKube) -> None:
    settings = config(tmp_path)
    before = receiver(settings, KubeCluster.for_url(kube.url))
    drift, drop = alert(), alert("DriftlinePerformanceBelowMin")
    assert [d.label for d in before.handle([drop, drift])] == ["acted", "acted"]
    after = receiver(settings, KubeCluster.for_url(kube.url))  # a new process: no memory
    assert [d.label for d in after.handle([drift, drop])] == ["skipped:duplicate", "skipped:duplicate"]
    new_episode = [alert(starts="2026-12-07T00:30:00Z"), alert("DriftlinePerformanceBelowMin",
                                                             starts="2026-12-07T00:30:00Z")]
    assert [d.label for d in after.handle(new_episode)] == ["skipped:retrain-running", "skipped:cooldown"]
    assert len(kube.objects("batch/v1", "Job", NAMESPACE)) == 1


def test_with_the_api_server_down_an_action_is_retried_then_failed_and_the_receiver_goes_on(
        tmp_path: Path, kube: FakeKube) -> None:
    settings = config(tmp_path)
    naps: list[float] = []
    down = receiver(settings, KubeCluster.for_url(kube.url, sleep=naps.append, max_attempts=3))
    kube.down()
    [decision] = down.handle([alert()])
    assert decision.label.startswith("failed:cannot read the cluster's state: kubernetes API unreachable "
                                     "after 3 tries")
    assert len(naps) == 2  # backed off between the three tries, and wrote no Event then
    kube.up()
    [again] = down.handle([alert()])  # a failed decision holds nothing back: the re-send acts
    assert again.label == "acted" and len(kube.objects("batch/v1", "Job", NAMESPACE)) == 1
