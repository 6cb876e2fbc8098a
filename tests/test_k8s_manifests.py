"""The monitor's Kubernetes manifests render with kustomize and match the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.config import validate_file

ROOT = Path(__file__).resolve().parent.parent


def test_the_monitor_config_shipped_with_the_manifests_is_valid():
    assert validate_file(ROOT / "k8s/monitor/driftline.yaml") == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_monitor_kustomization_renders_a_deployment_that_runs_serve_with_probes():
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s/monitor")],
                              capture_output=True, text=True, timeout=60, check=True).stdout
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered)}
    deployment = docs[("Deployment", "driftline-monitor")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["serve", "--config", "/etc/driftline/driftline.yaml"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config_maps = [name for kind, name in docs if kind == "ConfigMap"]
    assert len(config_maps) == 1 and config_maps[0].startswith("driftline-config-")
    volume = deployment["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == config_maps[0]  # the generated, hashed name
    service = docs[("Service", "driftline-monitor")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
