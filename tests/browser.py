"""Headless Chromium for tests: load a local HTML file, take a screenshot and read back
the DOM after the page's JavaScript ran.

Debian's ``chromium`` (``apt-get install -y --no-install-recommends chromium``; .ci/test
installs it) runs once per :func:`render`, with both ``--screenshot`` and ``--dump-dom``:

* ``--virtual-time-budget`` lets the page's scripts and timers run for that much virtual
  time before the screenshot and the dump, so a React page has drawn itself;
* every run gets a fresh ``--user-data-dir`` in a temporary directory, flags fit for root
  in a container (``--no-sandbox``, no GPU, no /dev/shm) and no background networking;
* ``offline=True`` (the default) sends every request, loopback included, to a proxy on a
  port nothing listens on and makes every host name unresolvable, so a page that needs
  the network renders as it would without one;
* the browser runs in its own process group, killed as a whole after ``timeout`` seconds
  (a page whose script never ends makes Chromium hang) and after every run, so no renderer
  outlives the call; stdout and stderr go to files, so nothing blocks on a pipe that an
  orphaned child still holds.

Failures raise :class:`BrowserError` (:class:`BrowserMissing` when Chromium is not
installed) with the tail of Chromium's stderr.  :func:`nonblank_share` tells a test how
much of a screenshot is not near-white, i.e. that the page actually drew.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

INSTALL_HINT = "apt-get install -y --no-install-recommends chromium"
#: flags of every run: headless as root in a container, nothing phoning home
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
#: flags of an offline run: a dead proxy for every URL (loopback too) and no DNS
OFFLINE_FLAGS = (
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
#: stderr lines that every run in a container prints and that say nothing about the page
_NOISE = ("dbus", "unexpected operator")
KILL_WAIT_S = 5.0


class BrowserError(RuntimeError):
    """Chromium failed, timed out, or gave back no screenshot or DOM."""


class BrowserMissing(BrowserError):
    """Chromium is not installed."""


def chromium_binary() -> Path:
    """``chromium`` from PATH, or Debian's ``/usr/bin/chromium``."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found is None:
        raise BrowserMissing(f"chromium is missing: install it with `{INSTALL_HINT}` (.ci/test does)")
    return Path(found)


def _stderr_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""
    kept = [line for line in text.splitlines()
            if line.strip() and not any(noise in line for noise in _NOISE)]
    return "\n".join(kept[-lines:]) or "(nothing)"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the browser's process group (its leader may have exited already)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:  # pragma: no cover - a SIGKILLed process always goes
        pass


def render(html_path: Path, out_png: Path, *, width: int = 1400, height: int = 2400,
           timeout: float = 60.0, budget_ms: int = 10_000, offline: bool = True) -> str:
    """Load ``html_path`` in headless Chromium, save a ``width`` x ``height`` screenshot
    to ``out_png`` and return the DOM as serialised after ``budget_ms`` of virtual time.

    Raises :class:`BrowserError` when Chromium fails, writes no
    screenshot or no DOM, or is still running after ``timeout`` seconds (its whole
    process group is killed first), and :class:`BrowserMissing` without Chromium.
    """
    binary = chromium_binary()
    page = Path(html_path).resolve()
    if not page.is_file():
        raise BrowserError(f"no such page: {page}")
    out_png = Path(out_png).resolve()
    out_png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="driftline-chromium-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        args = [
            str(binary), *BASE_FLAGS, *(OFFLINE_FLAGS if offline else ()),
            f"--user-data-dir={work / 'profile'}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out_png}",
            "--dump-dom",
        ]
        args.append(page.as_uri())
        stdout_path, stderr_path = work / "stdout", work / "stderr"
        started = time.monotonic()
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise BrowserError(
                    f"chromium did not finish rendering {page.name} within {timeout:g} s "
                    f"(its process group was killed): a script on the page may never end. "
                    f"chromium's stderr:\n{_stderr_tail(stderr_path)}") from None
            finally:
                _kill_group(proc)  # renderers and helpers that outlived the browser
        elapsed = time.monotonic() - started
        if rc != 0:
            raise BrowserError(f"chromium exited with status {rc} after {elapsed:.1f} s rendering "
                               f"{page.name}; its stderr:\n{_stderr_tail(stderr_path)}")
        dom = stdout_path.read_text("utf-8", "replace")
        if not out_png.is_file():
            raise BrowserError(f"chromium wrote no screenshot of {page.name}; its stderr:\n"
                               f"{_stderr_tail(stderr_path)}")
        if not dom.strip():
            raise BrowserError(f"chromium dumped no DOM of {page.name}; its stderr:\n"
                               f"{_stderr_tail(stderr_path)}")
        return dom


def nonblank_share(png: Path, *, tolerance: float = 0.03) -> float:
    """The share of the screenshot's pixels that are not near-white (some colour channel
    below ``1 - tolerance``): 0.0 for a blank page."""
    import matplotlib.image as mpimg

    read = np.asarray(mpimg.imread(str(png)))
    pixels = read / 255.0 if read.dtype.kind in "iu" else read.astype(np.float64)
    if pixels.ndim == 2:  # grey
        pixels = pixels[..., np.newaxis]
    colour = pixels[..., :3]
    drawn = (colour < 1.0 - tolerance).any(axis=-1)
    return float(drawn.mean())


class Page(HTMLParser):
    """The text a reader sees (nothing inside <script>, <style> or <template>), and the
    cells of every table row."""

    HIDDEN = frozenset({"script", "style", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self._hidden = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def visible(dom: str) -> Page:
    page = Page()
    page.feed(dom)
    page.close()
    return page


def drift_row(page: Page, feature: str) -> list[str]:
    """The cells of the drift table's row of ``feature``."""
    rows = [r for r in page.rows if feature in r]
    assert len(rows) == 1, f"{feature!r} is in {len(rows)} table rows of the rendered report"
    return rows[0]
