"""Grafana provisioning files for the generated dashboards (pure: dicts and YAML text).

* :func:`datasource` is ``provisioning/datasources/driftline.yaml``: a Prometheus data source
  with a fixed uid, the one the dashboards' ``datasource`` variable selects by default;
* :func:`dashboard_provider` is ``provisioning/dashboards/driftline.yaml``: a file provider that
  loads every dashboard JSON in a directory into the folder ``driftline``.

Both are Grafana's documented provisioning format (``apiVersion: 1``).
"""

from __future__ import annotations

from typing import Any

import yaml

from dashboards.common import DEFAULT_DATASOURCE_UID

DATASOURCE_NAME = "Driftline Prometheus"
DEFAULT_PROMETHEUS_URL = "http://localhost:9090"
PROVIDER_NAME = "driftline"
FOLDER = "driftline"
#: Where ``driftline dashboards`` writes the two files, relative to its output directory.
DATASOURCE_FILE = "provisioning/datasources/driftline.yaml"
PROVIDER_FILE = "provisioning/dashboards/driftline.yaml"


def datasource(uid: str = DEFAULT_DATASOURCE_UID, url: str = DEFAULT_PROMETHEUS_URL) -> dict[str, Any]:
    """A Prometheus data source with ``uid`` at ``url`` (server access, not the default one)."""
    return {
        "apiVersion": 1,
        "datasources": [{
            "name": DATASOURCE_NAME,
            "uid": uid,
            "type": "prometheus",
            "access": "proxy",
            "url": url,
            "isDefault": False,
            "editable": False,
            "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
        }],
    }


def dashboard_provider(path: str, folder: str = FOLDER) -> dict[str, Any]:
    """A file provider loading the dashboards in ``path`` (absolute, as Grafana sees it) into
    ``folder``; a file removed from ``path`` removes its dashboard, and edits made in the UI
    are not allowed (the files are the source of truth)."""
    return {
        "apiVersion": 1,
        "providers": [{
            "name": PROVIDER_NAME,
            "orgId": 1,
            "folder": folder,
            "type": "file",
            "disableDeletion": False,
            "allowUiUpdates": False,
            "updateIntervalSeconds": 30,
            "options": {"path": path, "foldersFromFilesStructure": False},
        }],
    }


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
