"""A model server for the sample flight-delay model: Open Inference Protocol v2 and KServe v1.

    python sample_data/model/server.py --host 127.0.0.1 --port 8080 \\
        [--model-dir sample_data/model] [--name flight-delay]

Endpoints (``{name}`` is ``--name``):

* OIP v2: ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}``,
  ``GET /v2/models/{name}/ready``, ``POST /v2/models/{name}[/versions/v1]/infer`` with one
  input tensor per feature (numbers as FP32/FP64/INT32/INT64, categories as BYTES).
  Extension of this server: a ``null`` in a tensor's data means a missing value.
* KServe v1: ``GET /v1/models/{name}``, ``POST /v1/models/{name}:predict`` with
  ``{"instances": [{feature: value, ...}, ...]}`` (``null`` = missing).

Bad requests get HTTP 400 (404 for an unknown model or path) with ``{"error": "<one line>"}``.
If the weights are missing or do not match the spec's sha256, the server exits with status 2
and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from flight_model import InputError, ModelFileError, Predictor  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402

VERSION = "v1"
NUMERIC_TYPES = {"FP32", "FP64", "INT32", "INT64"}
MAX_ROWS = 100_000


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with the given HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; ApiError 400 otherwise."""
    raw = await request.body()
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise ApiError(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(doc).__name__}")
    return doc


def flatten(name: str, data: Any) -> list[Any]:
    """Tensor data, flat or nested one level (``[[x], [y]]`` for shape [N, 1])."""
    if not isinstance(data, list):
        raise ApiError(400, f"input {name!r}: 'data' must be a list")
    if all(isinstance(v, list) for v in data) and data:
        if any(len(v) != 1 for v in data):
            raise ApiError(400, f"input {name!r}: nested 'data' must hold one value per row")
        return [v[0] for v in data]
    return data


def check_types(name: str, datatype: str, values: list[Any], numerical: bool) -> None:
    """ApiError 400 if the datatype does not suit the feature or a value does not suit the datatype."""
    if numerical and datatype not in NUMERIC_TYPES:
        raise ApiError(400, f"input {name!r}: datatype {datatype!r} is not allowed for a numerical feature "
                            f"(use one of {', '.join(sorted(NUMERIC_TYPES))})")
    if not numerical and datatype != "BYTES":
        raise ApiError(400, f"input {name!r}: datatype {datatype!r} is not allowed for a categorical feature "
                            "(use BYTES)")
    if datatype.startswith("INT"):
        bad = [v for v in values if v is not None and (isinstance(v, bool) or not isinstance(v, int))]
        if bad:
            raise ApiError(400, f"input {name!r}: {datatype} data holds a non-integer value {bad[0]!r:.40}")


def oip_columns(doc: dict[str, Any], predictor: Predictor) -> tuple[dict[str, list[Any]], int]:
    """Feature columns from an OIP v2 inference request, checked; and the row count."""
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "'inputs' must be a non-empty list of tensors")
    columns: dict[str, list[Any]] = {}
    rows: int | None = None
    for tensor in inputs:
        if not isinstance(tensor, dict):
            raise ApiError(400, "each input must be an object with name, shape, datatype and data")
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        if name not in predictor.features:
            raise ApiError(400, f"unknown input {name!r}: the inputs are {', '.join(predictor.features)}")
        if name in columns:
            raise ApiError(400, f"input {name!r} is given twice")
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d >= 0 for d in shape)
                and (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1))):
            raise ApiError(400, f"input {name!r}: shape must be [N] or [N, 1], got {shape!r:.60}")
        values = flatten(name, tensor.get("data"))
        if len(values) != shape[0]:
            raise ApiError(400, f"input {name!r}: shape {shape} holds {shape[0]} values "
                                f"but data has {len(values)}")
        if rows is not None and shape[0] != rows:
            raise ApiError(400, f"input {name!r} has {shape[0]} rows but earlier inputs have {rows}")
        rows = shape[0]
        check_types(name, str(datatype), values, name in predictor.numerical)
        columns[name] = values
    missing = [f for f in predictor.features if f not in columns]
    if missing:
        raise ApiError(400, f"missing input(s): {', '.join(missing)}")
    assert rows is not None
    if rows > MAX_ROWS:
        raise ApiError(400, f"{rows} rows in one request; at most {MAX_ROWS}")
    return columns, rows


def build_app(predictor: Predictor, name: str, ready_line: str | None = None) -> FastAPI:
    """The FastAPI application serving ``predictor`` as model ``name``."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ready_line is not None:
            print(ready_line, flush=True)
        yield

    app = FastAPI(title=f"{name} model server", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(InputError)
    async def on_input_error(request: Request, exc: InputError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, f"invalid request: {exc.errors()[:1]}")

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    def model(model_name: str, version: str | None = None) -> None:
        if model_name != name:
            raise ApiError(404, f"unknown model {model_name!r}: this server serves {name!r}")
        if version is not None and version not in (VERSION, VERSION.lstrip("v")):
            raise ApiError(404, f"unknown version {version!r} of model {name!r}: the only one is {VERSION!r}")

    @app.get("/v2/health/live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, Any]:
        return {"ready": True}

    @app.get("/v2/models/{model_name}")
    async def metadata(model_name: str) -> dict[str, Any]:
        model(model_name)
        return {"name": name, "versions": [VERSION], "platform": "pytorch",
                "inputs": [{"name": f, "datatype": "FP32" if f in predictor.numerical else "BYTES",
                            "shape": [-1]} for f in predictor.features],
                "outputs": [{"name": predictor.output, "datatype": "FP32", "shape": [-1]}],
                "parameters": {"weights_sha256": predictor.sha256,
                               "missing_values": "null in a tensor's data (extension of this server)"}}

    @app.get("/v2/models/{model_name}/ready")
    async def model_ready(model_name: str) -> dict[str, Any]:
        model(model_name)
        return {"name": name, "ready": True}

    async def infer(request: Request, model_name: str, version: str | None) -> dict[str, Any]:
        model(model_name, version)
        doc = await json_body(request)
        request_id = doc.get("id")
        columns, rows = oip_columns(doc, predictor)
        probabilities = predictor.predict_columns(columns)
        return {"model_name": name, "model_version": VERSION,
                "id": str(request_id) if request_id is not None else str(uuid.uuid4()),
                "outputs": [{"name": predictor.output, "shape": [rows], "datatype": "FP32",
                             "data": probabilities}]}

    @app.post("/v2/models/{model_name}/infer")
    async def infer_latest(request: Request, model_name: str) -> dict[str, Any]:
        return await infer(request, model_name, None)

    @app.post("/v2/models/{model_name}/versions/{version}/infer")
    async def infer_version(request: Request, model_name: str, version: str) -> dict[str, Any]:
        return await infer(request, model_name, version)

    @app.get("/v1/models/{model_name}")
    async def v1_status(model_name: str) -> dict[str, Any]:
        model(model_name)
        return {"name": name, "ready": True}

    @app.post("/v1/models/{model_name}:predict")
    async def v1_predict(request: Request, model_name: str) -> dict[str, Any]:
        model(model_name)
        doc = await json_body(request)
        instances = doc.get("instances")
        if not isinstance(instances, list):
            raise ApiError(400, "'instances' must be a list of {feature: value} objects")
        if len(instances) > MAX_ROWS:
            raise ApiError(400, f"{len(instances)} instances in one request; at most {MAX_ROWS}")
        for i, row in enumerate(instances):
            extra = sorted(set(row) - set(predictor.features)) if isinstance(row, dict) else []
            if extra:
                raise ApiError(400, f"instance {i}: unknown feature(s) {', '.join(map(str, extra))}")
        return {"predictions": predictor.predict(instances)}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve the sample flight-delay model (OIP v2 and KServe v1).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model-dir", type=Path, default=HERE)
    parser.add_argument("--name", default="flight-delay")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor.load(args.model_dir)
    except ModelFileError as e:
        print(f"server.py: error: {e}", file=sys.stderr)
        return 2
    line = (f"model server ready: {args.name} (weights sha256 {predictor.sha256[:12]}) on "
            f"http://{args.host}:{args.port}")
    app = build_app(predictor, args.name, line)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
