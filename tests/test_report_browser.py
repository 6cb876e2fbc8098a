"""The Evidently report that the service serves draws itself in a real browser, offline:
its JavaScript is inlined in the page, the drift table shows which features drifted, and
the browser helper (tests/browser.py) gives up cleanly on a page that never finishes.

The report is made the way the service makes it (``Service.evidently_report``): the
sample config's reference profile (``sample_data/driftline.yaml``, model flight-delay),
and the window that a ModelMonitor closes on the first 1,000 July flights, fed as
prediction messages.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests import browser
from tests.browser import BrowserError, BrowserMissing, drift_row, nonblank_share, render, visible

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "sample_data" / "driftline.yaml"
CURRENT = ROOT / "sample_data" / "flights" / "current.parquet"
MODEL = "flight-delay"
WINDOW = 1000  # the sample config's window size
RENDER_TIMEOUT_S = 60.0
#: what the report's scripts must draw beyond what its HTML shows without them
MIN_DRAWN_BY_SCRIPTS = 0.02
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.DOTALL | re.IGNORECASE)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Chromium is required where these tests run (.ci/test installs it): fail, never skip."""
    try:
        return browser.chromium_binary()
    except BrowserMissing as e:
        pytest.fail(str(e), pytrace=False)


def _scalar(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def service_report() -> str:
    """The HTML that ``GET /models/flight-delay/report`` serves after one window."""
    from monitor.batch import evidently_report
    from monitor.config import load_config
    from monitor.streaming.model_state import ModelMonitor
    from monitor.streaming.setups import model_setup
    from monitor.wire.decode import decode_predictions
    from monitor.wire.encode import encode_predictions

    try:
        evidently_report._evidently()
    except RuntimeError:
        pytest.skip("evidently is not installed")
    setup = model_setup(load_config(CONFIG), MODEL, created_at="")
    assert setup.prediction is not None
    frame = pd.read_parquet(CURRENT).iloc[:WINDOW]
    inputs = [f.name for f in setup.features if f.name != setup.prediction]
    events = [{"request_id": f"r{i}", "ts": 1_700_000_000_000 + i,
               "inputs": {k: _scalar(row[k]) for k in inputs},
               "outputs": {setup.prediction: _scalar(row[setup.prediction])}}
              for i, row in enumerate(frame.to_dict("records"))]
    monitor = ModelMonitor(setup)
    closed = monitor.add(decode_predictions(encode_predictions(MODEL, events)))
    assert len(closed) == 1 and monitor.latest_window is not None
    # as Service.evidently_report picks them
    reference, current = setup.reference, monitor.latest_window
    features = [f for f in setup.features if f.name in reference.features]
    return evidently_report.render_html(reference, current, features, title=f"driftline: {MODEL}")


@dataclass(frozen=True)
class Rendered:
    html: Path
    dom: str
    share: float  # of the screenshot, drawn
    share_without_scripts: float  # of the same page with its <script> elements removed
    seconds: float  # the render of the full page


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("report") / "report.html"
    page.write_text(service_report(), encoding="utf-8")
    return page


@pytest.fixture(scope="module")
def rendered(chromium: Path, report: Path) -> Rendered:
    tmp, page = report.parent, report
    bare = tmp / "report-without-scripts.html"
    bare.write_text(_SCRIPT.sub("", page.read_text(encoding="utf-8")), encoding="utf-8")
    started = time.monotonic()
    dom = render(page, tmp / "report.png", timeout=RENDER_TIMEOUT_S)
    seconds = time.monotonic() - started
    render(bare, tmp / "report-without-scripts.png", timeout=RENDER_TIMEOUT_S)
    return Rendered(page, dom, nonblank_share(tmp / "report.png"),
                    nonblank_share(tmp / "report-without-scripts.png"), seconds)


class _Refs(HTMLParser):
    """Every URL that the page's elements would load (src, href, srcset, poster, data)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data") and value:
                self.urls.append((tag, value))


@pytest.mark.slow
def test_the_saved_report_loads_no_script_style_or_image_from_the_network(report: Path) -> None:
    document = report.read_text(encoding="utf-8")
    refs = _Refs()
    refs.feed(document)
    refs.close()
    remote = [(tag, url) for tag, url in refs.urls
              if re.match(r"\s*(https?:)?//", url) and tag in ("script", "link", "img", "iframe")]
    assert remote == []
    css_urls = re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", document)
    assert css_urls == []


@pytest.mark.slow
def test_the_report_draws_its_page_in_chromium_with_the_network_cut_off(rendered: Rendered) -> None:
    assert rendered.seconds < RENDER_TIMEOUT_S
    # the banner alone (the page without its scripts) covers ~9%; the drawn report ~13%
    assert rendered.share > 0.10, f"only {rendered.share:.1%} of the screenshot is drawn"
    assert rendered.share >= rendered.share_without_scripts + MIN_DRAWN_BY_SCRIPTS, (
        f"the report's scripts drew nothing: {rendered.share:.1%} of the screenshot is drawn, "
        f"{rendered.share_without_scripts:.1%} without them")
    text = " ".join(" ".join(visible(rendered.dom).text).split())
    assert "Dataset Drift" in text
    assert "Data Drift Summary" in text


@pytest.mark.slow
def test_the_rendered_drift_table_says_dep_delay_drifted_and_hour_did_not(rendered: Rendered) -> None:
    page = visible(rendered.dom)
    text = " ".join(" ".join(page.text).split())
    # 13 features and the prediction, delay_score; how many drifted is Evidently's to say
    assert re.search(r"Drift is detected for [\d.]+% of columns \(\d+ out of 14\)", text), text[:2000]
    dep_delay = drift_row(page, "dep_delay")
    assert "num" in dep_delay
    assert "Detected" in dep_delay
    assert "Not Detected" not in dep_delay
    # a feature that keeps its distribution from winter to July, for contrast
    assert "Not Detected" in drift_row(page, "hour")


@pytest.mark.slow
def test_a_page_whose_script_never_ends_fails_within_the_timeout_and_leaves_no_browser(
        chromium: Path, tmp_path: Path) -> None:
    page = tmp_path / "spin.html"
    page.write_text("<!DOCTYPE html><html><body><p>spinning</p>"
                    "<script>for (;;) {}</script></body></html>", encoding="utf-8")
    timeout = 8.0
    started = time.monotonic()
    with pytest.raises(BrowserError, match=r"did not finish rendering spin\.html within 8 s"):
        render(page, tmp_path / "spin.png", width=800, height=600, timeout=timeout, budget_ms=2_000)
    assert time.monotonic() - started < timeout + 10
    assert list(_browsers_of(page)) == []


class _Script(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = b"document.body.insertAdjacentHTML('beforeend', '<p id=marker>loaded over HTTP</p>');"
        self.send_response(200)
        self.send_header("Content-Type", "text/javascript")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.mark.slow
def test_an_offline_render_loads_nothing_over_http_even_from_loopback(
        chromium: Path, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = tmp_path / "remote-script.html"
        page.write_text("<!DOCTYPE html><html><body><p>local</p><script src="
                        f"\"http://127.0.0.1:{server.server_address[1]}/x.js\"></script>"
                        "</body></html>", encoding="utf-8")
        online = render(page, tmp_path / "online.png", width=400, height=300, offline=False,
                        timeout=30, budget_ms=2_000)
        offline = render(page, tmp_path / "offline.png", width=400, height=300,
                         timeout=30, budget_ms=2_000)
    finally:
        server.shutdown()
        server.server_close()
    assert "loaded over HTTP" in online  # the control: the script loads when allowed
    assert "loaded over HTTP" not in offline
    assert "local" in offline


def _browsers_of(page: Path) -> Iterator[int]:
    """Live (not zombie) processes whose command line names ``page``, read from /proc."""
    uri = page.resolve().as_uri().encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if uri not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # gone meanwhile
            continue
        if state != "Z":
            yield int(entry.name)


def test_a_missing_chromium_is_named_with_the_apt_command_that_installs_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(os, "access", lambda _path, _mode: False)
    with pytest.raises(BrowserMissing, match=re.escape(
            "apt-get install -y --no-install-recommends chromium")):
        render(tmp_path / "page.html", tmp_path / "page.png")
