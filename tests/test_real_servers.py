"""Smoke tests of the REAL model servers of issue 15 (``tests/real_servers.py``), asked directly,
without the collector: each documented request format gets the answer the server documents.

With ``DRIFTLINE_WRITE_FIXTURES=1`` every exchange is recorded under
``tests/fixtures/real_server_answers/``: ``<case>.json`` (server and version, the request's
method, path and headers, the response's status and headers in the order and spelling sent,
and the JSON header's length for binary tensor answers), ``<case>.request.bin`` and
``<case>.response.bin`` (the exact bytes).  The extractor tests read those.
"""

from __future__ import annotations

import http.client
import json
import os
import struct
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.real_servers import (  # noqa: F401 (fixtures)
    InstallError,
    RealServer,
    ServerVenv,
    ensure_venv,
    kserve_server,
    mlflow_server,
)

pytestmark = pytest.mark.slow
ANSWERS = Path(__file__).resolve().parent / "fixtures" / "real_server_answers"
JSON = {"Content-Type": "application/json"}


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def binary(self) -> tuple[dict[str, Any], bytes]:
        """The JSON header and the raw tensor bytes of a binary tensor extension answer."""
        length = self.header("Inference-Header-Content-Length")
        assert length is not None, f"no Inference-Header-Content-Length in {self.headers}"
        return json.loads(self.body[:int(length)]), self.body[int(length):]


def ask(server: RealServer, model: str, case: str, path: str, body: bytes | str | Any,
        headers: dict[str, str] | None = None) -> Answer:
    """POST ``body`` (bytes and str as they are, anything else as JSON) to the server of ``model``;
    records the exchange as ``<server>-<case>`` when ``DRIFTLINE_WRITE_FIXTURES=1``."""
    if isinstance(body, str):
        raw = body.encode()
    elif isinstance(body, bytes):
        raw = body
    else:
        raw = json.dumps(body).encode()
        headers = {**JSON, **(headers or {})}
    headers = dict(headers or {})
    url = urllib.parse.urlsplit(server.models[model])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request("POST", path, body=raw, headers=headers)
        response = conn.getresponse()
        answer = Answer(response.status, response.getheaders(), response.read())
    finally:
        conn.close()
    if os.environ.get("DRIFTLINE_WRITE_FIXTURES") == "1":
        record(server, model, case, path, headers, raw, answer)
    return answer


def record(server: RealServer, model: str, case: str, path: str, headers: dict[str, str],
           raw: bytes, answer: Answer) -> None:
    name = f"{server.name}-{case}"
    ANSWERS.mkdir(parents=True, exist_ok=True)
    (ANSWERS / f"{name}.request.bin").write_bytes(raw)
    (ANSWERS / f"{name}.response.bin").write_bytes(answer.body)
    length = answer.header("Inference-Header-Content-Length")
    meta = {
        "server": server.name, "version": server.version, "model": model, "case": case,
        "request": {"method": "POST", "path": path, "headers": headers, "body_file": f"{name}.request.bin"},
        "response": {"status": answer.status, "headers": [list(h) for h in answer.headers],
                     "body_file": f"{name}.response.bin",
                     "json_header_length": int(length) if length is not None else None},
    }
    (ANSWERS / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")


def decode(datatype: str, raw: bytes) -> list[Any]:
    """Tensor bytes of the binary extension, little-endian; BYTES: 4-byte length prefixes."""
    if datatype == "BYTES":
        out, at = [], 0
        while at < len(raw):
            (size,) = struct.unpack_from("<I", raw, at)
            out.append(raw[at + 4:at + 4 + size])
            at += 4 + size
        return out
    fmt = {"FP32": "f", "FP64": "d", "INT32": "i", "INT64": "q"}[datatype]
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw))


def tensors(header: dict[str, Any], raw: bytes) -> dict[str, tuple[str, list[int], list[Any]]]:
    """name -> (datatype, shape, values) for every output, JSON or binary."""
    out, at = {}, 0
    for tensor in header["outputs"]:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is None:
            values = tensor["data"]
        else:
            values = decode(tensor["datatype"], raw[at:at + size])
            at += size
        out[tensor["name"]] = (tensor["datatype"], tensor["shape"], values)
    assert at == len(raw), "bytes left over after the last binary tensor"
    return out


# --- kserve 0.21: model "sum" (get_predict_input/get_predict_response), model "multi" ------------

ROWS = [[41, 52000.5], [30, 12000.0]]
SUMS = [52041.5, 12030.0]
V1_FORMATS = {
    # name: (body, predictions)
    "v1-instances-lists": ({"instances": ROWS}, SUMS),
    "v1-inputs-lists": ({"inputs": ROWS}, SUMS),
    "v1-instances-records-in-a-list": (
        {"instances": [[{"age": 41, "income": 52000.5}, {"age": 30, "income": 12000.0}]]}, SUMS),
    "v1-instances-pandas-one-row": ({"instances": [{"age": [41], "income": [52000.5]}]}, SUMS[:1]),
    "v1-instances-pandas-two-rows-in-one-instance": (
        {"instances": [{"age": [41, 30], "income": [52000.5, 12000.0]}]}, SUMS),
    "v1-instances-pandas-two-instances": (
        {"instances": [{"age": [41], "income": [52000.5]}, {"age": [30], "income": [12000.0]}]}, SUMS),
    "v1-inputs-dict-of-index": (
        {"inputs": [{"age": {"0": 41, "1": 30}, "income": {"0": 52000.5, "1": 12000.0}}]}, SUMS),
}


@pytest.mark.parametrize("case", list(V1_FORMATS))
def test_kserve_answers_each_v1_format_that_get_predict_input_reads_with_one_prediction_per_row(
        kserve_server: RealServer, case: str) -> None:  # noqa: F811
    body, predictions = V1_FORMATS[case]
    answer = ask(kserve_server, "sum", f"sum-{case}", "/v1/models/sum:predict", body)
    assert (answer.status, answer.json()) == (200, {"predictions": predictions})
    assert answer.header("Content-Type") == "application/json"


def test_kserve_refuses_v1_instances_that_are_dicts_of_scalars_with_a_500(
        kserve_server: RealServer) -> None:  # noqa: F811
    # pd.DataFrame({"age": 41, ...}) needs an index: get_predict_input can't read flat records
    answer = ask(kserve_server, "sum", "sum-v1-instances-dicts-of-scalars", "/v1/models/sum:predict",
                 {"instances": [{"age": 41, "income": 52000.5}, {"age": 30, "income": 12000.0}]})
    assert answer.status == 500
    assert "you must pass an index" in answer.json()["error"]


def test_kserve_answers_an_unknown_model_with_a_404(kserve_server: RealServer) -> None:  # noqa: F811
    answer = ask(kserve_server, "sum", "v1-unknown-model", "/v1/models/nope:predict", {"instances": ROWS})
    assert answer.status == 404 and "nope" in answer.json()["error"]


def test_kserve_answers_oip_v2_json_with_one_output_tensor_from_get_predict_response(
        kserve_server: RealServer) -> None:  # noqa: F811
    answer = ask(kserve_server, "sum", "sum-v2-json", "/v2/models/sum/infer", {
        "id": "req-1", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                   "data": [41, 52000.5, 30, 12000.0]}]})
    assert answer.status == 200 and answer.header("Inference-Header-Content-Length") is None
    got = answer.json()
    assert got["id"] == "req-1" and got["model_name"] == "sum"
    assert got["outputs"] == [{"name": "output-0", "shape": [2], "datatype": "FP64", "parameters": None,
                               "data": SUMS}]


MULTI_REQUEST = {"id": "req-m", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                            "data": [41, 52000.5, 3, 12]}]}
MULTI_TENSORS = {"score": ("FP32", [2], [52041.5, 15.0]), "label": ("BYTES", [2], ["high", "low"]),
                 "range": ("FP64", [2, 2], [41.0, 52000.5, 3.0, 12.0])}


def test_kserve_answers_oip_v2_json_with_named_fp32_bytes_and_fp64_tensors(
        kserve_server: RealServer) -> None:  # noqa: F811
    answer = ask(kserve_server, "multi", "multi-v2-json", "/v2/models/multi/infer", MULTI_REQUEST)
    assert answer.status == 200 and answer.header("Inference-Header-Content-Length") is None
    got = answer.json()
    assert got["id"] == "req-m" and got["model_name"] == "multi"
    assert tensors(got, b"") == MULTI_TENSORS


def test_kserve_answers_binary_data_output_with_a_json_header_then_raw_tensor_bytes(
        kserve_server: RealServer) -> None:  # noqa: F811
    answer = ask(kserve_server, "multi", "multi-v2-binary-data-output", "/v2/models/multi/infer",
                 {**MULTI_REQUEST, "parameters": {"binary_data_output": True}})
    assert answer.status == 200
    header, raw = answer.binary()
    assert all("data" not in t for t in header["outputs"])
    assert [t["parameters"]["binary_data_size"] for t in header["outputs"]] == [8, 15, 32]
    got = tensors(header, raw)
    assert got["label"] == ("BYTES", [2], [b"high", b"low"])
    assert {k: v for k, v in got.items() if k != "label"} == {
        k: v for k, v in MULTI_TENSORS.items() if k != "label"}


def test_kserve_answers_per_output_binary_data_with_binary_and_json_tensors_mixed(
        kserve_server: RealServer) -> None:  # noqa: F811
    answer = ask(kserve_server, "multi", "multi-v2-per-output-binary-data", "/v2/models/multi/infer", {
        **MULTI_REQUEST, "outputs": [{"name": "score", "parameters": {"binary_data": True}},
                                     {"name": "label"},
                                     {"name": "range", "parameters": {"binary_data": True}}]})
    assert answer.status == 200
    header, raw = answer.binary()
    assert [("data" in t) for t in header["outputs"]] == [False, True, False]
    assert len(raw) == 8 + 32
    assert tensors(header, raw) == MULTI_TENSORS


def test_kserve_reads_a_binary_request_body_and_answers_json(kserve_server: RealServer) -> None:  # noqa: F811
    tensor = struct.pack("<4f", 41, 52000.5, 3, 12)
    header = json.dumps({"id": "req-b", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                                    "parameters": {"binary_data_size": len(tensor)}}]})
    answer = ask(kserve_server, "multi", "multi-v2-binary-request", "/v2/models/multi/infer",
                 header.encode() + tensor, {"Content-Type": "application/octet-stream",
                                            "Inference-Header-Content-Length": str(len(header))})
    assert answer.status == 200 and answer.header("Inference-Header-Content-Length") is None
    assert tensors(answer.json(), b"") == MULTI_TENSORS


# --- mlflow 3.x: "sklearn" (LinearRegression on age, income), "pyfunc" (a DataFrame out) ---------

ML_FORMATS: dict[str, tuple[Any, dict[str, str]]] = {
    "dataframe-split": ({"dataframe_split": {"columns": ["age", "income"], "data": ROWS}}, {}),
    "dataframe-records": ({"dataframe_records": [{"age": 41, "income": 52000.5},
                                                 {"age": 30, "income": 12000.0}]}, {}),
    "instances": ({"instances": [{"age": 41, "income": 52000.5}, {"age": 30, "income": 12000.0}]}, {}),
    "inputs": ({"inputs": {"age": [41, 30], "income": [52000.5, 12000.0]}}, {}),
    "csv": ("age,income\n41,52000.5\n30,12000.0\n", {"Content-Type": "text/csv"}),
}


@pytest.mark.parametrize("case", list(ML_FORMATS))
def test_mlflow_sklearn_answers_each_documented_format_with_one_prediction_per_row(
        mlflow_server: RealServer, case: str) -> None:  # noqa: F811
    body, headers = ML_FORMATS[case]
    answer = ask(mlflow_server, "sklearn", f"sklearn-{case}", "/invocations", body, headers)
    assert answer.status == 200, answer.body
    predictions = answer.json()["predictions"]
    assert predictions == pytest.approx([2 * 41 + 52.0005, 2 * 30 + 12.0])


@pytest.mark.parametrize("case", list(ML_FORMATS))
def test_mlflow_pyfunc_answers_each_documented_format_with_a_record_per_row(
        mlflow_server: RealServer, case: str) -> None:  # noqa: F811
    body, headers = ML_FORMATS[case]
    answer = ask(mlflow_server, "pyfunc", f"pyfunc-{case}", "/invocations", body, headers)
    assert answer.status == 200, answer.body
    assert answer.json() == {"predictions": [{"score": 93.0005, "label": "high"},
                                             {"score": 42.0, "label": "low"}]}


# --- the venv cache --------------------------------------------------------------------------


def test_a_failed_server_install_says_what_failed_in_one_line_and_names_its_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_SERVER_VENVS", str(tmp_path / "venvs"))
    broken = ServerVenv("broken", "0", (str(tmp_path / "no-such-project"),), (("broken", "0"),))
    with pytest.raises(InstallError) as raised:
        ensure_venv(broken)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("broken: pip install ")
    assert f"(log: {tmp_path / 'venvs' / 'broken-0.install.log'})" in message
    assert not (broken.path / ".driftline-venv.json").exists()  # never taken for a ready venv
