"""``driftline dashboards push``: upload generated dashboards into a Grafana folder, idempotently.

The only module that imports ``grafana_client`` (the maintained fork of ``grafana-api``, which
has been unmaintained since 2020; same API).  Its calls are untyped, so the client lives behind
``Any`` here and nowhere else.

Requests, in order::

    GET  /api/folders/<folder uid>            the folder, by a uid derived from its title
         [404] POST /api/folders {uid, title}
               [409/412: a concurrent create] GET /api/folders/<uid> again, else
               GET /api/folders and take the folder of that title (an older Grafana refuses a
               second folder of the same title whatever its uid)
    per dashboard:
    GET  /api/dashboards/uid/<uid>
         [404] POST /api/dashboards/db {dashboard (no id), folderUid, overwrite: false, message}
         [same content]  nothing                                         -> "unchanged"
         [driftline's own, older content] POST {..., version: <the version read>, overwrite: false}
               Grafana's optimistic check: a save between our GET and POST -> 412 version-mismatch
         [changed by hand, --overwrite] POST {..., overwrite: true}      -> "replaced"
         [changed by hand] nothing                                       -> "kept ...: what would change"

How a hand edit is told apart: every dashboard driftline writes carries a top-level key
``"driftline": {"hash": <sha256 of the content>, "version": <the version this write makes>}``,
where the content is the dashboard JSON without ``id``, ``version`` and that key.  Grafana's
API stores dashboard JSON as given, so an untouched dashboard reads back with a hash that
matches its content.  An edit through the API that keeps the key makes the hash stale; a save
from Grafana's UI rebuilds the JSON from its schema and drops the key.  Either way the dashboard
is not driftline's as it was written, and it is only replaced with ``overwrite``.  A dashboard
of that uid that driftline never wrote has no key and counts as changed by hand too.  Content equal to
ours (the marker aside) is "unchanged" and causes no write, whoever saved it last.

Errors are one line each and name the URL: 401/403 and any other refusal (400, 404, 412) are
:class:`GrafanaRefused` (permanent); a Grafana that cannot be reached, times out or answers 5xx
is tried ``ATTEMPTS`` times with a short backoff and then :class:`GrafanaUnavailable`
(temporary).  A write whose answer was lost (5xx, reset) and whose retry is refused with 412 is
checked by reading the dashboard back: when it holds what was sent, the write counts as done.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaUnauthorizedError,
)

from monitor.errors import PermanentError, TemporaryError, UsageError

#: The top-level key of a dashboard that driftline owns (its content hash and the version written).
MARKER = "driftline"
#: The commit message of every version driftline saves (Grafana's version history shows it).
MESSAGE = "driftline dashboards push"
#: Tries per request when Grafana is unreachable or answers 5xx, and the pauses between them.
ATTEMPTS = 3
BACKOFF_S: tuple[float, ...] = (0.2, 0.8)

_IGNORED = frozenset({"id", "version", MARKER})  # set by Grafana, or driftline's own marker
_UID_CHARS = re.compile(r"[^a-z0-9_-]+")
_LISTED = 6  # at most this many changes named in a line


class GrafanaRefused(PermanentError):
    """Grafana answered with a refusal (401/403, 400, 404, 412 ...): retrying will not help."""


class GrafanaUnavailable(TemporaryError):
    """Grafana could not be reached, timed out or kept answering 5xx."""


class _Transient(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def push(dashboards: list[dict[str, Any]], url: str, token: str, folder: str = "driftline",
         overwrite: bool = False, *, timeout: float = 10.0) -> list[str]:
    """Upload ``dashboards`` (Grafana dashboard JSON, each with a ``uid`` and a ``title``) into
    the folder titled ``folder`` of the Grafana at ``url``, with the bearer ``token``.

    Returns one line per dashboard, after the folder's line when it was created: ``created``,
    ``updated``, ``unchanged``, ``replaced`` (changed by hand, ``overwrite``) or ``kept`` (changed
    by hand, not replaced: the line says what pushing would change).  Raises
    :class:`GrafanaRefused` or :class:`GrafanaUnavailable` (one line, URL and status named) or
    :class:`monitor.errors.UsageError` for a malformed URL or dashboard."""
    shown, api_url = _urls(url)
    for position, dashboard in enumerate(dashboards):
        if not isinstance(dashboard, Mapping) or not dashboard.get("uid") or not dashboard.get("title"):
            raise UsageError(f"dashboard #{position + 1} has no uid or title: driftline pushes only "
                             "dashboards with a stable uid")
    api: Any = GrafanaApi.from_url(api_url, credential=token or None, timeout=timeout)
    try:
        return _Pusher(api, shown).push(dashboards, folder, overwrite)
    finally:
        session = getattr(api.client, "s", None)
        if session is not None:
            session.close()


# --- pure helpers ------------------------------------------------------------------------------------

def folder_uid(title: str) -> str:
    """The stable uid of the folder titled ``title``: its slug, at most 40 characters."""
    return _UID_CHARS.sub("-", title.strip().lower()).strip("-")[:40] or "driftline"


def content(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a dashboard driftline compares: its JSON without ``id``, ``version`` and the
    marker, normalised through JSON."""
    normal: dict[str, Any] = json.loads(json.dumps(dashboard, sort_keys=True, default=str))
    return {key: value for key, value in normal.items() if key not in _IGNORED}


def content_hash(dashboard: Mapping[str, Any]) -> str:
    text = json.dumps(content(dashboard), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def hand_edited(existing: Mapping[str, Any]) -> bool:
    """Whether a stored dashboard differs from what driftline last wrote into it (or driftline
    never wrote it): its marker is missing or its hash does not match its content."""
    marker = existing.get(MARKER)
    return not (isinstance(marker, Mapping) and marker.get("hash") == content_hash(existing))


def _panels(dashboard: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Every panel, rows' collapsed panels included: key -> (title, panel)."""
    found: dict[str, tuple[str, Any]] = {}

    def visit(panels: Any) -> None:
        for panel in panels if isinstance(panels, list) else []:
            if not isinstance(panel, Mapping):
                continue
            title = str(panel.get("title") or "")
            key = f"id:{panel['id']}" if panel.get("id") is not None else f"title:{title}"
            found.setdefault(key, (title or f"#{panel.get('id')}", panel))
            visit(panel.get("panels"))

    visit(dashboard.get("panels"))
    return found


def describe_changes(existing: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """What writing ``ours`` over ``existing`` would change, in words: panels added, removed,
    retitled or changed, then other top-level settings."""
    old, new = content(existing), content(ours)
    before, after = _panels(old), _panels(new)
    changes: list[str] = []
    for key, (title, panel) in after.items():
        if key not in before:
            changes.append(f"adds panel {title!r}")
        elif before[key][0] != title:
            changes.append(f"renames panel {before[key][0]!r} to {title!r}")
        elif _without_children(before[key][1]) != _without_children(panel):
            changes.append(f"changes panel {title!r}")
    changes.extend(f"removes panel {title!r}" for key, (title, _) in before.items() if key not in after)
    settings = sorted(key for key in set(old) | set(new) if key != "panels" and old.get(key) != new.get(key))
    if settings:
        changes.append("changes " + ", ".join(settings))
    return changes


def _without_children(panel: Any) -> Any:
    if isinstance(panel, Mapping):
        return {key: value for key, value in panel.items() if key != "panels"}
    return panel


def _listed(changes: Sequence[str]) -> str:
    if not changes:
        return "no visible change"
    shown = list(changes[:_LISTED])
    if len(changes) > _LISTED:
        shown.append(f"and {len(changes) - _LISTED} more")
    return "; ".join(shown)


def _urls(url: str) -> tuple[str, str]:
    """(the URL as messages show it, without credentials; the URL grafana_client is given).
    grafana_client appends ``api`` to the path as written, so a sub-path gets its slash."""
    try:
        split = urlsplit(url.strip())
        port = split.port
    except ValueError as exc:
        raise UsageError(f"grafana url {url!r} is not a URL: {exc}") from None
    if split.scheme not in ("http", "https") or not split.hostname:
        raise UsageError(f"grafana url {url!r} must be http(s)://host[:port][/path]")
    path = split.path.rstrip("/")
    api_path = f"{path}/" if path else ""
    host = split.hostname if ":" not in split.hostname else f"[{split.hostname}]"
    netloc = f"{host}:{port}" if port is not None else host
    shown = urlunsplit((split.scheme, netloc, path, "", ""))
    return shown, urlunsplit((split.scheme, split.netloc, api_path, split.query, ""))


def _message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, Mapping):
        text = str(response.get("message") or "")
        status = response.get("status")
        if status and isinstance(status, str) and status not in text:
            text = f"{status}: {text}" if text else status
    else:
        text = _snippet(response) if response else ""
    return " ".join((text or str(exc.message) or type(exc).__name__).split())[:300]


# --- the requests --------------------------------------------------------------------------------------

class _Pusher:
    def __init__(self, api: Any, url: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.url = url
        self.sleep = sleep

    def push(self, dashboards: Sequence[Mapping[str, Any]], folder: str, overwrite: bool) -> list[str]:
        lines: list[str] = []
        uid, created = self.folder(folder)
        if created:
            lines.append(f"created folder {folder} ({uid})")
        for dashboard in dashboards:
            lines.append(self.dashboard(dashboard, uid, folder, overwrite))
        return lines

    # folder

    def folder(self, title: str) -> tuple[str, bool]:
        uid = folder_uid(title)
        found = self._folder(uid)
        if found is not None:
            return uid, False
        try:
            self._call(f"create folder {title!r}", lambda: self.api.folder.create_folder(title, uid=uid))
            return uid, True
        except GrafanaClientError as exc:
            if exc.status_code not in (409, 412):
                raise self._refused(f"create folder {title!r}", exc) from None
            conflict = exc
        if self._folder(uid) is not None:  # created meanwhile by another push
            return uid, False
        listing = self._call("list folders", self.api.folder.get_all_folders)
        for item in listing if isinstance(listing, list) else []:
            if isinstance(item, Mapping) and item.get("title") == title and item.get("uid"):
                return str(item["uid"]), False
        raise self._refused(f"create folder {title!r}", conflict) from None

    def _folder(self, uid: str) -> Mapping[str, Any] | None:
        try:
            found = self._call(f"read folder {uid}", lambda: self.api.folder.get_folder(uid))
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise self._refused(f"read folder {uid}", exc) from None
        if not isinstance(found, Mapping):
            raise GrafanaRefused(f"grafana at {self.url} answered folder {uid} with something that is not "
                                 f"Grafana's JSON API ({_snippet(found)}): is the URL right?")
        return found

    # dashboards

    def dashboard(self, dashboard: Mapping[str, Any], folder_uid: str, folder: str, overwrite: bool) -> str:
        uid = str(dashboard["uid"])
        existing = self._read(uid)
        if existing is None:
            written = self._save(uid, self._body(dashboard, folder_uid, 0, overwrite=False))
            return f"created {uid} v{written} in folder {folder}"
        stored, meta = existing
        version = _int(stored.get("version"), _int(meta.get("version"), 0))
        moved = meta.get("folderUid") not in (None, folder_uid)
        if content(stored) == content(dashboard) and not moved:
            return f"unchanged {uid} (v{version})"
        changes = describe_changes(stored, dashboard)
        if moved:
            changes.append(f"moves it from folder {meta.get('folderTitle') or meta.get('folderUid')!r}")
        if not hand_edited(stored):
            written = self._save(uid, self._body(dashboard, folder_uid, version, overwrite=False))
            return f"updated {uid} v{version} -> v{written} ({_listed(changes)})"
        marker = stored.get(MARKER)
        pushed = marker.get("version") if isinstance(marker, Mapping) else None
        since = (f"changed in Grafana since driftline pushed v{pushed}" if pushed is not None
                 else "not as driftline wrote it (no driftline marker: saved from Grafana's UI, or never "
                      "pushed by driftline)")
        by = f", by {meta['updatedBy']}" if meta.get("updatedBy") else ""
        if overwrite:
            written = self._save(uid, self._body(dashboard, folder_uid, version, overwrite=True))
            return f"replaced {uid} v{version} -> v{written}: it was {since} (now v{version}{by}); " \
                   f"{_listed(changes)}"
        return (f"kept {uid}: {since} (now v{version}{by}); pushing would: {_listed(changes)}; "
                "use --overwrite to replace it")

    def _read(self, uid: str) -> tuple[dict[str, Any], Mapping[str, Any]] | None:
        try:
            found = self._call(f"read dashboard {uid}", lambda: self.api.dashboard.get_dashboard(uid))
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise self._refused(f"read dashboard {uid}", exc) from None
        if not isinstance(found, Mapping) or not isinstance(found.get("dashboard"), Mapping):
            raise GrafanaRefused(f"grafana at {self.url} answered dashboard {uid} with something that is not "
                                 f"Grafana's JSON API ({_snippet(found)}): is the URL right?")
        meta = found.get("meta")
        return dict(found["dashboard"]), meta if isinstance(meta, Mapping) else {}

    @staticmethod
    def _body(dashboard: Mapping[str, Any], folder_uid: str, version: int, *,
              overwrite: bool) -> dict[str, Any]:
        sent = copy.deepcopy(dict(dashboard))
        sent.pop("id", None)
        sent.pop(MARKER, None)
        sent["version"] = version
        sent[MARKER] = {"hash": content_hash(sent), "version": version + 1}
        return {"dashboard": sent, "folderUid": folder_uid, "overwrite": overwrite, "message": MESSAGE}

    def _save(self, uid: str, body: dict[str, Any]) -> int:
        what = f"save dashboard {uid}"
        lost: list[str] = []
        try:
            answer = self._call(what, lambda: self.api.dashboard.update_dashboard(body), lost=lost)
        except GrafanaClientError as exc:
            if exc.status_code == 412 and lost:  # an earlier try may have been written, its answer lost
                existing = self._read(uid)
                if existing is not None and content(existing[0]) == content(body["dashboard"]) and (
                        existing[0].get(MARKER) == body["dashboard"][MARKER]):
                    return _int(existing[0].get("version"), 0)
            raise self._refused(what, exc) from None
        version = answer.get("version") if isinstance(answer, Mapping) else None
        return _int(version, int(body["dashboard"]["version"]) + 1)

    # transport

    def _call(self, what: str, call: Callable[[], Any], lost: list[str] | None = None) -> Any:
        reason = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                self.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
            try:
                return self._once(call)
            except _Transient as exc:
                reason = exc.reason
                if lost is not None:
                    lost.append(reason)
        raise GrafanaUnavailable(f"grafana at {self.url} {reason} ({what}, {ATTEMPTS} tries)")

    def _once(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except GrafanaUnauthorizedError as exc:
            raise GrafanaRefused(f"grafana at {self.url} refused the token (HTTP 401): "
                                 f"{_message(exc)}") from None
        except GrafanaClientError as exc:
            if exc.status_code == 403:
                raise GrafanaRefused(f"grafana at {self.url} refused the token (HTTP 403): "
                                     f"{_message(exc)}") from None
            if exc.status_code == 429:
                raise _Transient(f"answered HTTP 429: {_message(exc)}") from None
            raise
        except GrafanaServerError as exc:
            raise _Transient(f"answered HTTP {exc.status_code}: {_message(exc)}") from None
        except ValueError as exc:  # a 2xx answer that is not JSON: not Grafana's API (requests'
            # JSONDecodeError is an OSError too, so this comes before the transport errors)
            raise GrafanaRefused(f"grafana at {self.url} answered something that is not Grafana's JSON "
                                 f"API: {' '.join(str(exc).split())[:200]}") from None
        except (GrafanaException, OSError) as exc:  # requests' errors are OSErrors
            if "timeout" in type(exc).__name__.lower():
                raise _Transient(f"is unreachable: timed out ({' '.join(str(exc).split())[:200]})") from None
            raise _Transient(f"is unreachable: {_transport_reason(exc)}") from None

    def _refused(self, what: str, exc: GrafanaException) -> GrafanaRefused:
        return GrafanaRefused(f"grafana at {self.url} refused to {what} (HTTP {exc.status_code}): "
                              f"{_message(exc)}")


def _snippet(answer: Any) -> str:
    """A short word on an answer that is not Grafana's JSON (an HTML page from a proxy, say)."""
    text = " ".join(str(answer).split())
    if text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "an HTML page"
    return text[:120] or "an empty answer"


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _transport_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    lowered = text.lower()
    for words in ("connection refused", "connection reset", "timed out", "name or service not known",
                  "no route to host", "remote end closed", "connection aborted"):
        if words in lowered:
            return words
    return f"{type(exc).__name__}: {text}"[:300]
