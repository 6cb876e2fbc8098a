"""``driftline serve`` refuses bad input before it connects anywhere: one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli.main", "serve", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("config", "expected"), [
    ("missing.yaml", "config file not found"),
    ("bad.yaml", "unknown key 'windw'; did you mean 'window'?"),
    ("noref.yaml", "gone.parquet"),
])
def test_serve_with_a_bad_config_prints_one_line_and_exits_2(tmp_path: Path, config: str,
                                                             expected: str) -> None:
    (tmp_path / "bad.yaml").write_text(
        "defaults: {windw: {size: 10}}\nmodels:\n  - name: m\n    reference: r.csv\n"
        "    features: {x: {type: numerical}}\n")
    (tmp_path / "noref.yaml").write_text(
        "models:\n  - name: m\n    reference: gone.parquet\n    features: {x: {type: numerical}}\n")
    result = _serve("--config", str(tmp_path / config), "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftline: error: ") and expected in lines[0]
    assert "Traceback" not in result.stderr


def test_serve_with_a_port_out_of_range_is_a_usage_error() -> None:
    result = _serve("--config", "x.yaml", "--port", "70000")
    assert result.returncode == 2
    assert "--port" in result.stderr and "65535" in result.stderr and "Traceback" not in result.stderr


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli.main", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)


def test_inject_prints_the_manifest_with_the_collector_and_refuses_bad_input_in_one_line(
        tmp_path: Path) -> None:
    import yaml

    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: credit}\nspec:\n"
        "  selector: {matchLabels: {app: credit}}\n  template:\n"
        "    metadata: {labels: {app: credit, app.kubernetes.io/name: credit}}\n"
        "    spec:\n      containers: [{name: model, image: m:1, ports: [{containerPort: 8080}]}]\n")
    result = _cli("inject", "-f", str(manifest), "--kafka", "kafka:9092")
    assert result.returncode == 0, result.stderr
    [doc] = list(yaml.safe_load_all(result.stdout))
    names = [c["name"] for c in doc["spec"]["template"]["spec"]["containers"]]
    assert names == ["model", "driftline-collector"]
    for args, expected in [(("-f", str(tmp_path / "missing.yaml")), "cannot read"),
                           (("-f", "-"), "invalid YAML")]:
        bad = _cli("inject", *args, stdin="kind: [\n")
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and expected in lines[0]


def test_webhook_without_a_readable_certificate_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _cli("webhook", "--tls-cert", str(tmp_path / "no.crt"), "--tls-key", str(tmp_path / "no.key"),
                  "--listen", "127.0.0.1:0")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("driftline: error: ")
