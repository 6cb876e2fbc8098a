"""``driftline remediate``'s HTTP API, in process, without a cluster (every action a dry run).

The paths that reach Kubernetes are tested against the fake API server in
test_remediate_e2e.py and test_kube_actions.py."""

from __future__ import annotations

import json
import logging
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.exceptions import StarletteDeprecationWarning

from alerts.audit import Audit
from alerts.metrics import ReceiverMetrics
from alerts.receiver import TokenFile, create_app
from alerts.remediator import Remediator, load_templates
from monitor.config import load_config

# starlette asks for the `httpx2` package and warns, once at import, when it finds only httpx.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated",
                            category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token"


def payload(*alerts: dict[str, Any], version: str = "4") -> dict[str, Any]:
    return {"version": version, "groupKey": "{}:{model=\"flight-delay\"}", "status": "firing",
            "receiver": "driftline-remediate", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
            "alerts": list(alerts)}


def alert(name: str = "DriftlineDatasetDrift", model: str = "flight-delay", *, status: str = "firing",
          starts: str = "2026-12-07T00:10:00Z", fingerprint: str = "a1b2c3d4e5f60718",
          **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "model": model, "severity": "warning", **labels},
            "annotations": {"summary": "s"}, "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": fingerprint}


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0

    def __call__(self) -> float:
        return self.now


def make_client(tmp_path: Path, actions: str | None = None) -> tuple[TestClient, Clock, Path]:
    config_path = ROOT / "sample_data" / "driftline.yaml"
    if actions is not None:
        text = (ROOT / "sample_data" / "driftline.yaml").read_text()
        start = text.index("    actions:")
        text = text[:start] + textwrap.indent(textwrap.dedent(actions), "    ")
        text = text.replace("flights/reference.parquet", str(ROOT / "sample_data/flights/reference.parquet"))
        text = text.replace("../k8s/jobs/retrain.yaml", str(ROOT / "k8s/jobs/retrain.yaml"))
        config_path = tmp_path / "driftline.yaml"
        config_path.write_text(text)
    config = load_config(config_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    clock = Clock()
    remediator = Remediator(config, None, templates=load_templates(config), audit=Audit(100),
                            metrics=ReceiverMetrics(tuple(config.model_names())), clock=clock)
    return TestClient(create_app(remediator, TokenFile(token_file))), clock, token_file


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def metric(client: TestClient, name: str, **labels: str) -> float | None:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_a_webhook_without_the_token_or_with_a_wrong_one_gets_401_and_decides_nothing(tmp_path: Path) -> None:
    client, _, _ = make_client(tmp_path)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        answer = client.post("/alerts", json=payload(alert()), headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/actions").json() == {"actions": []}
    assert metric(client, "driftline_remediate_webhooks_total", result="unauthorized") == 4.0
    assert client.post("/actions/abc/approve").status_code == 401


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"version": "4"}', json.dumps(payload(alert(), version="3")).encode(),
    # the first alert is fine, the second is not: nothing of the payload is decided
    json.dumps(payload(alert(), {**alert(fingerprint="ff"), "startsAt": "yesterday"})).encode(),
    json.dumps(payload(alert(), {**alert(fingerprint="ee"), "status": "pending"})).encode(),
    json.dumps(payload({**alert(), "labels": {"model": "flight-delay"}})).encode(),
], ids=["not-json", "a-list", "no-alerts", "version-3", "bad-starts-at", "bad-status", "no-alertname"])
def test_a_malformed_body_gets_a_one_line_400_and_decides_nothing(tmp_path: Path, body: bytes) -> None:
    client, _, _ = make_client(tmp_path)
    answer = client.post("/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail and "\n" not in detail and "Traceback" not in detail
    assert client.get("/actions").json() == {"actions": []}
    assert metric(client, "driftline_remediate_webhooks_total", result="malformed") == 1.0


def test_an_oversized_body_gets_400_before_it_is_read_whole(tmp_path: Path) -> None:
    client, _, _ = make_client(tmp_path)
    big = json.dumps(payload(*[alert(fingerprint=f"{i:016x}") for i in range(6000)])).encode()
    assert len(big) > 1_048_576
    answer = client.post("/alerts", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400 and "larger than 1048576 bytes" in answer.json()["detail"]
    assert client.get("/actions").json() == {"actions": []}


def test_a_dataset_drift_is_a_dry_run_seen_in_actions_the_json_log_and_metrics(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client, _, _ = make_client(tmp_path)
    body = payload(alert(),
                   alert("DriftlineFeatureDrift", feature="dep_delay", fingerprint="0f0f0f0f0f0f0f0f"),
                   alert("DriftlineFeatureDrift", feature="air_time", fingerprint="1e1e1e1e1e1e1e1e"))
    with caplog.at_level(logging.INFO, logger="driftline.remediate.audit"):
        answer = client.post("/alerts", json=body, headers=AUTH)
    assert answer.status_code == 200
    decisions = answer.json()["decisions"]
    assert [(d["alert"], d["decision"]) for d in decisions] == [
        ("DriftlineDatasetDrift", "dry_run"), ("DriftlineFeatureDrift", "ignored:notify-only"),
        ("DriftlineFeatureDrift", "ignored:notify-only")]
    retrain = decisions[0]
    assert retrain["action"] == "retrain" and retrain["model"] == "flight-delay"
    assert retrain["reason"].startswith("dry-run: would create Job retrain-flight-delay-")
    assert "in ml for flight-delay because DriftlineDatasetDrift fired since 2026-12-07T00:10:00Z" \
        in retrain["reason"]
    assert retrain["detail"]["drifted_features"] == "air_time,dep_delay"
    assert client.get("/actions").json()["actions"][-1] == retrain
    assert client.get(f"/actions/{retrain['id']}").json() == retrain
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "driftline.remediate.audit"]
    assert [(line["event"], line["outcome"], line["alert"]) for line in lines] == [
        ("decision", "dry_run", "DriftlineDatasetDrift"), ("decision", "ignored", "DriftlineFeatureDrift"),
        ("decision", "ignored", "DriftlineFeatureDrift")]
    assert metric(client, "driftline_actions_total", model="flight-delay", action="retrain",
                  outcome="dry_run") == 1.0
    assert metric(client, "driftline_action_last_timestamp_seconds") is None  # nothing acted
    assert retrain["at"] == "2026-11-30T00:53:20.000Z"  # the injected clock's 1_796_000_000 s


def test_the_same_alert_resent_is_a_duplicate_and_a_new_episode_waits_out_the_cooldown(
        tmp_path: Path) -> None:
    client, clock, _ = make_client(tmp_path)
    first = client.post("/alerts", json=payload(alert()), headers=AUTH).json()["decisions"]
    clock.now += 600
    again = client.post("/alerts", json=payload(alert()), headers=AUTH).json()["decisions"]
    new_episode = client.post("/alerts", json=payload(alert(starts="2026-12-07T00:20:00Z")),
                              headers=AUTH).json()["decisions"]
    clock.now += 3600
    after_cooldown = client.post("/alerts", json=payload(alert(starts="2026-12-07T00:20:00Z")),
                                 headers=AUTH).json()["decisions"]
    assert [d["decision"] for d in first + again + new_episode + after_cooldown] == [
        "dry_run", "skipped:duplicate", "skipped:cooldown", "dry_run"]
    assert metric(client, "driftline_actions_total", model="flight-delay", action="retrain",
                  outcome="dry_run") == 2.0
    assert metric(client, "driftline_actions_total", model="flight-delay", action="retrain",
                  outcome="skipped") == 2.0


def test_resolved_and_unknown_model_alerts_are_ignored_with_their_reason(tmp_path: Path) -> None:
    client, _, _ = make_client(tmp_path)
    decisions = client.post("/alerts", json=payload(
        alert(status="resolved"), alert(model="nope", fingerprint="9999999999999999"),
        alert("DriftlineEvaluationStale", fingerprint="8888888888888888")), headers=AUTH).json()["decisions"]
    assert [d["decision"] for d in decisions] == [
        "ignored:resolved", "ignored:unknown-model", "ignored:notify-only"]
    assert metric(client, "driftline_actions_total", model="", action="none", outcome="ignored") == 1.0


def test_a_manual_approval_waits_as_pending_until_approved_once(tmp_path: Path) -> None:
    client, _, _ = make_client(tmp_path, actions="""\
        actions:
          on_drift: {retrain: {job_template: ../k8s/jobs/retrain.yaml, namespace: ml}}
          on_performance_drop: {rollback: {deployment: flight-delay, namespace: ml}}
          cooldown: 1h
          dry_run: false
          approval: manual
        """)
    [pending] = client.post("/alerts", json=payload(alert()), headers=AUTH).json()["decisions"]
    assert pending["decision"] == "pending"
    assert client.get("/actions", params={"outcome": "pending"}).json()["actions"] == [pending]
    approved = client.post(f"/actions/{pending['id']}/approve", headers=AUTH)
    assert approved.status_code == 200
    # no cluster: what the approval would do is recorded, nothing is called
    assert approved.json()["decision"] == "dry_run"
    assert approved.json()["reason"].startswith(
        "dry-run (no cluster): would create Job retrain-flight-delay-")
    again = client.post(f"/actions/{pending['id']}/approve", headers=AUTH)
    assert again.status_code == 409 and "not pending" in again.json()["detail"]
    assert client.post("/actions/0000000000000000/approve", headers=AUTH).status_code == 404


def test_a_rotated_token_file_is_read_again_without_a_restart(tmp_path: Path) -> None:
    client, _, token_file = make_client(tmp_path)
    token_file.write_text("rotated-token-with-another-length\n")
    assert client.post("/alerts", json=payload(alert()), headers=AUTH).status_code == 401
    rotated = {"Authorization": "Bearer rotated-token-with-another-length"}
    assert client.post("/alerts", json=payload(alert()), headers=rotated).status_code == 200


@pytest.mark.parametrize(("env", "args", "message"), [
    ({}, [], "no token: set remediate.token_file in the config or DRIFTLINE_REMEDIATE_TOKEN_FILE"),
    ({"DRIFTLINE_REMEDIATE_TOKEN_FILE": "/nonexistent/token"}, ["--no-cluster"],
     "/nonexistent/token: cannot read the token file (No such file or directory)"),
    ({"KUBECONFIG": "/nonexistent/kubeconfig"}, [], "no Kubernetes cluster: "),
], ids=["no-token", "unreadable-token", "no-cluster"])
def test_remediate_without_a_token_or_a_cluster_says_so_in_one_line_and_exits_2(
        tmp_path: Path, env: dict[str, str], args: list[str], message: str) -> None:
    import os
    import subprocess
    import sys

    token = tmp_path / "token"
    token.write_text("t\n")
    child = {k: v for k, v in os.environ.items() if k not in ("DRIFTLINE_REMEDIATE_TOKEN_FILE", "KUBECONFIG")}
    if "no Kubernetes cluster" in message:
        child["DRIFTLINE_REMEDIATE_TOKEN_FILE"] = str(token)
        child.pop("KUBERNETES_SERVICE_HOST", None)
    child.update(env)
    result = subprocess.run([sys.executable, "-m", "monitor.cli.main", "remediate", "-C",
                             str(ROOT / "sample_data/driftline.yaml"), "--port", "0", *args],
                            capture_output=True, text=True, timeout=60, env=child)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("driftline: error: ") and message in line
