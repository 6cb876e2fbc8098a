"""alerts/alertmanager.yml: valid for the real amtool, and routing driftline's alerts as documented."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "alerts" / "alertmanager.yml"


def test_the_alertmanager_config_passes_amtool_check_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is missing: apt-get install -y prometheus-alertmanager (.ci/test does)",
                    pytrace=False)
    result = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(("labels", "receivers"), [
    ("alertname=DriftlineDatasetDrift model=flight-delay severity=warning",
     ["driftline-remediate", "ml-oncall"]),
    ("alertname=DriftlineEvaluationStale model=flight-delay severity=info", ["driftline-remediate"]),
    ("alertname=NodeDown severity=critical", ["ml-oncall"]),
])
def test_driftline_alerts_reach_the_receiver_grouped_by_model_and_people_too(
        labels: str, receivers: list[str]) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is missing", pytrace=False)
    result = subprocess.run([amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels.split()],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0].split(",") == receivers


def test_the_receiver_reads_its_token_from_a_file_and_gets_every_alert_of_a_group() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    [receiver] = [r for r in config["receivers"] if r["name"] == "driftline-remediate"]
    [hook] = receiver["webhook_configs"]
    assert hook["http_config"]["authorization"]["credentials_file"].endswith("/token")
    assert hook["url"].endswith("/alerts") and hook["max_alerts"] == 0
    [route] = [r for r in config["route"]["routes"] if r["receiver"] == "driftline-remediate"]
    assert route["group_by"] == ["model"] and route["continue"] is True
