"""``driftline dashboards push`` against a fake Grafana: the exact calls, idempotence, hand edits
and the errors, each one line naming the URL."""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from dashboards import push as push_module
from dashboards.push import (
    MARKER,
    MESSAGE,
    GrafanaRefused,
    GrafanaUnavailable,
    content_hash,
    folder_uid,
    push,
)
from monitor.config.loader import load_config
from monitor.errors import PermanentError, TemporaryError, UsageError, one_line
from tests.grafana_fake import FakeGrafana

TOKEN = "t0ken"
FOLDER = "/api/folders/driftline"
DB = "/api/dashboards/db"


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push_module, "BACKOFF_S", (0.0,))


@pytest.fixture
def fake_grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as grafana:
        yield grafana


def dashboard(uid: str, *titles: str, version: int = 1) -> dict[str, Any]:
    return {"uid": uid, "title": f"Driftline {uid}", "tags": ["driftline"], "version": version,
            "schemaVersion": 39, "time": {"from": "now-6h", "to": "now"},
            "panels": [{"id": n + 1, "type": "timeseries", "title": title,
                        "gridPos": {"x": 0, "y": 8 * n, "w": 24, "h": 8},
                        "targets": [{"expr": f"driftline_metric_{n}", "refId": "A"}]}
                       for n, title in enumerate(titles)]}


def fleet() -> list[dict[str, Any]]:
    return [dashboard("fleet", "Drifted share", "Events/s"), dashboard("model", "Drift statistic", "p-value")]


def calls(grafana: FakeGrafana) -> list[tuple[str, str]]:
    return grafana.calls()


def test_the_first_push_creates_the_folder_then_each_dashboard_with_overwrite_false_and_its_folder_uid(
        fake_grafana: FakeGrafana) -> None:
    lines = push(fleet(), fake_grafana.url, TOKEN)

    assert lines == ["created folder driftline (driftline)", "created fleet v1 in folder driftline",
                     "created model v1 in folder driftline"]
    assert calls(fake_grafana) == [("GET", FOLDER), ("POST", "/api/folders"),
                                   ("GET", "/api/dashboards/uid/fleet"), ("POST", DB),
                                   ("GET", "/api/dashboards/uid/model"), ("POST", DB)]
    assert fake_grafana.posts("/api/folders") == [{"title": "driftline", "uid": "driftline"}]
    for body, sent in zip(fake_grafana.posts(), fleet(), strict=True):
        assert set(body) == {"dashboard", "folderUid", "overwrite", "message"}
        assert (body["folderUid"], body["overwrite"], body["message"]) == ("driftline", False, MESSAGE)
        assert "id" not in body["dashboard"] and body["dashboard"]["version"] == 0
        assert {k: v for k, v in body["dashboard"].items() if k not in ("version", MARKER)} == {
            k: v for k, v in sent.items() if k != "version"}
        assert body["dashboard"][MARKER] == {"hash": content_hash(sent), "version": 1}
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in fake_grafana.requests)
    stored = fake_grafana.dashboard("fleet")
    assert stored is not None and stored["version"] == 1 and stored[MARKER]["hash"] == content_hash(stored)


def test_a_second_identical_push_only_reads_and_says_unchanged(fake_grafana: FakeGrafana) -> None:
    push(fleet(), fake_grafana.url, TOKEN)
    fake_grafana.clear()

    lines = push(fleet(), fake_grafana.url, TOKEN)

    assert lines == ["unchanged fleet (v1)", "unchanged model (v1)"]
    assert calls(fake_grafana) == [("GET", FOLDER), ("GET", "/api/dashboards/uid/fleet"),
                                   ("GET", "/api/dashboards/uid/model")]


def test_a_changed_generated_dashboard_is_saved_with_the_version_read_so_grafana_checks_it(
        fake_grafana: FakeGrafana) -> None:
    push(fleet(), fake_grafana.url, TOKEN)
    fake_grafana.clear()
    changed = fleet()
    changed[0]["panels"][1]["title"] = "Events per second"
    changed[0]["panels"].append({"id": 3, "type": "table", "title": "Firing alerts"})

    lines = push(changed, fake_grafana.url, TOKEN)

    assert lines == ["updated fleet v1 -> v2 (renames panel 'Events/s' to 'Events per second'; "
                     "adds panel 'Firing alerts')", "unchanged model (v1)"]
    assert calls(fake_grafana) == [("GET", FOLDER), ("GET", "/api/dashboards/uid/fleet"), ("POST", DB),
                                   ("GET", "/api/dashboards/uid/model")]
    [body] = fake_grafana.posts()
    assert (body["overwrite"], body["dashboard"]["version"], body["folderUid"]) == (False, 1, "driftline")
    assert body["dashboard"][MARKER]["version"] == 2
    assert [h["version"] for h in fake_grafana.history("fleet")] == [1, 2]
    assert push(changed, fake_grafana.url, TOKEN) == ["unchanged fleet (v2)", "unchanged model (v1)"]


def test_a_dashboard_edited_by_hand_in_grafanas_ui_is_kept_with_a_line_saying_what_would_change(
        fake_grafana: FakeGrafana) -> None:
    push(fleet(), fake_grafana.url, TOKEN)

    def rename(json: dict[str, Any]) -> None:
        json["panels"][0]["title"] = "Drifted share (mine)"

    fake_grafana.edit("fleet", rename, by="alice")
    fake_grafana.clear()

    lines = push(fleet(), fake_grafana.url, TOKEN)

    assert lines[0] == ("kept fleet: not as driftline wrote it (no driftline marker: saved from Grafana's "
                        "UI, or never pushed by driftline) (now v2, by alice); pushing would: renames panel "
                        "'Drifted share (mine)' to 'Drifted share'; use --overwrite to replace it")
    assert lines[1] == "unchanged model (v1)"
    assert fake_grafana.posts() == []
    stored = fake_grafana.dashboard("fleet")
    assert stored is not None and stored["panels"][0]["title"] == "Drifted share (mine)"


def test_an_api_edit_that_keeps_driftlines_marker_is_caught_by_its_stale_hash(
        fake_grafana: FakeGrafana) -> None:
    push(fleet(), fake_grafana.url, TOKEN)
    fake_grafana.edit("model", lambda json: json["panels"].pop(), by="bot", from_ui=False)
    fake_grafana.clear()

    lines = push(fleet(), fake_grafana.url, TOKEN)

    assert lines[1] == ("kept model: changed in Grafana since driftline pushed v1 (now v2, by bot); pushing "
                        "would: adds panel 'p-value'; use --overwrite to replace it")
    assert fake_grafana.posts() == []


def test_overwrite_replaces_a_hand_edited_dashboard_and_the_next_push_is_unchanged(
        fake_grafana: FakeGrafana) -> None:
    push(fleet(), fake_grafana.url, TOKEN)
    fake_grafana.edit("fleet", lambda json: json["panels"][0].update(title="Mine"))
    fake_grafana.clear()

    lines = push(fleet(), fake_grafana.url, TOKEN, overwrite=True)

    assert lines[0].startswith("replaced fleet v2 -> v3: it was not as driftline wrote it")
    assert lines[0].endswith("renames panel 'Mine' to 'Drifted share'")
    [body] = fake_grafana.posts()
    assert (body["overwrite"], body["dashboard"]["version"], body["folderUid"]) == (True, 2, "driftline")
    assert push(fleet(), fake_grafana.url, TOKEN) == ["unchanged fleet (v3)", "unchanged model (v1)"]


def test_a_dashboard_of_that_uid_that_driftline_never_wrote_is_kept(fake_grafana: FakeGrafana) -> None:
    fake_grafana.add_folder("driftline", "driftline")
    fake_grafana.add_dashboard(dashboard("fleet", "Someone else's"), "driftline", by="bob")

    lines = push(fleet(), fake_grafana.url, TOKEN)

    assert lines[0].startswith("kept fleet: not as driftline wrote it")
    assert "(now v1, by bob)" in lines[0]
    assert "adds panel 'Events/s'" in lines[0] and "renames panel \"Someone else's\"" in lines[0]
    assert [body["dashboard"]["uid"] for body in fake_grafana.posts()] == ["model"]


def test_a_wrong_token_is_one_line_naming_the_url_and_http_401(fake_grafana: FakeGrafana) -> None:
    with pytest.raises(GrafanaRefused) as caught:
        push(fleet(), fake_grafana.url, "wrong")

    assert str(caught.value) == f"grafana at {fake_grafana.url} refused the token (HTTP 401): Invalid API key"
    assert isinstance(caught.value, PermanentError)
    assert calls(fake_grafana) == [("GET", FOLDER)]


def test_a_token_without_write_permission_is_one_line_naming_http_403() -> None:
    with FakeGrafana({"viewer": ("viewer", "Viewer")}) as grafana:
        with pytest.raises(GrafanaRefused) as caught:
            push(fleet(), grafana.url, "viewer")
        assert one_line(caught.value).startswith(
            f"grafana at {grafana.url} refused the token (HTTP 403): You'll need additional permissions")
        assert calls(grafana) == [("GET", FOLDER), ("POST", "/api/folders")]


def test_a_version_conflict_on_save_is_one_line_naming_the_uid_and_grafanas_message(
        fake_grafana: FakeGrafana) -> None:
    push(fleet(), fake_grafana.url, TOKEN)
    changed = fleet()
    changed[1]["panels"][0]["title"] = "Drift"
    fake_grafana.fail("POST", DB, 412)  # someone saved between our GET and our POST

    with pytest.raises(GrafanaRefused) as caught:
        push(changed, fake_grafana.url, TOKEN)

    assert str(caught.value) == (f"grafana at {fake_grafana.url} refused to save dashboard model (HTTP 412): "
                                 "version-mismatch: The dashboard has been changed by someone else")


def test_grafanas_own_version_check_refuses_a_stale_version_without_overwrite(
        fake_grafana: FakeGrafana) -> None:
    push(fleet(), fake_grafana.url, TOKEN)
    # what our POST would meet if a save slipped in after our GET: the fake is as strict as Grafana
    fake_grafana.edit("fleet", lambda json: None, from_ui=False)
    pusher = push_module._Pusher(None, fake_grafana.url)
    body = pusher._body(fleet()[0], "driftline", 1, overwrite=False)
    code, answer = 0, {}
    try:
        fake_grafana.handle("POST", DB, body, "sa", "Editor")
    except Exception as exc:  # GrafanaError
        code, answer = exc.code, exc.body  # type: ignore[attr-defined]
    assert (code, answer) == (412, {"message": "The dashboard has been changed by someone else",
                                    "status": "version-mismatch"})
    assert fake_grafana.handle("POST", DB, {**body, "overwrite": True}, "sa", "Editor")[1]["version"] == 3


def test_a_5xx_is_retried_and_then_succeeds(fake_grafana: FakeGrafana) -> None:
    fake_grafana.fail("GET", FOLDER, 503)
    fake_grafana.fail("POST", DB, 500)

    lines = push(fleet()[:1], fake_grafana.url, TOKEN)

    assert lines == ["created folder driftline (driftline)", "created fleet v1 in folder driftline"]
    assert calls(fake_grafana) == [("GET", FOLDER), ("GET", FOLDER), ("POST", "/api/folders"),
                                   ("GET", "/api/dashboards/uid/fleet"), ("POST", DB), ("POST", DB)]


def test_a_save_whose_answer_was_lost_is_not_refused_on_its_retry(fake_grafana: FakeGrafana) -> None:
    fake_grafana.fail("POST", DB, 502, processed=False)
    fake_grafana.fail("POST", DB, 0, processed=True)  # written, then the connection drops

    lines = push(fleet()[:1], fake_grafana.url, TOKEN)

    assert lines[-1] == "created fleet v1 in folder driftline"
    assert [h["version"] for h in fake_grafana.history("fleet")] == [1]


def test_a_grafana_that_keeps_answering_5xx_is_one_line_naming_the_url_and_status(
        fake_grafana: FakeGrafana) -> None:
    fake_grafana.fail("*", "/api", 503, times=10)

    with pytest.raises(GrafanaUnavailable) as caught:
        push(fleet(), fake_grafana.url, TOKEN)

    assert str(caught.value) == (f"grafana at {fake_grafana.url} answered HTTP 503: Service Unavailable "
                                 "(read folder driftline, 3 tries)")
    assert isinstance(caught.value, TemporaryError)
    assert len(fake_grafana.requests) == 3


def test_a_grafana_that_is_down_is_one_line_saying_it_is_unreachable() -> None:
    grafana = FakeGrafana().start()
    url = grafana.url
    grafana.down()

    with pytest.raises(GrafanaUnavailable) as caught:
        push(fleet(), url, TOKEN, timeout=2.0)

    assert str(caught.value) == (f"grafana at {url} is unreachable: connection refused "
                                 "(read folder driftline, 3 tries)")
    assert "\n" not in one_line(caught.value)


def test_a_grafana_that_accepts_but_never_answers_is_one_line_saying_it_timed_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are queued by the kernel, never accepted or answered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"

        with pytest.raises(GrafanaUnavailable) as caught:
            push(fleet(), url, TOKEN, timeout=0.3)

    assert one_line(caught.value).startswith(f"grafana at {url} is unreachable: timed out")
    assert one_line(caught.value).endswith("(read folder driftline, 3 tries)")


def test_a_url_that_answers_html_is_one_line_asking_whether_the_url_is_right() -> None:
    page = b"<!DOCTYPE html><html><body>login</body></html>"

    class Html(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None

    server = HTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(GrafanaRefused) as caught:
            push(fleet(), url, TOKEN)
    finally:
        server.shutdown()
        server.server_close()
    assert str(caught.value) == (f"grafana at {url} answered folder driftline with something that is not "
                                 "Grafana's JSON API (an HTML page): is the URL right?")


def test_a_folder_created_concurrently_is_read_again_rather_than_failing(fake_grafana: FakeGrafana) -> None:
    fake_grafana.add_folder("driftline", "driftline")
    fake_grafana.fail("GET", FOLDER, 404, body={"message": "folder not found"})  # not there yet

    lines = push(fleet()[:1], fake_grafana.url, TOKEN)

    assert lines == ["created fleet v1 in folder driftline"]
    assert calls(fake_grafana)[:3] == [("GET", FOLDER), ("POST", "/api/folders"), ("GET", FOLDER)]


def test_a_folder_of_that_title_with_another_uid_is_found_by_listing_the_folders(
        fake_grafana: FakeGrafana) -> None:
    fake_grafana.add_folder("x1y2z3", "driftline")

    lines = push(fleet()[:1], fake_grafana.url, TOKEN)

    assert lines == ["created fleet v1 in folder driftline"]
    assert calls(fake_grafana)[:4] == [("GET", FOLDER), ("POST", "/api/folders"), ("GET", FOLDER),
                                       ("GET", "/api/folders")]
    assert fake_grafana.posts()[0]["folderUid"] == "x1y2z3"


def test_a_dashboard_moved_to_another_folder_is_moved_back(fake_grafana: FakeGrafana) -> None:
    push(fleet()[:1], fake_grafana.url, TOKEN)
    push(fleet()[:1], fake_grafana.url, TOKEN, folder="ML monitoring")
    [_, body] = fake_grafana.posts()
    assert (body["folderUid"], body["overwrite"], body["dashboard"]["version"]) == ("ml-monitoring", False, 1)


def test_a_plugin_dashboard_refused_with_412_is_one_line_with_grafanas_reason(
        fake_grafana: FakeGrafana) -> None:
    push(fleet()[:1], fake_grafana.url, TOKEN)
    changed = fleet()[:1]
    changed[0]["panels"].pop()
    fake_grafana.fail("POST", DB, 412, body={"message": "The dashboard belongs to plugin some-app.",
                                             "status": "plugin-dashboard"})

    with pytest.raises(GrafanaRefused, match=r"dashboard fleet \(HTTP 412\): plugin-dashboard: The dashboard "
                                             r"belongs to plugin some-app\.$"):
        push(changed, fake_grafana.url, TOKEN)


def test_a_malformed_url_or_a_dashboard_without_uid_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="must be http"):
        push(fleet(), "grafana.local:3000", TOKEN)
    nameless = copy.deepcopy(fleet())
    del nameless[1]["uid"]
    with pytest.raises(UsageError, match="dashboard #2 has no uid"):
        push(nameless, "http://127.0.0.1:1", TOKEN)


def test_the_url_shown_drops_credentials_and_a_sub_path_gets_its_api_slash() -> None:
    assert push_module._urls("https://u:p@grafana.example:3000/grafana/") == (
        "https://grafana.example:3000/grafana", "https://u:p@grafana.example:3000/grafana/")
    assert push_module._urls("http://grafana:3000") == ("http://grafana:3000", "http://grafana:3000")
    assert folder_uid("ML Monitoring / prod") == "ml-monitoring-prod"


def test_the_generated_dashboards_of_the_sample_config_push_once_and_then_are_unchanged(
        fake_grafana: FakeGrafana) -> None:
    generator = pytest.importorskip("dashboards.generator")
    config = load_config(Path(__file__).resolve().parent.parent / "sample_data" / "driftline.yaml")
    boards = list(generator.generate(config).values())
    uids = [board["uid"] for board in boards]

    assert push(boards, fake_grafana.url, TOKEN)[1:] == [f"created {uid} v1 in folder driftline"
                                                         for uid in uids]
    for uid, board in zip(uids, boards, strict=True):
        stored = fake_grafana.dashboard(uid)
        assert stored is not None and push_module.content(stored) == push_module.content(board)
    assert push(boards, fake_grafana.url, TOKEN) == [f"unchanged {uid} (v1)" for uid in uids]
