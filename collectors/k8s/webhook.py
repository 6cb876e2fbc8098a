"""``driftline webhook``: a mutating admission webhook that attaches the collector to pods.

The API server POSTs an ``admission.k8s.io/v1`` AdmissionReview to ``/mutate``
for every pod created in a namespace labelled ``driftline.io/inject: enabled``
(see ``k8s/webhook``).  Pods annotated ``driftline.io/inject: "true"`` are
answered with a JSONPatch that adds the collector exactly as ``driftline
inject`` would (:func:`collectors.k8s.inject.inject_pod_template`, with the pod's
``driftline.io/*`` annotations); every other pod, and a pod that already has
the collector, is allowed unchanged.  A pod that cannot be injected (no port,
no model name, a bad annotation) is allowed unchanged too, with a warning the
client sees (``kubectl`` prints it): the webhook never blocks a pod.

A body that is not an AdmissionReview is answered 400 with one line of text.
No request raises: an unexpected failure is logged and the pod allowed as it
is, which is also what ``failurePolicy: Ignore`` does when the webhook is down.

Why aiohttp, not FastAPI: FastAPI is imported by ``monitor/service/api.py`` alone (one
module per third-party client), and aiohttp already serves the collector.
Why a small patch generator rather than ``jsonpatch.make_patch``: the change is
additive (a container appended, annotations added), and ``make_patch``'s
move detection has open bugs that produce patches which do not apply;
:func:`json_patch` only emits ``add``, ``remove`` and ``replace``.

TLS: :func:`serve_webhook` reloads the certificate and key when their files
change (cert-manager renews the Secret, the kubelet updates the mount), so new
connections get the new certificate without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import logging
import os
import signal
import ssl
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from collectors.k8s.inject import INJECT_ANNOTATION, InjectOptions, inject_pod_template, is_injected
from monitor.errors import InputError, PortInUse, UsageError

log = logging.getLogger("driftline.webhook")

API_VERSION = "admission.k8s.io/v1"
MAX_BODY_BYTES = 16 << 20  # an AdmissionReview holds at most a few MiB (object + oldObject)
_MAX_WARNING = 240

JSON = dict[str, Any]


class MalformedReview(ValueError):
    """The body is not an ``admission.k8s.io/v1`` AdmissionReview request (one-line message)."""


def json_patch(old: Any, new: Any, path: str = "") -> list[JSON]:
    """An RFC 6902 patch that turns ``old`` into ``new``: objects are compared key by key,
    a list that only grew at its end gets ``add`` operations, anything else is replaced."""
    ops: list[JSON] = []
    _diff(old, new, path, ops)
    return ops


def review_response(review: Any, options: InjectOptions) -> JSON:
    """The AdmissionReview answering ``review`` (pure).  Raises :class:`MalformedReview`."""
    if not isinstance(review, Mapping):
        raise MalformedReview("the body is not a JSON object")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != "AdmissionReview":
        raise MalformedReview(f"expected apiVersion {API_VERSION} and kind AdmissionReview; got "
                              f"{_short(review.get('apiVersion'))} {_short(review.get('kind'))}")
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReview("the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing")
    response: JSON = {"uid": uid, "allowed": True}
    answer = {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
    kind = request.get("kind")
    if not (isinstance(kind, Mapping) and kind.get("kind") == "Pod" and not kind.get("group")) \
            or request.get("operation") != "CREATE" or request.get("subResource"):
        return answer
    pod = request.get("object")
    if not isinstance(pod, Mapping) or not isinstance(pod.get("spec"), Mapping):
        raise MalformedReview("request.object is not a Pod")
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    wanted = annotations.get(INJECT_ANNOTATION) if isinstance(annotations, Mapping) else None
    if str(wanted).strip().lower() != "true" or is_injected(pod["spec"]):
        return answer
    where = _pod_name(request, pod)
    try:
        patched = inject_pod_template(pod, options)
    except InputError as exc:
        log.warning("%s: collector not injected: %s", where, exc)
        response["warnings"] = [_clip(f"driftline: collector not injected: {exc}")]
        return answer
    patch = json_patch(pod, patched)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
        log.info("%s: collector injected", where)
    return answer


def webhook_app(options: InjectOptions) -> web.Application:
    """``POST /mutate`` (AdmissionReview in, AdmissionReview out) and ``GET /healthz``."""

    async def mutate(request: web.Request) -> web.Response:
        try:
            review = json.loads(await request.read())
        except (ValueError, RecursionError):
            return _bad_request("the body is not JSON")
        try:
            return web.json_response(review_response(review, options))
        except MalformedReview as exc:
            return _bad_request(str(exc))
        except Exception as exc:  # a bug: never fail the API server's request for it
            log.exception("unexpected failure answering an AdmissionReview")
            part = review.get("request") if isinstance(review, dict) else None
            uid = part.get("uid") if isinstance(part, dict) else None
            if not isinstance(uid, str):
                return _bad_request("the AdmissionReview could not be read")
            warning = _clip(f"driftline: collector not injected: internal error {type(exc).__name__}")
            return web.json_response({"apiVersion": API_VERSION, "kind": "AdmissionReview",
                                      "response": {"uid": uid, "allowed": True, "warnings": [warning]}})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context; an unreadable certificate or key is an InputError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, certfile, keyfile)
    return context


async def serve_webhook(host: str, port: int, certfile: str, keyfile: str, options: InjectOptions,
                        *, stop: asyncio.Event | None = None, started: asyncio.Event | None = None,
                        reload_interval_s: float = 30.0) -> None:
    """Serve :func:`webhook_app` over HTTPS until ``stop`` is set (without one: until SIGTERM or
    SIGINT).  ``started`` is set once the socket listens.  The certificate and key are
    reloaded when their files change, checked every ``reload_interval_s`` seconds."""
    context = tls_context(certfile, keyfile)
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            signals.append(sig)
    runner = web.AppRunner(webhook_app(options), access_log=None)
    reloader = asyncio.create_task(_reload(context, certfile, keyfile, reload_interval_s))
    try:
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=context).start()
        except OSError as exc:  # a taken port is one line, not a traceback of the loop's bind
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(host, port) from None
            raise
        log.info("admission webhook listening on https://%s:%d/mutate", host, port)
        if started is not None:
            started.set()
        await stop.wait()
        log.info("stopping the admission webhook")
    finally:
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
        await runner.cleanup()
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_webhook(listen: str, cert: str, key: str, options: InjectOptions) -> None:
    """``driftline webhook --listen HOST:PORT --tls-cert CERT --tls-key KEY``: serve until
    SIGTERM.  A bad ``listen`` is a UsageError, an unreadable certificate an InputError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen must be HOST:PORT, e.g. 0.0.0.0:8443; got {listen!r}")
    tls_context(cert, key)  # fail with one line before the loop starts
    asyncio.run(serve_webhook(host.strip("[]") or "0.0.0.0", int(port), cert, key, options))


# --- internals ------------------------------------------------------------------------------------

def _diff(old: Any, new: Any, path: str, ops: list[JSON]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}"})
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": value})
            else:
                _diff(old[key], value, f"{path}/{_escape(key)}", ops)
    elif isinstance(old, list) and isinstance(new, list) and len(new) >= len(old) \
            and all(_same(a, b) for a, b in zip(old, new, strict=False)):
        for i in range(len(old), len(new)):
            ops.append({"op": "add", "path": f"{path}/{i}", "value": new[i]})
    elif not _same(old, new):
        ops.append({"op": "replace", "path": path, "value": new})


def _same(a: Any, b: Any) -> bool:
    """JSON equality: unlike ``==``, ``1``, ``1.0`` and ``true`` differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _bad_request(message: str) -> web.Response:
    return web.Response(status=400, text=f"malformed AdmissionReview: {' '.join(message.split())}\n")


def _short(value: Any) -> str:
    return _clip(repr(value), 60)


def _clip(text: str, limit: int = _MAX_WARNING) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pod_name(request: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    name = request.get("name") or metadata.get("name") or f"{metadata.get('generateName') or ''}*"
    return f"pod {request.get('namespace') or metadata.get('namespace') or '?'}/{name}"


def _load(context: ssl.SSLContext, certfile: str, keyfile: str) -> None:
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot load the TLS certificate {certfile} and key {keyfile}: "
                         f"{' '.join(str(reason).split())}") from None


def _stamp(*paths: str) -> tuple[tuple[int, int], ...]:
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
            stamps.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append((0, -1))
    return tuple(stamps)


async def _reload(context: ssl.SSLContext, certfile: str, keyfile: str, interval_s: float) -> None:
    seen = _stamp(certfile, keyfile)
    while True:
        await asyncio.sleep(interval_s)
        now = _stamp(certfile, keyfile)
        if now == seen:
            continue
        try:
            _load(context, certfile, keyfile)
        except InputError as exc:  # half-written files: try again at the next tick
            log.warning("keeping the current TLS certificate: %s", exc)
            continue
        seen = now
        log.info("reloaded the TLS certificate %s", certfile)
