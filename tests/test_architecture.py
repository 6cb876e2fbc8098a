"""Each third-party client is imported by exactly one module of the package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("monitor", "collectors", "alerts", "dashboards")
OWNERS = {
    "kafka": {"monitor/service/kafka.py", "collectors/delivery/kafka.py"},
    "fastapi": {"monitor/service/api.py", "alerts/receiver.py"},
    "starlette": {"monitor/service/api.py", "alerts/receiver.py"},
    "uvicorn": {"monitor/cli/serve.py", "monitor/cli/remediate.py"},
    "prometheus_client": {"monitor/service/export.py", "collectors/delivery/metrics.py",
                          "monitor/runtime.py", "alerts/metrics.py", "monitor/demo/observe.py"},
    "httpx": {"alerts/monitor_api.py", "monitor/demo/client.py"},
    "evidently": {"monitor/batch/evidently_report.py"},
    "aiohttp": {"collectors/sidecar.py", "collectors/k8s/webhook.py"},
    "httptools": {"collectors/proxy/server.py"},
    "uvloop": {"collectors/sidecar.py"},
    "kubernetes": {"alerts/kube.py"},
    "torch": set(),
    "grafana_client": {"dashboards/push.py"},
    "matplotlib": {"dashboards/preview.py"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_every_third_party_client_is_imported_by_its_one_owner_module_only():
    importers: dict[str, set[str]] = {client: set() for client in OWNERS}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for client in _imports(path) & set(OWNERS):
                importers[client].add(path.relative_to(ROOT).as_posix())
    assert importers == {client: owners & importers[client] for client, owners in OWNERS.items()}
    assert importers["kafka"] == {"monitor/service/kafka.py", "collectors/delivery/kafka.py"}
    assert importers["prometheus_client"] == {"monitor/service/export.py", "collectors/delivery/metrics.py",
                                              "monitor/runtime.py", "alerts/metrics.py",
                                              "monitor/demo/observe.py"}
    assert importers["kubernetes"] == {"alerts/kube.py"}


def test_the_sidecar_does_not_load_numpy_or_pandas_which_would_cost_the_pod_20_mib():
    import subprocess
    import sys

    code = ("import sys, collectors.sidecar, collectors.sdk.collector; "
            "print(sorted(m for m in ('numpy', 'pandas', 'scipy', 'pyarrow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
