"""A real model server for the collector's tests (FastAPI): the three protocols'
predict endpoints with a deterministic model, plus endpoints that are slow,
fail, stream a large body or echo what they got.

Run: ``python -m uvicorn tests.model_server:app --port 8080``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI(title="sample model")


def score(row: list[Any]) -> float:
    """The mean of the numbers in the row, with one pseudo-count (text is ignored)."""
    numbers = [x for x in row if isinstance(x, int | float) and not isinstance(x, bool)]
    return round(sum(numbers) / (1 + len(numbers)), 6)


@app.post("/v1/models/{name}:predict")
async def kserve_v1(name: str, request: Request) -> dict[str, Any]:
    body = await request.json()
    rows = body.get("instances", body.get("inputs", []))
    return {"predictions": [score(list(r.values()) if isinstance(r, dict) else r) for r in rows]}


@app.post("/v2/models/{name}/infer")
async def oip_v2(name: str, request: Request) -> dict[str, Any]:
    body = await request.json()
    tensor = body["inputs"][0]
    n, k = tensor["shape"]
    data = tensor["data"]
    flat = [x for row in data for x in row] if data and isinstance(data[0], list) else data
    rows = [flat[i * k:(i + 1) * k] for i in range(n)]
    return {"model_name": name, "id": body.get("id", ""),
            "outputs": [{"name": "score", "shape": [n, 1], "datatype": "FP32",
                         "data": [score(r) for r in rows]}]}


@app.post("/invocations")
async def mlflow(request: Request) -> dict[str, Any]:
    body = await request.json()
    split = body["dataframe_split"]
    return {"predictions": [score(r) for r in split["data"]]}


@app.post("/score")
async def generic(request: Request) -> dict[str, Any]:
    """A home-grown protocol: {"data": [{"features": {...}}]} -> {"result": [{"score": x}]}."""
    body = await request.json()
    return {"result": [{"score": score(list(item["features"].values()))} for item in body["data"]]}


@app.api_route("/echo/{tail:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
async def echo(tail: str, request: Request) -> Response:
    body = await request.body()
    headers = {"x-echo-method": request.method, "x-echo-request-id": request.headers.get("x-request-id", ""),
               "x-echo-query": str(request.url.query), "x-echo-length": str(len(body))}
    return Response(content=body, status_code=201, headers=headers, media_type="application/octet-stream")


@app.get("/slow")
async def slow(ms: int = 100) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.post("/fail")
@app.get("/fail")
async def fail() -> JSONResponse:
    return JSONResponse({"error": "model exploded"}, status_code=503, headers={"retry-after": "7"})


@app.get("/big")
async def big(size: int = 5_000_000) -> StreamingResponse:
    async def chunks() -> Any:
        sent = 0
        while sent < size:
            part = min(65536, size - sent)
            yield b"x" * part
            sent += part

    return StreamingResponse(chunks(), media_type="application/octet-stream")
