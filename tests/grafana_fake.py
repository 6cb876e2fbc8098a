"""A fake Grafana HTTP API over real HTTP: the folder and dashboard endpoints ``driftline
dashboards push`` uses, with Grafana's status codes and JSON bodies.

No Grafana server can be installed here (its server is AGPL and not packaged for this machine),
so the push is tested with the real ``grafana-client`` against this instead.  What it does, as
Grafana's HTTP API does (docs: "Folder API", "Dashboard API"):

- auth: ``Authorization: Bearer <token>``; a wrong token gets 401 ``{"message": "Invalid API
  key"}``, none gets 401 ``{"message": "Unauthorized"}``; a token with the Viewer role gets 403
  on writes;
- ``GET /api/folders``, ``GET /api/folders/<uid>`` (404 ``folder not found``), ``POST
  /api/folders`` ``{uid, title}`` (409 when the uid is taken, or the title, as Grafana before
  nested folders refused);
- ``GET /api/dashboards/uid/<uid>``: ``{"dashboard": ..., "meta": {version, folderUid,
  folderTitle, updatedBy, provisioned, ...}}``, 404 ``Dashboard not found``;
- ``POST /api/dashboards/db`` ``{dashboard, folderUid, overwrite, message}``: the JSON stored as
  given, with ``id``, ``uid`` and ``version`` set; an existing uid with another ``version`` and
  ``overwrite: false`` is 412 ``version-mismatch`` (with ``overwrite: true`` it replaces), a new
  uid whose title exists in the folder is 412 ``name-exists``, a plugin's dashboard 412
  ``plugin-dashboard``, a provisioned one 400; every save is version + 1 and kept in a history;
- answers ``{"id", "uid", "url", "status": "success", "version", "slug", "folderUid"}``.

Test controls: :meth:`FakeGrafana.edit` (a save from Grafana's UI: the JSON is rebuilt from
the dashboard schema, so keys it does not know are dropped, and the version goes up),
:meth:`FakeGrafana.add_dashboard`, :meth:`FakeGrafana.fail` (the next N requests matching a
method and path prefix answer a status, or drop the connection), :meth:`FakeGrafana.down` /
:meth:`FakeGrafana.up`, and :attr:`FakeGrafana.requests` (method, path, body, headers).
"""

from __future__ import annotations

import copy
import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.http_fake import FakeHandler, FakeServer

#: Top-level keys of Grafana's dashboard schema: what a save from the UI keeps.
SCHEMA_KEYS = frozenset({
    "id", "uid", "title", "description", "tags", "style", "timezone", "editable", "graphTooltip",
    "time", "timepicker", "fiscalYearStartMonth", "liveNow", "weekStart", "refresh", "schemaVersion",
    "version", "panels", "templating", "annotations", "links", "gnetId", "snapshot",
})

_FAULT_MESSAGES = {
    401: "Unauthorized",
    403: "You'll need additional permissions to perform this action. Permissions needed: dashboards:write",
    404: "Not found",
    409: "a folder/dashboard with the same uid already exists",
    412: "The dashboard has been changed by someone else",
    429: "Too many requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    """One request the fake received (faulted ones included)."""

    method: str
    path: str
    body: Any  # parsed JSON, or None
    headers: dict[str, str]


@dataclass
class _Fault:
    method: str
    prefix: str
    status: int  # 0: drop the connection unanswered
    times: int
    body: dict[str, Any] | None
    processed: bool = False


@dataclass
class _Dashboard:
    json: dict[str, Any]
    folder_uid: str
    updated_by: str
    plugin_id: str = ""
    provisioned: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class GrafanaError(Exception):
    def __init__(self, code: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.code, self.body = code, body


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class FakeGrafana(FakeServer):
    """The fake.  Use as a context manager; ``url`` is ``http://127.0.0.1:<port>``.  ``tokens``:
    bearer token -> (user name, role); the default is one Editor token, ``"t0ken"``."""

    def __init__(self, tokens: dict[str, tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.tokens = tokens if tokens is not None else {"t0ken": ("sa-driftline", "Editor")}
        self.requests: list[Request] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self._dashboards: dict[str, _Dashboard] = {}
        self._faults: list[_Fault] = []
        self._next_id = 1

    # --- test controls -------------------------------------------------------------------------

    def dashboard(self, uid: str) -> dict[str, Any] | None:
        """The stored JSON of a dashboard (a copy), or None."""
        with self._lock:
            found = self._dashboards.get(uid)
            return copy.deepcopy(found.json) if found is not None else None

    def history(self, uid: str) -> list[dict[str, Any]]:
        """Every saved version: ``{"version", "message", "createdBy"}``."""
        with self._lock:
            return copy.deepcopy(self._dashboards[uid].history)

    def add_folder(self, uid: str, title: str) -> None:
        with self._lock:
            self._create_folder({"uid": uid, "title": title})

    def add_dashboard(self, dashboard: dict[str, Any], folder_uid: str = "", *, by: str = "admin",
                      plugin_id: str = "", provisioned: bool = False) -> dict[str, Any]:
        """Store a dashboard as if someone else had created it (version 1)."""
        with self._lock:
            saved = self._save({"dashboard": dashboard, "folderUid": folder_uid, "overwrite": True,
                                "message": ""}, by)
            self._dashboards[saved["uid"]].plugin_id = plugin_id
            self._dashboards[saved["uid"]].provisioned = provisioned
            return saved

    def edit(self, uid: str, change: Callable[[dict[str, Any]], None], *, by: str = "admin",
             from_ui: bool = True) -> dict[str, Any]:
        """Someone edits and saves the dashboard: ``change`` applied to its JSON, version + 1.
        ``from_ui``: saved from Grafana's UI, which rebuilds the JSON from the dashboard schema
        (keys outside :data:`SCHEMA_KEYS` are dropped); else through the API, kept as sent."""
        with self._lock:
            stored = self._dashboards[uid]
            new = copy.deepcopy(stored.json)
            change(new)
            if from_ui:
                new = {key: value for key, value in new.items() if key in SCHEMA_KEYS}
            new["version"] = int(stored.json["version"]) + 1
            stored.json, stored.updated_by = new, by
            stored.history.append({"version": new["version"], "message": "", "createdBy": by})
            return copy.deepcopy(new)

    def fail(self, method: str, path_prefix: str, status: int, times: int = 1, *,
             body: dict[str, Any] | None = None, processed: bool = False) -> None:
        """The next ``times`` requests with ``method`` (or ``"*"``) whose path starts with
        ``path_prefix`` answer ``status`` with a Grafana JSON body (``body`` or a default), or
        drop the connection unanswered when ``status`` is 0.  ``processed``: carry the request
        out first (a write whose answer is lost)."""
        with self._lock:
            self._faults.append(_Fault(method.upper(), path_prefix, status, times, body, processed))

    def calls(self) -> list[tuple[str, str]]:
        """(method, path) of every request so far."""
        with self._lock:
            return [(request.method, request.path) for request in self.requests]

    def posts(self, path: str = "/api/dashboards/db") -> list[Any]:
        """The bodies of the POSTs to ``path``."""
        with self._lock:
            return [r.body for r in self.requests if r.method == "POST" and r.path == path]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- the API -------------------------------------------------------------------------------

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method in ("*", method) and path.startswith(fault.prefix):
                    fault.times -= 1
                    return fault
            self._faults = [fault for fault in self._faults if fault.times > 0]
        return None

    def handle(self, method: str, path: str, body: Any, user: str, role: str) -> tuple[int, Any]:
        parts = [part for part in path.split("/") if part]
        if method != "GET" and role == "Viewer":
            raise GrafanaError(403, {"message": _FAULT_MESSAGES[403], "accessErrorId": "ACE0000000001"})
        with self._lock:
            if parts == ["api", "folders"] and method == "GET":
                return 200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]}
                             for f in self.folders.values()]
            if parts == ["api", "folders"] and method == "POST":
                return 200, self._create_folder(body)
            if parts[:2] == ["api", "folders"] and len(parts) == 3 and method == "GET":
                folder = self.folders.get(parts[2])
                if folder is None:
                    raise GrafanaError(404, {"message": "folder not found", "status": "not-found"})
                return 200, copy.deepcopy(folder)
            if parts[:3] == ["api", "dashboards", "uid"] and len(parts) == 4 and method == "GET":
                return 200, self._get_dashboard(parts[3])
            if parts == ["api", "dashboards", "db"] and method == "POST":
                return 200, self._save(body, user)
        raise GrafanaError(404, {"message": "Not found"})

    def _create_folder(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not str(body.get("title") or "").strip():
            raise GrafanaError(400, {"message": "folder title cannot be empty"})
        title = str(body["title"])
        uid = str(body.get("uid") or f"f{self._next_id:08d}")
        if uid in self.folders or uid in self._dashboards:
            raise GrafanaError(409, {"message": "a folder/dashboard with the same uid already exists"})
        if any(folder["title"] == title for folder in self.folders.values()):
            raise GrafanaError(409, {"message": "a folder or dashboard in the general folder with the same "
                                                "name already exists"})
        folder = {"id": self._next_id, "uid": uid, "title": title,
                  "url": f"/dashboards/f/{uid}/{_slug(title)}", "hasAcl": False, "canSave": True,
                  "canEdit": True, "canAdmin": True, "version": 1}
        self._next_id += 1
        self.folders[uid] = folder
        return copy.deepcopy(folder)

    def _get_dashboard(self, uid: str) -> dict[str, Any]:
        stored = self._dashboards.get(uid)
        if stored is None:
            raise GrafanaError(404, {"message": "Dashboard not found"})
        folder = self.folders.get(stored.folder_uid)
        title = str(stored.json.get("title"))
        return {"dashboard": copy.deepcopy(stored.json),
                "meta": {"type": "db", "canSave": True, "canEdit": True, "canAdmin": True, "canStar": True,
                         "slug": _slug(title), "url": f"/d/{uid}/{_slug(title)}",
                         "expires": "0001-01-01T00:00:00Z",
                         "created": "2026-12-07T00:00:00Z", "updated": "2026-12-07T00:00:00Z",
                         "updatedBy": stored.updated_by, "createdBy": stored.history[0]["createdBy"],
                         "version": stored.json["version"], "hasAcl": False, "isFolder": False,
                         "folderId": folder["id"] if folder else 0, "folderUid": stored.folder_uid,
                         "folderTitle": folder["title"] if folder else "General",
                         "folderUrl": folder["url"] if folder else "", "provisioned": stored.provisioned,
                         "provisionedExternalId": ""}}

    def _save(self, body: Any, user: str) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            raise GrafanaError(400, {"message": "bad request data"})
        dashboard = copy.deepcopy(body["dashboard"])
        overwrite = bool(body.get("overwrite"))
        folder_uid = str(body.get("folderUid") or "")
        title = str(dashboard.get("title") or "").strip()
        if not title:
            raise GrafanaError(400, {"message": "Dashboard title cannot be empty", "status": "empty-name"})
        if folder_uid and folder_uid not in self.folders:
            raise GrafanaError(400, {"message": "folder not found", "status": "not-found"})
        uid = str(dashboard.get("uid") or f"d{self._next_id:08d}")
        if len(uid) > 40:
            raise GrafanaError(400, {"message": "uid too long, max 40 characters", "status": "bad-uid"})
        existing = self._dashboards.get(uid)
        if existing is not None:
            if existing.provisioned:
                raise GrafanaError(400, {"message": "Cannot save provisioned dashboard",
                                         "status": "provisioned-dashboard"})
            if existing.plugin_id and not overwrite:
                raise GrafanaError(412, {"message": f"The dashboard belongs to plugin {existing.plugin_id}.",
                                         "status": "plugin-dashboard"})
            current = int(existing.json["version"])
            if dashboard.get("version") != current and not overwrite:
                raise GrafanaError(412, {"message": "The dashboard has been changed by someone else",
                                         "status": "version-mismatch"})
            dashboard["id"], version = existing.json["id"], current + 1
        else:
            for other in self._dashboards.values():
                if other.folder_uid == folder_uid and str(other.json.get("title")) == title:
                    if not overwrite:
                        raise GrafanaError(412, {"message": "A dashboard with the same name in the folder "
                                                            "already exists", "status": "name-exists"})
                    del self._dashboards[str(other.json["uid"])]
                    break
            dashboard["id"], version = self._next_id, 1
            self._next_id += 1
        dashboard["uid"], dashboard["version"] = uid, version
        history = existing.history if existing is not None else []
        history.append({"version": version, "message": str(body.get("message") or ""), "createdBy": user})
        self._dashboards[uid] = _Dashboard(dashboard, folder_uid, user, history=history,
                                           plugin_id=existing.plugin_id if existing else "")
        return {"id": dashboard["id"], "uid": uid, "url": f"/d/{uid}/{_slug(title)}", "status": "success",
                "version": version, "slug": _slug(title), "folderUid": folder_uid}


class _Handler(FakeHandler):
    fake: FakeGrafana

    def _answer(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        grafana, method = self.fake, self.command
        with grafana._lock:
            grafana.requests.append(Request(method, path, body, dict(self.headers.items())))
        authorization = self.headers.get("Authorization") or ""
        if not authorization:
            self._answer(401, {"message": "Unauthorized"})
            return
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        if token is None or token not in grafana.tokens:
            self._answer(401, {"message": "Invalid API key"})
            return
        user, role = grafana.tokens[token]
        fault = grafana._take_fault(method, path)
        if fault is not None:
            if fault.status == 0:
                if fault.processed:
                    try:
                        grafana.handle(method, path, body, user, role)
                    except GrafanaError:
                        pass
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            message = _FAULT_MESSAGES.get(fault.status, "error")
            answer = fault.body if fault.body is not None else {"message": message}
            if fault.body is None and fault.status == 412:
                answer["status"] = "version-mismatch"
            self._answer(fault.status, answer)
            return
        if raw and body is None:
            self._answer(400, {"message": "bad request data"})
            return
        try:
            code, answer = grafana.handle(method, path, body, user, role)
        except GrafanaError as exc:
            self._answer(exc.code, exc.body)
            return
        self._answer(code, answer)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


FakeGrafana.handler = _Handler  # the handler class reads the fake, so it is defined after it
FakeGrafana.name = "fake-grafana"


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    """A started :class:`FakeGrafana`, stopped after the test."""
    with FakeGrafana() as grafana:
        yield grafana
