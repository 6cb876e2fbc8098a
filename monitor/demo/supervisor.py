"""The demo's child processes: started on loopback, watched, and always stopped.

Every child writes its stdout and stderr to ``<run dir>/logs/<name>.log``, runs in
its own session (so a stop reaches its own children too), carries the run's
marker in its environment (``DRIFTLINE_DEMO_RUN``, so a leftover can be found in
the process table), and is asked by the kernel to stop when the demo dies
(``PR_SET_PDEATHSIG`` on Linux), even by SIGKILL.

A child that exits while the demo runs is a :class:`ComponentDied`: one line
naming it and its exit status, plus the last lines of its log.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import DriftlineError

STOP_GRACE_S = 5.0
RUN_MARKER = "DRIFTLINE_DEMO_RUN"
_PR_SET_PDEATHSIG = 1


class ComponentDied(DriftlineError):
    """A child process exited, or never became ready."""

    def __init__(self, name: str, message: str, log_tail: str) -> None:
        super().__init__(f"{name} {message}")
        self.name, self.log_tail = name, log_tail


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 12, max_bytes: int = 32 * 1024) -> str:
    """The last ``lines`` lines of a file ('' when it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One started process."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        return tail(self.log, lines)

    def died(self, doing: str) -> ComponentDied:
        rc = self.popen.poll()
        state = "is still running" if rc is None else f"exited with status {rc}"
        return ComponentDied(self.name, f"{state} while {doing} (log: {self.log})", self.log_tail())

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM to the child's session, SIGKILL after ``grace`` seconds; reaped either way."""
        if self.popen.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue


class Supervisor:
    """Starts children, checks they live, and stops them all (newest first)."""

    def __init__(self, run_dir: Path, marker: str) -> None:
        self.logs = run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.marker = marker
        self.children: list[Child] = []

    def start(self, name: str, args: Sequence[str], *, env: Mapping[str, str] | None = None,
              unset: Sequence[str] = (), cwd: Path | None = None) -> Child:
        log = self.logs / f"{name}.log"
        child_env = {k: v for k, v in os.environ.items() if k not in unset}
        child_env.update({**(env or {}), RUN_MARKER: self.marker, "PYTHONUNBUFFERED": "1"})
        with log.open("ab") as out:
            try:
                popen = subprocess.Popen(  # noqa: S603 - our own argv
                    list(args), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env=child_env, cwd=cwd, start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            except OSError as exc:
                raise ComponentDied(name, f"could not start: {exc.strerror or exc}", "") from None
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, probe: Callable[[], bool], timeout: float) -> None:
        """Poll ``probe`` until it is true; ComponentDied if the child exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not child.alive():
                raise child.died("starting")
            with contextlib.suppress(OSError):
                if probe():
                    return
            if time.monotonic() > deadline:
                raise child.died(f"starting: not ready after {timeout:g} s")
            time.sleep(0.1)

    def check(self) -> None:
        """ComponentDied for the first child that has exited."""
        for child in self.children:
            if not child.alive():
                raise child.died("the demo ran")

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()

    def pids(self) -> list[int]:
        return [child.popen.pid for child in self.children]
