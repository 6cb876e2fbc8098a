"""The whole alerting loop on real parts, for the end-to-end test and the latency benchmark.

Tansu ← events (the sample flights: no-drift rows, then July) ← this harness
``driftline serve`` → real Prometheus (rules from ``driftline rules``, 1 s scrape and
evaluation) → real Alertmanager → ``driftline remediate`` (a process, KUBECONFIG pointing at
:class:`~tests.k8s_fake.FakeKube`) → a Job and a rollback patch on the fake.

The fake holds what a cluster would: the model's Deployment ``flight-delay`` at revision 2
with the ReplicaSets of revisions 1 and 2, in namespace ``ml``.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from kafka import KafkaProducer

from monitor.wire.encode import encode_labels, encode_predictions
from tests.k8s_fake import FakeKube
from tests.servers import Alertmanager, Broker, Process, Prometheus, free_port

ROOT = Path(__file__).resolve().parent.parent
FLIGHTS = ROOT / "sample_data" / "flights"
MODEL = "flight-delay"
NAMESPACE = "ml"
TOKEN = "e2e-" + uuid.uuid4().hex
FEATURES = ["dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time", "arr_delay",
            "air_time", "distance", "hour", "minute", "carrier", "origin", "dest"]
CATEGORICAL = {"carrier", "origin", "dest"}


def seed_cluster(kube: FakeKube) -> None:
    """The model's Deployment at revision 2, and its ReplicaSets of revisions 1 and 2."""
    labels = {"app": MODEL}

    def template(image: str) -> dict[str, Any]:
        return {"metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "model", "image": image}]}}

    deployment = kube.add({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": MODEL, "namespace": NAMESPACE,
                     "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template("model:v2")}})
    owner = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": MODEL,
              "uid": deployment["metadata"]["uid"], "controller": True}]
    for revision, image in ((1, "model:v1"), (2, "model:v2")):
        rs_template = template(image)
        rs_template["metadata"]["labels"]["pod-template-hash"] = f"hash{revision}"
        kube.add({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": f"{MODEL}-hash{revision}", "namespace": NAMESPACE,
                               "labels": {**labels, "pod-template-hash": f"hash{revision}"},
                               "annotations": {"deployment.kubernetes.io/revision": str(revision)},
                               "ownerReferences": owner},
                  "spec": {"replicas": 2 if revision == 2 else 0,
                           "selector": {"matchLabels": {**labels, "pod-template-hash": f"hash{revision}"}},
                           "template": rs_template}})


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "driftline-remediate", "user": {"token": "kube-" + TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "driftline-remediate",
                                                  "namespace": NAMESPACE}}]}))
    return path


class Loop:
    """Every part of the loop, started on free loopback ports under ``tmp``."""

    def __init__(self, tmp: Path, broker: Broker, kube: FakeKube, *, window: int = 500,
                 consecutive: int = 2, for_: str = "1s", group_wait: str = "1s",
                 repeat_interval: str = "2s", interval: str = "1s", dry_run: bool = False,
                 extra_models: list[dict[str, Any]] | None = None) -> None:
        self.tmp, self.broker, self.kube = tmp, broker, kube
        self.window, self.consecutive, self.for_ = window, consecutive, for_
        self.group_wait, self.repeat_interval, self.interval = group_wait, repeat_interval, interval
        self.dry_run = dry_run
        self.extra_models = extra_models or []
        tag = uuid.uuid4().hex[:8]
        self.topics = {"predictions": f"p-{tag}", "labels": f"l-{tag}", "dlq": f"d-{tag}",
                       "state": f"s-{tag}"}
        broker.create_topics(list(self.topics.values()), partitions=1)
        self.serve_port, self.remediate_port = free_port(), free_port()
        self.token_file = tmp / "token"
        self.token_file.write_text(TOKEN + "\n")
        self.kubeconfig = kubeconfig(tmp / "kubeconfig", kube.url)
        self.config = self._write_config(tag)
        self.procs: list[Process] = []
        self.serve: Process | None = None
        self.remediate: Process | None = None
        self.prometheus: Prometheus | None = None
        self.alertmanager: Alertmanager | None = None
        self.sent = 0

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def remediate_url(self) -> str:
        return f"http://127.0.0.1:{self.remediate_port}"

    def _write_config(self, tag: str) -> Path:
        config = {
            "kafka": {"bootstrap_servers": self.broker.bootstrap, "topics": self.topics,
                      "group_id": f"g-{tag}", "partitions": 1},
            "service": {"checkpoint_interval": "2s"},
            "links": {"monitor_url": self.serve_url, "grafana_url": "http://grafana.invalid"},
            "remediate": {"token_file": str(self.token_file), "namespace": NAMESPACE},
            "defaults": {"window": {"size": self.window}, "alpha": 0.05, "correction": "bh"},
            "models": [{
                "name": MODEL, "version": "v2", "reference": str(FLIGHTS / "reference.parquet"),
                "features": {**{f: {"type": "categorical" if f in CATEGORICAL else "numerical"}
                                for f in FEATURES},
                             "dest": {"type": "categorical", "test": "psi", "threshold": 0.2}},
                "prediction": {"name": "delay_score", "type": "numerical"},
                "target": {"name": "arrived_late", "task": "binary_classification"},
                "performance": {"accuracy": {"min": 0.72}},
                "alerts": {"for": self.for_, "consecutive_windows": self.consecutive, "stale_after": "1h"},
                "actions": {
                    "on_drift": {"retrain": {"job_template": str(ROOT / "k8s/jobs/retrain.yaml"),
                                             "namespace": NAMESPACE}},
                    "on_performance_drop": {"rollback": {"deployment": MODEL, "namespace": NAMESPACE}},
                    "cooldown": "1h", "dry_run": self.dry_run}}, *self.extra_models]}
        path = self.tmp / "driftline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ---- starting

    def start(self, extra_targets: tuple[str, ...] = ()) -> Loop:
        logs = self.tmp / "logs"
        self.serve = self._process("serve", ["serve", "--config", str(self.config), "--host", "127.0.0.1",
                                             "--port", str(self.serve_port)], logs)
        self.serve.wait_http(f"{self.serve_url}/readyz", timeout=60)
        rules = self.tmp / "rules.yml"
        done = Process([sys.executable, "-m", "monitor.cli.main", "rules", "--config", str(self.config),
                        "--out", str(rules)], logs, name="rules")
        if done.wait(60) != 0:
            raise done.error("driftline rules failed")
        self.start_remediate()
        self.alertmanager = Alertmanager(self.tmp / "alertmanager", self._alertmanager_config()).start()
        targets = [f"127.0.0.1:{self.serve_port}", f"127.0.0.1:{self.remediate_port}", *extra_targets]
        self.prometheus = Prometheus(self.tmp / "prometheus", targets,
                                     self.interval, rule_files=[rules],
                                     alertmanagers=[self.alertmanager.address]).start()
        return self

    def start_remediate(self) -> Process:
        self.remediate = self._process(
            "remediate", ["remediate", "--config", str(self.config), "--host", "127.0.0.1",
                          "--port", str(self.remediate_port)], self.tmp / "logs",
            env={"KUBECONFIG": str(self.kubeconfig)})
        self.remediate.wait_http(f"{self.remediate_url}/readyz", timeout=60)
        return self.remediate

    def _process(self, name: str, args: list[str], logs: Path, env: dict[str, str] | None = None) -> Process:
        proc = Process([sys.executable, "-m", "monitor.cli.main", *args], logs,
                       name=f"{name}-{len(self.procs)}", env=env)
        self.procs.append(proc)
        return proc

    def _alertmanager_config(self) -> dict[str, Any]:
        return {
            "route": {"receiver": "driftline-remediate", "group_by": ["model"],
                      "group_wait": self.group_wait, "group_interval": "1s",
                      "repeat_interval": self.repeat_interval},
            "receivers": [{"name": "driftline-remediate", "webhook_configs": [{
                "url": f"{self.remediate_url}/alerts", "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": str(self.token_file)}}}]}],
        }

    def stop(self) -> None:
        for server in (self.prometheus, self.alertmanager):
            if server is not None:
                server.stop()
        for proc in reversed(self.procs):
            proc.terminate()

    # ---- traffic

    def send(self, frame: pd.DataFrame, *, labels: bool = True, batch: int = 100) -> float:
        """Produce ``frame``'s rows as prediction events (then their labels); returns the
        time the first event was produced."""
        producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5)
        first = 0.0
        try:
            start = self.sent
            records = frame.to_dict("records")
            for lo in range(0, len(records), batch):
                chunk = records[lo:lo + batch]
                events = [{"request_id": f"r{start + lo + i}", "ts": int(time.time() * 1000),
                           "inputs": {f: _plain(row[f]) for f in FEATURES},
                           "outputs": {"delay_score": float(row["delay_score"])}}
                          for i, row in enumerate(chunk)]
                if not first:
                    first = time.time()
                producer.send(self.topics["predictions"], key=MODEL.encode(),
                              value=encode_predictions(MODEL, events))
            if labels:  # delayed: after every prediction of the frame
                for lo in range(0, len(records), batch):
                    chunk = records[lo:lo + batch]
                    known = [(i, row) for i, row in enumerate(chunk)  # cancelled flights never arrive
                             if _plain(row["arrived_late"]) is not None]
                    producer.send(self.topics["labels"], key=MODEL.encode(), value=encode_labels(MODEL, [
                        {"request_id": f"r{start + lo + i}", "ts": int(time.time() * 1000),
                         "target": int(row["arrived_late"])} for i, row in known]))
            producer.flush(30)
        finally:
            producer.close()
        self.sent += len(frame)
        return first

    # ---- reading

    def actions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = get_json(f"{self.remediate_url}/actions?limit=1000")["actions"]
        return result

    def jobs(self) -> list[dict[str, Any]]:
        return self.kube.objects("batch/v1", "Job", NAMESPACE)

    def rollback_patches(self) -> list[Any]:
        path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{MODEL}"
        return [r for r in self.kube.api_requests()
                if r.method == "PATCH" and r.path == path and "/spec/template" in json.dumps(r.body)]

    def check_alive(self) -> None:
        for proc in (self.serve, self.remediate):
            if proc is not None:
                proc.check_alive("running the loop")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_until(what: str, check: Callable[[], bool], timeout: float, loop: Loop | None = None,
               every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if loop is not None:
            loop.check_alive()
        if time.monotonic() > deadline:
            tails = "" if loop is None else "\n".join(
                f"--- {p.name}\n{p.log_tail(30)}" for p in loop.procs
                if p.name.startswith(("serve", "remed")))
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{tails}")
        time.sleep(every)


def no_drift_rows(n: int) -> pd.DataFrame:
    return pd.read_parquet(FLIGHTS / "current_nodrift.parquet").iloc[:n]


def july_rows(n: int, seed: int = 3) -> pd.DataFrame:
    frame = pd.read_parquet(FLIGHTS / "current.parquet")
    return frame.sample(n=n, random_state=np.random.RandomState(seed)).reset_index(drop=True)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
