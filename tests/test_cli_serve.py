"""``driftline serve`` refuses bad input before it connects anywhere: one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", "serve", *args],
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
