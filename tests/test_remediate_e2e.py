"""The loop closes on its own: drift in the stream ends in exactly one retraining Job and a
performance drop in exactly one rollback patch, on real parts.

Tansu → ``driftline serve`` → real Prometheus (generated rules) → real Alertmanager →
``driftline remediate`` (a process) → the fake Kubernetes API (tests/k8s_fake.py; no
kube-apiserver can run here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_fake import FakeKube
from tests.remediate_loop import (
    MODEL,
    NAMESPACE,
    TOKEN,
    Loop,
    get_json,
    july_rows,
    no_drift_rows,
    post,
    seed_cluster,
    wait_until,
)
from tests.servers import Broker
from tests.test_remediate_rbac import rules

# bounded: every wait below has its own timeout (about 4 minutes in all at most)
pytestmark = pytest.mark.slow


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as fake:
        seed_cluster(fake)
        yield fake


@pytest.fixture
def loop(tmp_path: Path, broker: Broker, kube: FakeKube) -> Iterator[Loop]:
    started = Loop(tmp_path, broker, kube)
    try:
        yield started.start()
    finally:
        started.stop()


def decisions(loop: Loop, action: str) -> list[str]:
    return [a["decision"] for a in loop.actions() if a["action"] == action]


def test_drift_and_a_performance_drop_end_in_one_job_and_one_rollback_and_resends_or_restarts_add_none(
        loop: Loop, kube: FakeKube) -> None:
    loop.send(no_drift_rows(1000))
    wait_until("two clean windows evaluated", lambda: _windows(loop) >= 2, 60, loop)
    assert loop.jobs() == [] and loop.rollback_patches() == []

    loop.send(july_rows(1000))
    wait_until("a retraining Job on the API", lambda: len(loop.jobs()) >= 1, 90, loop)
    wait_until("a rollback patch on the API", lambda: len(loop.rollback_patches()) >= 1, 90, loop)

    [job] = loop.jobs()
    meta = job["metadata"]
    assert meta["labels"]["driftline.io/model"] == MODEL
    assert meta["labels"]["driftline.io/reason"] == "DriftlineDatasetDrift"
    assert meta["name"].startswith("retrain-flight-delay-")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DRIFTLINE_MODEL"] == MODEL and env["DRIFTLINE_MODEL_VERSION"] == "v2"
    drifted = set(env["DRIFTLINE_DRIFTED_FEATURES"].split(","))
    assert "dep_delay" in drifted  # July's delays
    # the window the Job is told about is one serve evaluated, with those features drifted
    window = env["DRIFTLINE_WINDOW"].split()[1]
    [report] = [r for r in _history(loop) if f"{r['window']['start']}-{r['window']['end']}" == window]
    assert drifted == {name for name, f in report["features"].items() if f["drift"]}
    deployment = kube.get("apps/v1", "Deployment", NAMESPACE, MODEL)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "model:v1"
    assert "driftline.io/last-action" in deployment["metadata"]["annotations"]

    # Alertmanager re-sends every 2 s (repeat_interval): deduplicated, nothing more is created
    wait_until("re-sent alerts deduplicated",
               lambda: decisions(loop, "retrain").count("skipped:duplicate") >= 2, 30, loop)
    assert decisions(loop, "retrain").count("acted") == 1
    assert decisions(loop, "rollback").count("acted") == 1

    # a restarted receiver has no memory: the cluster's labels and annotation stop it
    assert loop.remediate is not None
    loop.remediate.terminate()
    loop.start_remediate()
    wait_until("the restarted receiver's first decisions",
               lambda: any(a["action"] == "retrain" for a in loop.actions()), 30, loop)
    wait_until("a re-sent retrain and rollback seen by the restarted receiver",
               lambda: "skipped:duplicate" in decisions(loop, "retrain")
               and "skipped:duplicate" in decisions(loop, "rollback"), 30, loop)
    assert "acted" not in decisions(loop, "retrain") + decisions(loop, "rollback")
    assert len(loop.jobs()) == 1 and len(loop.rollback_patches()) == 1

    # every decision is visible: an Event on the Deployment for each acted one
    events = kube.objects("v1", "Event", NAMESPACE)
    reasons = [e["message"] for e in events if e["reason"] == "DriftlineRemediation"]
    assert sum("acted" in m for m in reasons) >= 2, reasons

    # every call the loop made is one the receiver's Role allows (k8s/remediate/role.yaml)
    granted = rules("role.yaml")
    made = {(r.attributes() or ("", "", ""))[:3] for r in kube.api_requests()}
    assert made and made <= granted, made - granted

    # no token, no decision
    body = json.dumps({"version": "4", "alerts": []}).encode()
    assert post(f"{loop.remediate_url}/alerts", body)[0] == 401
    assert post(f"{loop.remediate_url}/alerts", body, {"Authorization": "Bearer nope"})[0] == 401
    assert post(f"{loop.remediate_url}/alerts", body, {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def _history(loop: Loop) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = get_json(f"{loop.serve_url}/models/{MODEL}/history")
    return result


def _windows(loop: Loop) -> int:
    try:
        return len(_history(loop))
    except OSError:
        return 0
