"""``driftline remediate``'s HTTP API (the only FastAPI import in ``alerts``).

=====================================  ===============================================
``POST /alerts``                       Alertmanager's webhook (version 4); bearer token
``GET /actions``                       the audit trail, newest first (?model, ?outcome, ?limit)
``GET /actions/{id}``                  one decision
``POST /actions/{id}/approve``         carry out a pending decision; bearer token
``GET /healthz``, ``GET /readyz``      liveness, readiness
``GET /metrics``                       Prometheus metrics
=====================================  ===============================================

``POST /alerts`` answers 401 without the right token (compared in constant time),
400 for a malformed or oversized body (nothing is decided: the payload is parsed
whole first), and 200 with the decisions otherwise.  Errors are JSON
``{"detail": "<one line>"}``; an unexpected error is logged and answered with a
one-line 500, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from alerts import webhook
from alerts.audit import to_dict
from alerts.remediator import NotPending, Remediator, UnknownDecision
from alerts.types import OUTCOMES
from monitor import __version__
from monitor.errors import InputError, UsageError
from monitor.runtime import exposition

log = logging.getLogger(__name__)

TOKEN_ENV = "DRIFTLINE_REMEDIATE_TOKEN_FILE"


class TokenFile:
    """The bearer token, read from a file (Alertmanager's ``credentials_file`` holds the
    same one); read again when the file changes, so a rotated Secret needs no restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._token = b""
        self._load()

    @classmethod
    def resolve(cls, configured: Path | None) -> TokenFile:
        """From ``DRIFTLINE_REMEDIATE_TOKEN_FILE``, else ``remediate.token_file``;
        :class:`UsageError` (one line) when neither is set or the file is unusable."""
        env = os.environ.get(TOKEN_ENV)
        path = Path(env) if env else configured
        if path is None:
            raise UsageError(f"no token: set remediate.token_file in the config or {TOKEN_ENV} "
                             "(the file Alertmanager's credentials_file names)")
        return cls(path)

    def _load(self) -> None:
        try:
            stat = self.path.stat()
            token = self.path.read_bytes().strip()
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read the token file ({exc.strerror or exc})") from None
        if not token:
            raise UsageError(f"{self.path}: the token file is empty")
        self._stamp, self._token = (stat.st_mtime_ns, stat.st_size), token

    def matches(self, header: str | None) -> bool:
        if header is None or not header.startswith("Bearer "):
            return False
        with self._lock:
            try:
                stat = self.path.stat()
                if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                    self._load()
            except (OSError, UsageError) as exc:
                log.warning("token file: %s; keeping the token read before", exc)
            token = self._token
        return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token)


def create_app(remediator: Remediator, token: TokenFile) -> FastAPI:
    app = FastAPI(title="driftline remediate", version=__version__,
                  description="Alertmanager receiver: policy, then Kubernetes actions.")
    limit = remediator.config.remediate.max_body_bytes
    metrics = remediator.metrics

    def unauthorized() -> JSONResponse:
        metrics.webhooks.labels(result="unauthorized").inc()
        return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="driftline-remediate"'})

    @app.post("/alerts", tags=["alertmanager"], summary="Alertmanager webhook (version 4)")
    async def alerts(request: Request) -> JSONResponse:
        if not token.matches(request.headers.get("authorization")):
            return unauthorized()
        body = await _read_limited(request, limit)
        if body is None:
            metrics.webhooks.labels(result="oversize").inc()
            return JSONResponse({"detail": f"body larger than {limit} bytes (remediate.max_body_bytes)"},
                                status_code=400)
        try:
            parsed = webhook.parse(body)
        except InputError as exc:
            metrics.webhooks.labels(result="malformed").inc()
            log.warning("rejected a webhook: %s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=400)
        metrics.webhooks.labels(result="accepted").inc()
        try:
            decisions = await run_in_threadpool(remediator.handle, parsed)
        except Exception as exc:  # a bug: logged with its traceback, answered in one line
            log.exception("handling a webhook failed")
            return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the log"},
                                status_code=500)
        return JSONResponse({"decisions": [to_dict(d) for d in decisions]})

    @app.get("/actions", tags=["audit"], summary="The audit trail, newest first")
    def actions(model: str | None = None,
                outcome: Annotated[str | None, Query(pattern="^(" + "|".join(OUTCOMES) + ")$")] = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
        return {"actions": [to_dict(d) for d in remediator.audit.latest(model=model, outcome=outcome,
                                                                         limit=limit)]}

    @app.get("/actions/{decision_id}", tags=["audit"], summary="One decision")
    def action(decision_id: str) -> JSONResponse:
        decision = remediator.audit.get(decision_id)
        if decision is None:
            return JSONResponse({"detail": f"no decision {decision_id!r}"}, status_code=404)
        return JSONResponse(to_dict(decision))

    @app.post("/actions/{decision_id}/approve", tags=["audit"], summary="Carry out a pending decision")
    async def approve(decision_id: str, request: Request) -> JSONResponse:
        if not token.matches(request.headers.get("authorization")):
            return unauthorized()
        try:
            decision = await run_in_threadpool(remediator.approve, decision_id)
        except UnknownDecision:
            return JSONResponse({"detail": f"no decision {decision_id!r}"}, status_code=404)
        except NotPending as exc:
            return JSONResponse({"detail": str(exc)}, status_code=409)
        except Exception as exc:
            log.exception("approving %s failed", decision_id)
            return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the log"},
                                status_code=500)
        return JSONResponse(to_dict(decision))

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> dict[str, str]:
        mode = "no cluster: every action is a dry run" if remediator.cluster is None else "cluster"
        return {"status": "ready", "detail": mode}

    @app.get("/metrics", tags=["health"])
    def prometheus(request: Request) -> Response:
        body, content_type = exposition(metrics.registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return app


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (stops reading there)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
