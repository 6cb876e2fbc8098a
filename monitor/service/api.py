"""The monitor's HTTP API: health, Prometheus metrics, drift results and uploads.

:func:`create_app` builds a FastAPI app over a
:class:`~monitor.streaming.status.ServiceControl` (what the running service
exposes) and a Prometheus registry (:func:`monitor.service.export.make_registry`).
The app keeps no state of its own: every request reads the current
:class:`~monitor.streaming.status.ServiceStatus` or asks the control.

Errors are JSON ``{"detail": "<one line>"}``.  The typed errors of
:mod:`monitor.errors` are mapped here once, by exception handlers:

=============================  ==========================================
UnknownModel                   404, the configured models named
NotOwnedHere                   404, the owner named as precisely as known
NotReady, TemporaryError       503 with ``Retry-After`` (seconds)
InputError, ProfileError       400
ConfigError                    422 (``/config/reload``: the old config stays)
=============================  ==========================================

Besides those: 404 for a model with no evaluated window yet, 415 for an
unsupported body type, 409 for a report of a window without values, 503 from
``/readyz`` while starting and from ``/models/{model}/report`` when Evidently
is not available.  Anything else that escapes a handler (a ``KeyError``
included) is a bug: it is logged with its traceback and answered with a
one-line 500, never the traceback itself.

This module is the only one importing FastAPI; it reaches prometheus_client only
through :mod:`monitor.service.export`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor import __version__
from monitor.config import ConfigError
from monitor.errors import (
    DriftlineError,
    InputError,
    NotOwnedHere,
    ProfileError,
    TemporaryError,
    UnknownModel,
    one_line,
)
from monitor.runtime import exposition
from monitor.service.export import CollectorRegistry
from monitor.streaming.status import ModelStatus, ServiceControl, ServiceStatus

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

#: Media types accepted by ``POST /labels`` (aliases map to the name passed to the control).
LABEL_MEDIA_TYPES: dict[str, str] = {
    "application/json": "application/json",
    "application/msgpack": "application/msgpack",
    "application/x-msgpack": "application/msgpack",
}
MAX_HISTORY = 1000
_MAX_ECHO = 80  # longest piece of a request echoed back in an error message


# --------------------------------------------------------------------------- response bodies


class ErrorBody(BaseModel):
    """An error: one line saying what went wrong and, where possible, what to do."""

    detail: str = Field(examples=["unknown model 'credit'; configured models: 'credit-default'"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    detail: str


class ModelSummary(BaseModel):
    """One configured model as this replica sees it; window fields are null when it is not owned here."""

    name: str
    owned: bool = Field(description="whether this replica consumes the model's partition")
    window_rows: int | None = Field(description="rows in the window that closes next")
    window_fill: float | None = Field(description="how full (0..1) that window is")
    evaluated_at: float | None = Field(description="epoch seconds of the latest evaluated window")
    drift_detected: bool | None = Field(description="dataset drift in the latest evaluated window")


class ModelList(BaseModel):
    models: list[ModelSummary]


class InvalidConfig(BaseModel):
    detail: str = Field(examples=["invalid config, old config kept"])
    errors: list[str] = Field(description="every problem, as 'file:line: key.path: message'")


# --------------------------------------------------------------------------- OpenAPI pieces

_LABEL_BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "a label batch of the wire contract",
    "required": ["schema", "model", "labels"],
    "properties": {
        "schema": {"type": "integer", "enum": [1]},
        "model": {"type": "string"},
        "labels": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["request_id", "ts", "target"],
                "properties": {
                    "request_id": {"type": "string"},
                    "ts": {"type": "integer", "description": "epoch milliseconds"},
                    "target": {"description": "the ground truth: a class or a number"},
                },
            },
        },
    },
}
_BINARY: dict[str, Any] = {"type": "string", "format": "binary"}

_LABELS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A label batch, JSON or msgpack (the same structure).",
        "content": {
            "application/json": {"schema": _LABEL_BATCH_SCHEMA},
            "application/msgpack": {"schema": _BINARY},
        },
    }
}
_REFERENCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A saved reference profile, as written by `driftline profile`.",
        "content": {"application/octet-stream": {"schema": _BINARY}},
    }
}
_TEXT: dict[str, Any] = {"schema": {"type": "string"}}


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


def _error_outside_json(description: str) -> dict[str, Any]:
    """An ErrorBody response on a route whose own class is not JSON (``model`` would take its media type)."""
    schema = {"$ref": "#/components/schemas/ErrorBody"}  # registered by the JSON routes' ``model``
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MODEL_404 = _error("the model is unknown, owned by another replica, or has no evaluated window yet")
_NOT_CONNECTED_503: dict[str, Any] = {
    **_error("not connected to Kafka yet, or Kafka did not take the write; retry later"),
    "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer"}}},
}
#: the owner named when the status does not say more (e.g. before any assignment)
_SOMEWHERE_ELSE = "its partition is assigned there"

ModelName = Annotated[str, Path(description="a model name from the config")]


# --------------------------------------------------------------------------- helpers


def _quote(value: object) -> str:
    """A request value for an error message: quoted, escaped, shortened."""
    text = str(value)
    if len(text) > _MAX_ECHO:
        text = text[:_MAX_ECHO] + "..."
    return repr(text)


def _json_ready(value: Any) -> Any:
    """Plain JSON values: NaN and infinities become null (as ``check --format json``),
    numpy scalars and arrays become Python values, tuples become lists, keys become strings."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes | bytearray):
        return [_json_ready(item) for item in value]
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # numpy scalars and arrays
        return _json_ready(tolist())
    return str(value)


def _owned_model(status: ServiceStatus, model: str) -> ModelStatus:
    """The model's status on this replica; UnknownModel or NotOwnedHere when there is none."""
    owned = status.models.get(model)
    if owned is not None:
        return owned
    if model not in status.configured_models:
        raise UnknownModel(model, status.configured_models)
    raise NotOwnedHere(model, status.owners.get(model, _SOMEWHERE_ELSE))


def _evaluated_model(status: ServiceStatus, model: str) -> ModelStatus:
    owned = _owned_model(status, model)
    if owned.latest is None:
        raise HTTPException(
            404,
            f"model {_quote(model)} has no evaluated window yet: {owned.window_rows} rows in the first "
            f"window, {owned.window_fill:.0%} full")
    return owned


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


class _InternalErrors:
    """Answers an exception that escaped every handler with a one-line 500, after logging it.

    Starlette's own last-resort handler re-raises after answering (so servers log twice and
    test clients raise); this middleware logs once and keeps tracebacks out of responses.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late to answer: let the server close the connection
                raise
            body = {"detail": f"internal error ({type(exc).__name__}); the service log has the details"}
            await JSONResponse(body, status_code=500)(scope, receive, send)


# --------------------------------------------------------------------------- errors, mapped once


def _detail(status_code: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status_code, headers=headers)


def _map_errors(app: FastAPI) -> None:
    """The HTTP answer of each typed error, wherever in a route it is raised."""

    @app.exception_handler(UnknownModel)
    def unknown_model(_: Request, exc: UnknownModel) -> JSONResponse:
        # the configured models, without the error's "did you mean": the answer stays as it was
        known = ", ".join(repr(name) for name in exc.known) or "none"
        return _detail(404, f"unknown model {_quote(exc.model)}; configured models: {known}")

    @app.exception_handler(NotOwnedHere)
    def not_owned_here(_: Request, exc: NotOwnedHere) -> JSONResponse:
        return _detail(404, one_line(exc))

    @app.exception_handler(TemporaryError)  # NotReady included
    def temporary(_: Request, exc: TemporaryError) -> JSONResponse:
        return _detail(503, one_line(exc), {"Retry-After": str(max(1, math.ceil(exc.delay_s)))})

    @app.exception_handler(ConfigError)
    def invalid_config(_: Request, exc: ConfigError) -> JSONResponse:
        body = InvalidConfig(detail="invalid config, old config kept",
                             errors=[str(issue) for issue in exc.issues] or [one_line(exc)])
        return JSONResponse(body.model_dump(), status_code=422)

    @app.exception_handler(InputError)
    @app.exception_handler(ProfileError)
    def bad_input(_: Request, exc: DriftlineError) -> JSONResponse:
        return _detail(400, one_line(exc))


# --------------------------------------------------------------------------- the app


def create_app(control: ServiceControl, registry: CollectorRegistry) -> FastAPI:
    """The HTTP API over ``control``, with ``/metrics`` rendered from ``registry``."""
    app = FastAPI(
        title="driftline monitor",
        version=__version__,
        description="Drift and performance monitoring of served ML models: results, metrics, uploads.",
    )
    app.add_middleware(_InternalErrors)
    _map_errors(app)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness: the process answers")
    def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["health"],
        summary="Readiness: the service is consuming and evaluating",
        responses={503: {"model": Readiness, "description": "not ready yet; the body says why"}},
    )
    def readyz() -> Readiness | JSONResponse:
        status = control.status()
        if status.ready:
            return Readiness(
                status="ready",
                detail=f"ready; this replica owns {len(status.models)} of "
                       f"{len(status.configured_models)} configured models")
        body = Readiness(
            status="not ready",
            detail="not ready: the monitor is still starting (joining the consumer group, restoring "
                   "window state or loading reference profiles)")
        return JSONResponse(body.model_dump(), status_code=503)

    @app.get(
        "/metrics",
        response_class=Response,
        tags=["health"],
        summary="Prometheus metrics (text format, or OpenMetrics when asked for in Accept)",
        responses={200: {"description": "the exposition",
                         "content": {"text/plain": _TEXT, "application/openmetrics-text": _TEXT}}},
    )
    def metrics(request: Request) -> Response:
        body, content_type = exposition(registry, request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @app.get("/models", response_model=ModelList, tags=["models"],
             summary="The configured models and what this replica knows of each")
    def models() -> ModelList:
        status = control.status()
        names = list(status.configured_models)
        names += [name for name in status.models if name not in status.configured_models]
        out = []
        for name in names:
            owned = status.models.get(name)
            latest = owned.latest if owned is not None else None
            out.append(ModelSummary(
                name=name,
                owned=owned is not None,
                window_rows=owned.window_rows if owned is not None else None,
                window_fill=_json_ready(owned.window_fill) if owned is not None else None,
                evaluated_at=latest.evaluated_at if latest is not None else None,
                drift_detected=latest.drift_detected if latest is not None else None,
            ))
        return ModelList(models=out)

    @app.get("/models/{model}/drift", response_model=dict[str, Any], tags=["models"],
             summary="The latest evaluated window (the `check --format json` body plus window details)",
             responses={404: _MODEL_404})
    def drift(model: ModelName) -> dict[str, Any]:
        latest = _evaluated_model(control.status(), model).latest
        assert latest is not None  # checked by _evaluated_model
        body: dict[str, Any] = _json_ready(latest.body)
        return body

    @app.get("/models/{model}/history", response_model=list[dict[str, Any]], tags=["models"],
             summary="Evaluated windows kept in memory, newest last",
             responses={404: _error("the model is unknown or owned by another replica")})
    def history(
        model: ModelName,
        limit: Annotated[int | None, Query(ge=1, le=MAX_HISTORY,
                                           description="at most this many, the newest")] = None,
    ) -> list[dict[str, Any]]:
        _owned_model(control.status(), model)
        reports = control.history(model)
        ordered = sorted(reports, key=lambda report: report.evaluated_at)  # stable: ties keep order
        if limit is not None:
            ordered = ordered[-limit:]
        return [_json_ready(report.body) for report in ordered]

    @app.get(
        "/models/{model}/report",
        response_class=HTMLResponse,
        tags=["models"],
        summary="An Evidently HTML report of the latest window against the reference",
        responses={200: {"description": "the report", "content": {"text/html": _TEXT}},
                   404: _error_outside_json(_MODEL_404["description"]),
                   409: _error_outside_json("the latest window cannot be reported (no feature with values)"),
                   503: _error_outside_json("Evidently is not available in this installation")},
    )
    def report(model: ModelName) -> HTMLResponse:
        _evaluated_model(control.status(), model)
        try:
            html = control.evidently_report(model)
        except RuntimeError as exc:
            raise HTTPException(503, f"Evidently report unavailable: {one_line(exc)}") from None
        except (InputError, ProfileError) as exc:  # e.g. no feature with values on both sides
            raise HTTPException(409, f"no report for this window: {one_line(exc)}") from None
        return HTMLResponse(html)

    @app.post(
        "/labels",
        response_model=dict[str, int],
        tags=["uploads"],
        summary="Ground-truth labels, joined to predictions by request id",
        openapi_extra=_LABELS_BODY,
        responses={400: _error("the batch cannot be decoded or does not fit the wire contract"),
                   404: _error("the batch names a model that is not configured"),
                   415: _error("the body is neither JSON nor msgpack"),
                   503: _NOT_CONNECTED_503},
    )
    async def labels(request: Request) -> dict[str, int]:
        given = _media_type(request.headers.get("content-type"))
        media_type = LABEL_MEDIA_TYPES.get(given)
        if media_type is None:
            raise HTTPException(
                415, f"unsupported content type {_quote(given or 'none')}; "
                     "send Content-Type: application/json or application/msgpack")
        body = await request.body()
        counts = await run_in_threadpool(control.submit_labels, body, media_type)
        return {str(key): int(value) for key, value in counts.items()}

    @app.post(
        "/models/{model}/reference",
        response_model=dict[str, Any],
        tags=["uploads"],
        summary="Replace the model's reference profile, from the next window on",
        openapi_extra=_REFERENCE_BODY,
        responses={400: _error("the body is not a valid saved profile for this model"),
                   404: _error("the model is not configured"),
                   503: _NOT_CONNECTED_503},
    )
    async def reference(model: ModelName, request: Request) -> dict[str, Any]:
        data = await request.body()
        result = await run_in_threadpool(control.upload_reference, model, data)
        body: dict[str, Any] = _json_ready(result)
        return body

    @app.post(
        "/config/reload",
        response_model=dict[str, Any],
        tags=["admin"],
        summary="Re-read the config file; an invalid file is reported and the old config kept",
        responses={422: {"model": InvalidConfig, "description": "invalid config; the old one is kept"}},
    )
    def reload_config() -> dict[str, Any] | JSONResponse:
        try:
            result = control.reload_config()
        except (InputError, ProfileError) as exc:  # valid YAML, but e.g. a reference that cannot be read
            body = InvalidConfig(detail="config not applied, old config kept",
                                 errors=[one_line(exc)])
            return JSONResponse(body.model_dump(), status_code=422)
        out: dict[str, Any] = _json_ready(result)
        return out

    return app
