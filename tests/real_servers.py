"""Real model servers for tests, run as a user runs them: the ``kserve`` ModelServer and
``mlflow models serve`` (issue 15).

Their dependency pins clash with driftline's (mlflow 3.x pulls pandas 3, ours is below 3),
so each server lives in its own virtualenv under a cache directory
(``$DRIFTLINE_SERVER_VENVS``, default ``~/.cache/driftline-test-servers``), one per
``<name>-<version>``:

* created on first use, with ``pip install`` of the pinned requirements (bounded in time;
  a failed install raises :class:`InstallError` with one line that says what failed and
  where the full log is);
* reused when it already holds the pinned version (a marker file, written last, records the
  requirements it was built from; the installed version is checked too);
* guarded by a file lock, so parallel test runs never build the same venv twice;
* pip may take ``torch`` only as 2.13.0 (a constraint file), the version driftline pins:
  neither kserve nor mlflow depends on it, and a CUDA build must never come in by a side door;
* compiled to bytecode once, at install (``compileall``): with ``PYTHONDONTWRITEBYTECODE=1``
  in the environment, as here, ``import mlflow`` takes 13 s from source and 3 s compiled, and
  every server start and model save pays it.

The servers listen on free loopback ports only, are polled until ready and are stopped for
sure (SIGTERM, then SIGKILL, of their whole process group) by :class:`tests.servers.Process`.

The fixtures ``kserve_server`` and ``mlflow_server`` (module scope) are imported by the test
modules that need them.  If a server can't be installed they fail, they never skip: CI must
show it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import Process, ServerError, free_port

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
KSERVE_SCRIPT = FIXTURES / "kserve_models.py"
MLFLOW_SCRIPT = FIXTURES / "mlflow_models.py"

# The newest releases installable here (kserve 0.21.0; mlflow 3.18.0 needs mlflow-tracing
# 3.18.0, which the index does not have, so 3.17.2).
KSERVE_VERSION = "0.21.0"
MLFLOW_VERSION = "3.17.2"
TORCH_PIN = "torch==2.13.0"
INSTALL_TIMEOUT_S = float(os.environ.get("DRIFTLINE_SERVER_INSTALL_TIMEOUT", "900"))
LOCK_TIMEOUT_S = INSTALL_TIMEOUT_S + 60
START_TIMEOUT_S = 120.0
# bump when what a ready venv holds changes (2: compiled to bytecode)
VENV_LAYOUT = 2


class InstallError(ServerError):
    """A server's virtualenv could not be created or its packages installed."""


@dataclass(frozen=True)
class ServerVenv:
    """A pinned set of requirements installed into its own virtualenv."""

    name: str
    version: str
    requirements: tuple[str, ...]
    # (distribution, version) pairs that must be installed for the venv to be reused
    checks: tuple[tuple[str, str], ...]

    @property
    def path(self) -> Path:
        return cache_dir() / f"{self.name}-{self.version}"

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name


KSERVE = ServerVenv("kserve", KSERVE_VERSION, (f"kserve=={KSERVE_VERSION}",),
                    (("kserve", KSERVE_VERSION),))
# scikit-learn for the saved sklearn model; mlflow's own pins choose pandas (3.x) and numpy.
MLFLOW = ServerVenv("mlflow", MLFLOW_VERSION, (f"mlflow=={MLFLOW_VERSION}", "scikit-learn>=1.5"),
                    (("mlflow", MLFLOW_VERSION),))


def cache_dir() -> Path:
    configured = os.environ.get("DRIFTLINE_SERVER_VENVS")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "driftline-test-servers"


@contextlib.contextmanager
def _locked(lock_path: Path, timeout: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path``, waited for at most ``timeout`` seconds."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InstallError(f"another run held {lock_path} for more than {timeout:g} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _marker(venv: ServerVenv) -> Path:
    return venv.path / ".driftline-venv.json"


def _ready(venv: ServerVenv) -> bool:
    """The venv holds exactly what ``venv`` pins: its marker matches and the versions check."""
    try:
        marker = json.loads(_marker(venv).read_text())
    except (OSError, ValueError):
        return False
    if (marker.get("requirements") != list(venv.requirements) or marker.get("layout") != VENV_LAYOUT
            or not venv.python.exists()):
        return False
    script = ("import importlib.metadata as m, json, sys; "
              "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))")
    try:
        done = subprocess.run([venv.python, "-c", script, *(d for d, _ in venv.checks)],
                              capture_output=True, text=True, timeout=60)
        found = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return False
    return all(found.get(dist) == version for dist, version in venv.checks)


def _last_error(log: Path) -> str:
    """The line of a pip log that says what went wrong (its last ERROR line, else its last line)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["(no output)"])[-1]


def _run_logged(args: list[str], log: Path, deadline: float, what: str, venv: ServerVenv) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise InstallError(f"{venv.name}: no time left for {what} (limit {INSTALL_TIMEOUT_S:g} s)")
    with log.open("ab") as out:
        out.write(f"$ {' '.join(args)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=remaining, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                                                          "PIP_NO_INPUT": "1"})
        except subprocess.TimeoutExpired:
            raise InstallError(f"{venv.name}: {what} did not finish within {INSTALL_TIMEOUT_S:g} s "
                               f"(log: {log})") from None
    if done.returncode != 0:
        raise InstallError(f"{venv.name}: {what} failed (exit {done.returncode}): {_last_error(log)} "
                           f"(log: {log})")


_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="server-venv")
_INSTALLS: dict[str, concurrent.futures.Future[float | None]] = {}
_INSTALLS_LOCK = threading.Lock()


def installed(venv: ServerVenv) -> float | None:
    """:func:`ensure_venv` for ``venv``, once per test process; the first call starts every
    server's install at once (about 2 and 3 minutes apart, 3 or so side by side), so a run
    that needs both pays for the longer one only."""
    with _INSTALLS_LOCK:
        for each in (venv, KSERVE, MLFLOW):
            if each.name not in _INSTALLS:
                _INSTALLS[each.name] = _POOL.submit(ensure_venv, each)
    return _INSTALLS[venv.name].result()


def _site_packages(venv: ServerVenv) -> list[str]:
    return [str(p) for p in sorted((venv.path / "lib").glob("python*/site-packages"))]


def ensure_venv(venv: ServerVenv) -> float | None:
    """Create and fill ``venv`` unless it is ready; returns the seconds spent installing, or
    None when an existing venv was reused.  Raises :class:`InstallError` on failure."""
    if _ready(venv):
        return None
    lock = venv.path.with_name(venv.path.name + ".lock")
    with _locked(lock, LOCK_TIMEOUT_S):
        if _ready(venv):  # built by the run that held the lock
            return None
        t0 = time.monotonic()
        deadline = t0 + INSTALL_TIMEOUT_S
        shutil.rmtree(venv.path, ignore_errors=True)
        venv.path.parent.mkdir(parents=True, exist_ok=True)
        log = venv.path.with_name(venv.path.name + ".install.log")
        log.write_text("")
        base = getattr(sys, "_base_executable", sys.executable)
        _run_logged([base, "-m", "venv", str(venv.path)], log, deadline, "python -m venv", venv)
        constraints = venv.path / "driftline-constraints.txt"
        constraints.write_text(f"# pip may take torch only as the version driftline pins\n{TORCH_PIN}\n")
        _run_logged([str(venv.python), "-m", "pip", "install", "-q", "--no-compile",
                     "-c", str(constraints), *venv.requirements],
                    log, deadline, f"pip install {' '.join(venv.requirements)}", venv)
        with contextlib.suppress(InstallError):  # a few packages ship files that don't compile
            _run_logged([str(venv.python), "-m", "compileall", "-q", "-j", "0",
                         *_site_packages(venv)], log, deadline, "compileall", venv)
        elapsed = time.monotonic() - t0
        _marker(venv).write_text(json.dumps({"requirements": list(venv.requirements), "layout": VENV_LAYOUT,
                                             "install_s": round(elapsed, 1)}) + "\n")
        if not _ready(venv):
            raise InstallError(f"{venv.name}: installed, but {venv.checks} do not match "
                               f"what {venv.python} reports (log: {log})")
        return elapsed


@dataclass
class RealServer:
    """A running real model server.  ``models`` maps each model to the base URL serving it
    (``url`` is the first of them)."""

    name: str
    version: str
    models: dict[str, str]
    install_s: float | None  # None: the cached venv was reused
    processes: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return next(iter(self.models.values()))

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.terminate()


def start_kserve(workdir: Path) -> RealServer:
    """``tests/fixtures/kserve_models.py`` (a ``kserve.ModelServer`` serving ``sum`` and
    ``multi``) on a free loopback HTTP port, gRPC off; waits until both models are ready."""
    install_s = installed(KSERVE)
    port = free_port()
    proc = Process([KSERVE.python, KSERVE_SCRIPT, "--http_port", str(port)], workdir,
                   name=f"kserve-{port}", env={"PYTHONUNBUFFERED": "1"}, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        for model in ("sum", "multi"):
            proc.wait_http(f"{url}/v2/models/{model}/ready", timeout=START_TIMEOUT_S)
    except BaseException:
        proc.terminate()
        raise
    return RealServer("kserve", KSERVE_VERSION, {"sum": url, "multi": url}, install_s, [proc])


def save_mlflow_models(workdir: Path) -> dict[str, Path]:
    """The sklearn and pyfunc models saved by ``tests/fixtures/mlflow_models.py`` with the mlflow
    venv's python; their directories.  Saved once per version of that script, inside the venv
    (under the venv's lock: saving takes 20-70 s, most of it importing mlflow and sklearn)."""
    digest = hashlib.sha256(MLFLOW_SCRIPT.read_bytes()).hexdigest()[:16]
    out = MLFLOW.path / "driftline-models" / digest
    found = {"sklearn": out / "sklearn", "pyfunc": out / "pyfunc"}
    done_marker = out / ".saved"
    lock = MLFLOW.path.with_name(MLFLOW.path.name + ".lock")
    with _locked(lock, LOCK_TIMEOUT_S):
        if done_marker.exists():
            return found
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        log = workdir / "mlflow-save.log"
        env = {**os.environ, "MLFLOW_TRACKING_URI": (workdir / "mlruns").as_uri()}
        with log.open("wb") as handle:
            try:
                done = subprocess.run([MLFLOW.python, MLFLOW_SCRIPT, str(out)], stdout=handle,
                                      stderr=subprocess.STDOUT, timeout=300, cwd=workdir, env=env)
            except subprocess.TimeoutExpired:
                raise ServerError(f"saving the mlflow models took over 300 s (log: {log})") from None
        if done.returncode != 0:
            raise ServerError(f"saving the mlflow models failed (exit {done.returncode}): "
                              f"{_last_error(log)} (log: {log})")
        done_marker.write_text(f"{MLFLOW_SCRIPT.name} {digest}\n")
    return found


def start_mlflow(workdir: Path) -> RealServer:
    """``mlflow models serve --env-manager local`` for each saved model, on free loopback ports;
    both start at once (each takes 10-40 s to import mlflow twice and load its model)."""
    install_s = installed(MLFLOW)
    models = save_mlflow_models(workdir)
    server = RealServer("mlflow", MLFLOW_VERSION, {}, install_s)
    try:
        for name, model_dir in models.items():
            port = free_port()
            server.processes.append(Process(
                [MLFLOW.bin("mlflow"), "models", "serve", "--env-manager", "local", "-m", model_dir,
                 "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                workdir, name=f"mlflow-{name}-{port}", cwd=workdir,
                # mlflow execs `uvicorn` from PATH for its scoring server: the venv's
                env={"PATH": f"{MLFLOW.path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                     "VIRTUAL_ENV": str(MLFLOW.path), "PYTHONUNBUFFERED": "1"}))
            server.models[name] = f"http://127.0.0.1:{port}"
        for proc, url in zip(server.processes, server.models.values(), strict=True):
            proc.wait_http(f"{url}/ping", timeout=START_TIMEOUT_S)
    except BaseException:
        server.stop()
        raise
    return server


def _started(kind: str, start: object, workdir: Path) -> RealServer:
    try:
        server = start(workdir)  # type: ignore[operator]
    except InstallError as e:
        pytest.fail(f"{kind} could not be installed: {e}", pytrace=False)
    assert isinstance(server, RealServer)
    took = "reused" if server.install_s is None else f"installed in {server.install_s:.1f} s"
    print(f"\n{kind} {server.version}: venv {took}; serving {server.models}")
    return server


@pytest.fixture(scope="module")
def kserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """A real ``kserve.ModelServer`` with the models ``sum`` and ``multi``."""
    server = _started("kserve", start_kserve, tmp_path_factory.mktemp("kserve"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """Real ``mlflow models serve`` processes: ``models["sklearn"]`` and ``models["pyfunc"]``."""
    server = _started("mlflow", start_mlflow, tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()


def _prepare() -> int:
    """``python -m tests.real_servers --prepare``: build both servers' venvs now (``.ci/test``
    starts it in the background, so the installs overlap the linters and the first tests; the
    fixtures then wait on the lock instead of installing)."""
    failed = 0
    futures = [(v.name, _POOL.submit(ensure_venv, v)) for v in (KSERVE, MLFLOW)]  # side by side
    for name, future in futures:
        try:
            spent = future.result()
        except InstallError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failed = 1
            continue
        print(f"{name}: {'reused' if spent is None else f'installed in {spent:.0f} s'}")
    return failed


if __name__ == "__main__":
    if sys.argv[1:] != ["--prepare"]:
        sys.exit("usage: python -m tests.real_servers --prepare")
    sys.exit(_prepare())
