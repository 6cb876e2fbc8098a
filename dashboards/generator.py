"""Grafana dashboards from the config: ``driftline dashboards``.

Pure: a loaded :class:`~monitor.config.Config` in, plain JSON dicts out; no file, network or
clock.  Every panel is built with grafana-foundation-sdk's typed builders
(:mod:`dashboards.fleet`, :mod:`dashboards.model`, :mod:`dashboards.collector`) and encoded
with the SDK's own encoder.

The dashboards, by file name:

* ``driftline-fleet.json``: the fleet overview, uid ``driftline-fleet-<hash>``;
* ``driftline-model.json``: the model drill-down, uid ``driftline-model`` (fixed: the alert
  annotations link to it, ``alerts.rules.DASHBOARD_UID``), variables ``datasource``, ``model``
  and ``feature``;
* ``driftline-collector.json``: the sidecar collectors, uid ``driftline-collector-<hash>``.

**uids.**  ``<hash>`` is the first 8 hex digits of the SHA-256 of the sorted model names, so the
uids are the same on every run and change only when the config's set of models changes (two
driftline installations with different fleets can share one Grafana).  The model drill-down
keeps one fixed uid because it is a contract and it serves every model through ``$model``.

**Versions.**  :func:`with_versions` compares each dashboard with the one already written
under the same uid: the same content (ignoring ``version``) keeps its version, a changed one
gets version + 1, a new one version 1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from dashboards import collector, fleet, model
from dashboards.common import DEFAULT_DATASOURCE_UID, encode
from monitor.config import Config

#: The model drill-down's uid: the contract with the alert annotations (``var-model``).
MODEL_UID = "driftline-model"
FLEET_PREFIX = "driftline-fleet"
COLLECTOR_PREFIX = "driftline-collector"
#: File names in the output directory; fixed, so a changed uid replaces its file.
FILES = {"fleet": "driftline-fleet.json", "model": "driftline-model.json",
         "collector": "driftline-collector.json"}

Dashboard = dict[str, Any]


def fleet_hash(config: Config) -> str:
    """8 hex digits identifying the config's set of models (order and settings do not count)."""
    names = "\n".join(sorted(config.model_names()))
    return hashlib.sha256(names.encode("utf-8")).hexdigest()[:8]


def uids(config: Config) -> dict[str, str]:
    """The uid of each dashboard, by kind (``fleet``, ``model``, ``collector``)."""
    digest = fleet_hash(config)
    return {"fleet": f"{FLEET_PREFIX}-{digest}", "model": MODEL_UID,
            "collector": f"{COLLECTOR_PREFIX}-{digest}"}


def generate(config: Config, *, datasource_uid: str = DEFAULT_DATASOURCE_UID) -> dict[str, Dashboard]:
    """The three dashboards, by file name (see :data:`FILES`), each with ``version`` 1.

    ``datasource_uid`` is the Prometheus data source the ``datasource`` variable selects by
    default (every query reads ``${datasource}``)."""
    ids = uids(config)
    built = {
        "fleet": fleet.build(config, ids["fleet"], ids["model"], ids["collector"], datasource_uid),
        "model": model.build(config, ids["model"], ids["fleet"], ids["collector"], datasource_uid),
        "collector": collector.build(config, ids["collector"], ids["fleet"], ids["model"], datasource_uid),
    }
    return {FILES[kind]: encode(board.version(1).build()) for kind, board in built.items()}


def with_versions(dashboards: Mapping[str, Dashboard], existing: Iterable[Dashboard]) -> dict[str, Dashboard]:
    """``dashboards`` with each ``version`` set from ``existing`` (the dashboards already in the
    output directory): the same uid and content (``version`` aside) keeps that version, the same
    uid with other content gets version + 1, a uid not there gets 1."""
    previous: dict[str, Dashboard] = {}
    for old in existing:
        uid = old.get("uid")
        if isinstance(uid, str):
            previous[uid] = old
    out: dict[str, Dashboard] = {}
    for name, board in dashboards.items():
        before = previous.get(board["uid"])
        if before is None:
            version = 1
        else:
            number = before.get("version")
            old_version = number if isinstance(number, int) and number >= 1 else 0
            same = old_version and _content(before) == _content(board)
            version = old_version if same else old_version + 1
        out[name] = {**board, "version": version}
    return out


def _content(board: Mapping[str, Any]) -> Dashboard:
    return {key: value for key, value in board.items() if key not in ("version", "id")}


def to_json(board: Mapping[str, Any]) -> str:
    """A dashboard as the file holds it: sorted keys, 2-space indent, a final newline."""
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _panels(items: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in items:
        yield panel
        yield from _panels(panel.get("panels") or [])  # a collapsed row holds its panels


def panel_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every panel query of ``dashboard``: ``(panel title, refId, expr)``, in panel order.
    Rows have no queries; the PromQL still holds the dashboard's variables (``$model``,
    ``$feature``, ``$__rate_interval``, ``$__range``)."""
    found: list[tuple[str, str, str]] = []
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            found.append((str(panel.get("title", "")), str(target.get("refId", "")), str(target.get("expr",
                                                                                                    ""))))
    return found


def annotation_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every PromQL annotation of ``dashboard``: ``(name, expr)`` (Grafana's built-in
    annotation, which has no expression, is left out)."""
    annotations = dashboard.get("annotations") or {}
    return [(str(item.get("name", "")), str(item["expr"]))
            for item in annotations.get("list") or [] if item.get("expr")]
