"""Extractor fidelity against what real model servers send (issue 15, defects 1, 2, 3 and 6).

Byte-exact bodies, built the way the servers build them:

* the Open Inference Protocol's binary tensor extension (Triton's ``binary_data.md``, KServe's
  ``InferRequest.to_rest``/``InferResponse.to_rest``): a JSON header of
  ``Inference-Header-Content-Length`` bytes, then each binary tensor's raw little-endian values,
  in the header's order; BYTES elements each behind a 4-byte little-endian length;
* KServe v1 instances read by kserve's ``get_predict_input`` (pandas DataFrames);
* MLflow ``text/csv`` requests (``pandas.read_csv``) with MLflow's JSON answer;
* OIP tensor values cast by their declared datatype.

The last test runs a binary OIP answer through the real proxy: captured, and passed on unchanged.
"""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.extractors import ExtractError, extract
from tests.test_proxy_http import Env, Message, answering, proxied, response  # noqa: F401 (a fixture)

V2 = "/v2/models/m/infer"
V1 = "/v1/models/m:predict"
MLFLOW = "/invocations"


def rows(path: str, request: bytes, answer: bytes, **kw: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    _, instances = extract(path, request, answer, **kw)
    return [(dict(i.inputs), dict(i.outputs)) for i in instances]


def refused(reason: str, *args: Any, **kw: Any) -> str:
    with pytest.raises(ExtractError) as info:
        extract(*args, **kw)
    assert info.value.reason == reason
    assert "\n" not in str(info.value)
    return str(info.value)


def typed(values: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    """Values with their exact types, so that 3 and 3.0 (and True and 1) differ."""
    return {k: (type(v), v) for k, v in values.items()}


def bytes_tensor(*items: bytes) -> bytes:
    """BYTES elements as the binary extension writes them: each behind its 4-byte LE length."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


# -- 1. the binary tensor extension ---------------------------------------------------------------------

# A JSON request asking for binary outputs (KServe's InferRequest: "binary_data_output").
JSON_REQUEST_BINARY_OUTPUT = (b'{"id":"r1","inputs":['
                              b'{"name":"age","shape":[2],"datatype":"INT64","data":[41,30]},'
                              b'{"name":"income","shape":[2],"datatype":"FP32","data":[52000.5,48000]}],'
                              b'"parameters":{"binary_data_output":true}}')
# The answer as kserve 0.21's InferResponse.to_rest writes it: a compact JSON header, then the tensors.
BINARY_RESPONSE_HEADER = (b'{"model_name":"m","model_version":null,"id":"r1","parameters":null,"outputs":['
                          b'{"name":"score","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},'
                          b'{"name":"label","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":14}},'
                          b'{"name":"proba","shape":[2,2],"datatype":"FP64","parameters":{"binary_data_size":32}}]}')
BINARY_RESPONSE = (BINARY_RESPONSE_HEADER
                   + struct.pack("<2f", 0.25, 0.75)
                   + bytes_tensor(b"no", b"yes!")
                   + struct.pack("<4d", 0.75, 0.25, 0.25, 0.75))


def test_a_binary_response_is_decoded_by_datatype_named_by_tensor_and_paired_row_by_row():
    got = rows(V2, JSON_REQUEST_BINARY_OUTPUT, BINARY_RESPONSE,
               response_header_length=str(len(BINARY_RESPONSE_HEADER)))
    assert [(typed(x), typed(y)) for x, y in got] == [
        (typed({"age": 41, "income": 52000.5}),
         typed({"score": 0.25, "label": "no", "proba_0": 0.75, "proba_1": 0.25})),
        (typed({"age": 30, "income": 48000.0}),
         typed({"score": 0.75, "label": "yes!", "proba_0": 0.25, "proba_1": 0.75})),
    ]


def test_per_output_binary_data_gives_a_body_of_json_and_binary_tensors_side_by_side():
    request = (b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3]}],'
               b'"outputs":[{"name":"y","parameters":{"binary_data":true}},{"name":"z"}]}')
    header = (b'{"model_name":"m","outputs":[{"name":"y","shape":[3],"datatype":"INT32",'
              b'"parameters":{"binary_data_size":12}},{"name":"z","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}')
    answer = header + struct.pack("<3i", -1, 0, 7)
    got = rows(V2, request, answer, response_header_length=len(header))
    assert got == [({"x": 1.0}, {"y": -1, "z": True}), ({"x": 2.0}, {"y": 0, "z": False}),
                   ({"x": 3.0}, {"y": 7, "z": True})]


# The request of Triton's binary_data.md, made consistent (its input1 has a batch of 3 against 2):
# UINT32 [2, 2] and BOOL [2] in binary, behind the JSON header.
BINARY_REQUEST_HEADER = (b'{"model_name":"mymodel","inputs":['
                         b'{"name":"input0","shape":[2,2],"datatype":"UINT32","parameters":{"binary_data_size":16}},'
                         b'{"name":"input1","shape":[2],"datatype":"BOOL","parameters":{"binary_data_size":2}}],'
                         b'"outputs":[{"name":"output0","parameters":{"binary_data":true}},{"name":"output1"}]}')
BINARY_REQUEST = BINARY_REQUEST_HEADER + struct.pack("<4I", 1, 2, 3, 4294967295) + b"\x01\x00"


def test_a_binary_request_body_is_decoded_and_its_binary_answer_too():
    header = (b'{"outputs":['
              b'{"name":"output0","shape":[2],"datatype":"FP16","parameters":{"binary_data_size":4}},'
              b'{"name":"output1","shape":[2],"datatype":"UINT8","data":[0,255]}]}')
    answer = header + struct.pack("<2e", 0.5, -2.0)
    got = rows(V2, BINARY_REQUEST, answer, request_header_length=str(len(BINARY_REQUEST_HEADER)),
               response_header_length=str(len(header)), request_content_type="application/octet-stream")
    assert [(typed(x), typed(y)) for x, y in got] == [
        (typed({"input0_0": 1, "input0_1": 2, "input1": True}), typed({"output0": 0.5, "output1": 0})),
        (typed({"input0_0": 3, "input0_1": 4294967295, "input1": False}),
         typed({"output0": -2.0, "output1": 255})),
    ]


def test_the_verbatim_triton_example_is_refused_for_its_batch_sizes():
    header = BINARY_REQUEST_HEADER.replace(b'[2],"datatype":"BOOL","parameters":{"binary_data_size":2}',
                                           b'[3],"datatype":"BOOL","parameters":{"binary_data_size":3}')
    body = header + struct.pack("<4I", 1, 2, 3, 4) + b"\x01\x00\x01"
    assert "batch size" in refused("mismatch", V2, body, b"", request_header_length=len(header))


@pytest.mark.parametrize(("datatype", "raw", "expected"), [
    ("BOOL", b"\x00\x01\x02", [False, True, True]),
    ("INT8", struct.pack("<3b", -128, 0, 127), [-128, 0, 127]),
    ("INT16", struct.pack("<3h", -32768, 1, 32767), [-32768, 1, 32767]),
    ("INT32", struct.pack("<3i", -2**31, 2, 2**31 - 1), [-2**31, 2, 2**31 - 1]),
    ("INT64", struct.pack("<3q", -2**63, 3, 2**63 - 1), [-2**63, 3, 2**63 - 1]),
    ("UINT8", bytes([0, 1, 255]), [0, 1, 255]),
    ("UINT16", struct.pack("<3H", 0, 1, 65535), [0, 1, 65535]),
    ("UINT32", struct.pack("<3I", 0, 1, 2**32 - 1), [0, 1, 2**32 - 1]),
    ("UINT64", struct.pack("<3Q", 0, 1, 2**64 - 1), [0, 1, 2**64 - 1]),
    ("FP16", struct.pack("<3e", 1.5, -0.25, 65504.0), [1.5, -0.25, 65504.0]),
    ("BF16", bytes.fromhex("c03f" "803e" "80bf"), [1.5, 0.25, -1.0]),  # the top halves of float32s
    ("FP32", struct.pack("<3f", 1.0, 0.1, -3.5), [1.0, struct.unpack("<f", struct.pack("<f", 0.1))[0], -3.5]),
    ("FP64", struct.pack("<3d", 1.0, 0.1, -3.5), [1.0, 0.1, -3.5]),
    ("BYTES", bytes_tensor(b"a", "é".encode(), b""), ["a", "é", ""]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_every_datatype_decodes_row_major_to_its_python_type(datatype: str, raw: bytes, expected: list[Any]):
    header = json.dumps({"inputs": [{"name": "x", "shape": [3], "datatype": datatype,
                                     "parameters": {"binary_data_size": len(raw)}}]}).encode()
    got = rows(V2, header + raw, b"", request_header_length=len(header))
    assert [typed(x) for x, _ in got] == [typed({"x": v}) for v in expected]


def test_infinities_and_nan_are_float32_values_and_a_finite_value_beyond_the_range_is_not():
    header = b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":12}}]}'
    got = rows(V2, header + struct.pack("<3f", float("inf"), float("-inf"), 1.0), b"",
               request_header_length=len(header))
    assert [x["x"] for x, _ in got] == [float("inf"), float("-inf"), 1.0]
    beyond = b'{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1e39,1]}]}'
    assert "range of FP32" in refused("mismatch", V2, beyond, b"")


def test_a_binary_tensor_of_higher_rank_is_reshaped_row_major():
    header = (b'{"inputs":[{"name":"img","shape":[2,2,2],"datatype":"UINT8",'
              b'"parameters":{"binary_data_size":8}}]}')
    got = rows(V2, header + bytes(range(8)), b"", request_header_length=len(header))
    assert [x for x, _ in got] == [{"img": "[[0,1],[2,3]]"}, {"img": "[[4,5],[6,7]]"}]


def _binary(datatype: str, size: int, payload: bytes, shape: str = "[2]") -> tuple[bytes, int]:
    header = (b'{"inputs":[{"name":"x","shape":%s,"datatype":"%s","parameters":{"binary_data_size":%d}}]}'
              % (shape.encode(), datatype.encode(), size))
    return header + payload, len(header)


@pytest.mark.parametrize(("reason", "body_length", "header_length", "needle"), [
    ("mismatch", _binary("FP32", 8, b"\0" * 12), None, "declare 8 bytes but 12 follow"),
    ("mismatch", _binary("FP32", 8, b"\0" * 4), None, "declare 8 bytes but 4 follow"),
    ("mismatch", _binary("FP32", 6, b"\0" * 6), None, "not a whole number of FP32"),
    ("mismatch", _binary("FP32", 12, b"\0" * 12), None, "shape [2]"),
    ("unknown_shape", _binary("FP8", 2, b"\0" * 2), None, "unknown datatype 'FP8'"),
    ("mismatch", _binary("BYTES", 8, bytes_tensor(b"ab") + b"\0\0", "[1]"), None, "inside the length"),
    ("mismatch", _binary("BYTES", 6, struct.pack("<I", 9) + b"ab", "[1]"), None, "past its end"),
    ("unknown_shape", _binary("FP32", 8, b"\0" * 8), "12x", "not a number"),
    ("mismatch", _binary("FP32", 8, b"\0" * 8), "100000", "the body has"),
    ("not_json", _binary("FP32", 8, b"\0" * 8), "5", "not JSON"),
], ids=["extra", "short", "partial-element", "shape", "datatype", "bytes-length", "bytes-past-end",
        "header-not-a-number", "header-past-end", "header-cut"])
def test_malformed_binary_bodies_are_refused_with_a_one_line_reason(reason, body_length, header_length,
                                                                    needle):
    body, length = body_length
    message = refused(reason, V2, body, b"", request_header_length=length if header_length is None
                      else header_length)
    assert needle in message


def test_binary_tensors_without_the_header_length_and_data_beside_binary_are_refused():
    body, _ = _binary("FP32", 8, b"\0" * 8)
    assert "not JSON" in refused("not_json", V2, body, b"")  # the bytes after the header are no JSON
    header = b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}]}'
    assert "Inference-Header-Content-Length" in refused("unknown_shape", V2, header, b"")
    both = (b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],'
            b'"parameters":{"binary_data_size":4}}]}')
    assert "both" in refused("unknown_shape", V2, both + b"\0" * 4, b"", request_header_length=len(both))


# -- 6. values cast by the tensor's declared datatype --------------------------------------------------


def test_json_tensor_values_are_cast_by_their_declared_datatype():
    request = json.dumps({"inputs": [
        {"name": "f32", "shape": [2], "datatype": "FP32", "data": [3, 2.5]},
        {"name": "f64", "shape": [2], "datatype": "FP64", "data": [0, 1]},
        {"name": "i32", "shape": [2], "datatype": "INT32", "data": [3.0, -4]},
        {"name": "u8", "shape": [2], "datatype": "UINT8", "data": [0, 255]},
        {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [1, False]},
        {"name": "word", "shape": [2], "datatype": "BYTES", "data": ["a", "3"]},
    ]}).encode()
    answer = json.dumps({"outputs": [{"name": "y", "shape": [2, 1], "datatype": "FP32",
                                      "data": [[1], [0]]}]}).encode()
    got = rows(V2, request, answer)
    assert [(typed(x), typed(y)) for x, y in got] == [
        (typed({"f32": 3.0, "f64": 0.0, "i32": 3, "u8": 0, "flag": True, "word": "a"}),
         typed({"y": 1.0})),
        (typed({"f32": 2.5, "f64": 1.0, "i32": -4, "u8": 255, "flag": False, "word": "3"}),
         typed({"y": 0.0})),
    ]


def test_a_null_in_a_json_tensor_is_a_missing_value_and_the_rest_keeps_its_datatype():
    # not in the protocol, but a server that accepts null (driftline's sample model server does,
    # for a cancelled flight's departure delay) answered the call: its rows must not be lost
    request = json.dumps({"inputs": [
        {"name": "delay", "shape": [3], "datatype": "FP32", "data": [3, None, 2.5]},
        {"name": "n", "shape": [3], "datatype": "INT64", "data": [None, 2.0, 7]},
        {"name": "dest", "shape": [3], "datatype": "BYTES", "data": ["BOS", "LAX", None]},
    ]}).encode()
    answer = json.dumps({"outputs": [{"name": "p", "shape": [3], "datatype": "FP32",
                                      "data": [0.1, 0.2, 0.3]}]}).encode()
    got = rows(V2, request, answer)
    assert [typed(x) for x, _ in got] == [typed({"delay": 3.0, "n": None, "dest": "BOS"}),
                                          typed({"delay": None, "n": 2, "dest": "LAX"}),
                                          typed({"delay": 2.5, "n": 7, "dest": None})]


@pytest.mark.parametrize(("datatype", "data", "reason", "needle"), [
    ("INT32", [1.5], "mismatch", "not an integer"),
    ("INT64", [None, 1.5], "mismatch", "not an integer"),
    ("INT8", [128], "mismatch", "range of INT8"),
    ("UINT16", [-1], "mismatch", "range of UINT16"),
    ("FP16", [70000], "mismatch", "range of FP16"),
    ("FP32", ["1.5"], "mismatch", "holds string values"),
    ("FP32", [True], "mismatch", "holds boolean values"),
    ("BOOL", [2], "mismatch", "holds integer values"),
    ("BYTES", [7], "mismatch", "holds integer values"),
    ("float32", [1.0], "unknown_shape", "unknown datatype 'float32'"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_value_that_does_not_fit_its_datatype_is_refused(datatype, data, reason, needle):
    tensor = {"name": "x", "shape": [1], "datatype": datatype, "data": data}
    request = json.dumps({"inputs": [tensor]}).encode()
    assert needle in refused(reason, V2, request, b"")


# -- 2. KServe v1 instances as get_predict_input reads them ---------------------------------------------


def test_pandas_style_instances_of_one_value_lists_are_one_typed_row():
    request = b'{"instances": [{"age": [41], "income": [52000.5]}]}'
    got = rows(V1, request, b'{"predictions": [1]}')
    assert [(typed(x), y) for x, y in got] == [(typed({"age": 41, "income": 52000.5}), {"prediction": 1})]


def test_one_instance_of_columns_is_as_many_rows_as_its_columns_are_long():
    request = b'{"instances": [{"age": [41, 30], "income": [52000.5, 48000.0], "country": "FR"}]}'
    got = rows(V1, request, b'{"predictions": [1, 0]}')
    assert got == [({"age": 41, "income": 52000.5, "country": "FR"}, {"prediction": 1}),
                   ({"age": 30, "income": 48000.0, "country": "FR"}, {"prediction": 0})]
    two = b'{"instances": [{"a": [1, 2]}, {"a": [3]}]}'  # instances concatenated, as pd.concat does
    assert rows(V1, two, b'{"predictions": [10, 20, 30]}') == [({"a": 1}, {"prediction": 10}),
                                                               ({"a": 2}, {"prediction": 20}),
                                                               ({"a": 3}, {"prediction": 30})]


def test_the_dict_of_index_form_of_kserves_lightgbm_tests_is_rows_by_index():
    request = b'{"inputs": [{"a": {"0": 1.5, "1": 3.0}, "b": {"0": 2.0, "1": 4.0}}]}'
    got = rows(V1, request, b'{"predictions": [0, 1]}')
    assert got == [({"a": 1.5, "b": 2.0}, {"prediction": 0}), ({"a": 3.0, "b": 4.0}, {"prediction": 1})]
    ragged = b'{"instances": [{"a": {"0": 1}, "b": {"1": 2}}]}'  # pandas fills what an index lacks with NaN
    assert rows(V1, ragged, b"") == [({"a": 1, "b": None}, {}), ({"a": None, "b": 2}, {})]


def test_an_instance_of_records_is_one_row_per_record():
    request = b'{"instances": [[{"a": 1, "b": "x"}, {"a": 2}]]}'
    assert rows(V1, request, b'{"predictions": [5, 6]}') == [({"a": 1, "b": "x"}, {"prediction": 5}),
                                                            ({"a": 2, "b": None}, {"prediction": 6})]


def test_columns_of_different_lengths_are_a_mismatch_and_plain_objects_stay_one_row():
    assert "differ in length" in refused("mismatch", V1, b'{"instances": [{"a": [1, 2], "b": [3]}]}', b"")
    plain = b'{"instances": [{"a": 1, "img": {"b64": "AAA="}}]}'  # TF-serving's binary value: one row
    assert rows(V1, plain, b'{"predictions": [1]}') == [({"a": 1, "img": '{"b64":"AAA="}'},
                                                         {"prediction": 1})]


# -- 3. MLflow text/csv requests -------------------------------------------------------------------------

MLFLOW_CSV = (b"age,income,city,member,note\r\n"
              b"41,52000.5,Paris,true,\r\n"
              b"30,48000,\"Lyon, FR\",False,NA\r\n")


def test_an_mlflow_csv_request_is_rows_named_by_the_header_and_typed_by_column():
    got = rows(MLFLOW, MLFLOW_CSV, b'{"predictions": [0, 1]}', request_content_type="text/csv")
    assert [(typed(x), y) for x, y in got] == [
        (typed({"age": 41, "income": 52000.5, "city": "Paris", "member": True, "note": None}),
         {"prediction": 0}),
        (typed({"age": 30, "income": 48000.0, "city": "Lyon, FR", "member": False, "note": None}),
         {"prediction": 1}),
    ]


def test_csv_is_read_whatever_the_path_parameters_or_bom_and_pandas_names_blank_and_repeated_columns():
    body = "\ufeffa,,a\n1,x,2.5\n\n3,,\n".encode()
    got = rows("/score", body, b'{"predictions": [[0.1, 0.9], [0.8, 0.2]]}',
               request_content_type="text/csv; charset=utf-8")
    assert got == [({"a": 1, "Unnamed: 1": "x", "a.1": 2.5}, {"prediction_0": 0.1, "prediction_1": 0.9}),
                   ({"a": 3, "Unnamed: 1": None, "a.1": None}, {"prediction_0": 0.8, "prediction_1": 0.2})]


def test_csv_rows_longer_than_the_header_and_bodies_that_are_not_utf8_are_refused():
    csv = "text/csv"
    assert "row 0 has 3 fields" in refused("mismatch", MLFLOW, b"a,b\n1,2,3\n", b"", request_content_type=csv)
    assert "not UTF-8" in refused("not_json", MLFLOW, b"a\n\xff\n", b"", request_content_type="text/csv")
    assert "no header" in refused("unknown_shape", MLFLOW, b"\n\n", b"", request_content_type="text/csv")
    # a JSON body with its own content type is read as before
    assert rows(MLFLOW, b'{"inputs": {"a": [1]}}', b'{"predictions": [2]}',
                request_content_type="application/json") == [({"a": 1}, {"prediction": 2})]


# -- the exchanges recorded from the real servers (tests/test_real_servers.py) --------------------------

ANSWERS = Path(__file__).resolve().parent / "fixtures" / "real_server_answers"
AGE_INCOME = [{"age": 41, "income": 52000.5}, {"age": 30, "income": 12000.0}]
POSITIONAL = [{"f0": 41, "f1": 52000.5}, {"f0": 30, "f1": 12000.0}]
X = [{"x_0": 41.0, "x_1": 52000.5}, {"x_0": 3.0, "x_1": 12.0}]
SUMS = [{"prediction": 52041.5}, {"prediction": 12030.0}]
MULTI = [{"score": 52041.5, "label": "high", "range_0": 41.0, "range_1": 52000.5},
         {"score": 15.0, "label": "low", "range_0": 3.0, "range_1": 12.0}]
PYFUNC = [{"score": 93.0005, "label": "high"}, {"score": 42.0, "label": "low"}]
SKLEARN = [{"prediction": 134.0005}, {"prediction": 72.0}]
RECORDED: dict[str, tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = {
    # case: (protocol, inputs per row, outputs per row)
    "kserve-sum-v1-instances-lists": ("kserve_v1", POSITIONAL, SUMS),
    "kserve-sum-v1-inputs-lists": ("kserve_v1", POSITIONAL, SUMS),
    "kserve-sum-v1-instances-records-in-a-list": ("kserve_v1", AGE_INCOME, SUMS),
    "kserve-sum-v1-instances-pandas-one-row": ("kserve_v1", AGE_INCOME[:1], SUMS[:1]),
    "kserve-sum-v1-instances-pandas-two-rows-in-one-instance": ("kserve_v1", AGE_INCOME, SUMS),
    "kserve-sum-v1-instances-pandas-two-instances": ("kserve_v1", AGE_INCOME, SUMS),
    "kserve-sum-v1-inputs-dict-of-index": ("kserve_v1", AGE_INCOME, SUMS),
    "kserve-sum-v2-json": ("oip_v2", [{"x_0": 41.0, "x_1": 52000.5}, {"x_0": 30.0, "x_1": 12000.0}],
                           [{"output-0": 52041.5}, {"output-0": 12030.0}]),
    "kserve-multi-v2-json": ("oip_v2", X, MULTI),
    "kserve-multi-v2-binary-data-output": ("oip_v2", X, MULTI),
    "kserve-multi-v2-per-output-binary-data": ("oip_v2", X, MULTI),
    "kserve-multi-v2-binary-request": ("oip_v2", X, MULTI),
    **{f"mlflow-sklearn-{case}": ("mlflow", AGE_INCOME, SKLEARN)
       for case in ("dataframe-split", "dataframe-records", "instances", "inputs", "csv")},
    **{f"mlflow-pyfunc-{case}": ("mlflow", AGE_INCOME, PYFUNC)
       for case in ("dataframe-split", "dataframe-records", "instances", "inputs", "csv")},
}


def recorded(case: str) -> tuple[str, bytes, bytes, dict[str, Any]]:
    """The path, the request and response bytes and the headers extract takes, of a recording."""
    meta = json.loads((ANSWERS / f"{case}.json").read_text())
    request_headers = {k.lower(): v for k, v in meta["request"]["headers"].items()}
    response_headers = {k.lower(): v for k, v in meta["response"]["headers"]}
    kw = {"request_content_type": request_headers.get("content-type"),
          "request_header_length": request_headers.get("inference-header-content-length"),
          "response_header_length": response_headers.get("inference-header-content-length")}
    return (meta["request"]["path"], (ANSWERS / meta["request"]["body_file"]).read_bytes(),
            (ANSWERS / meta["response"]["body_file"]).read_bytes(), kw)


@pytest.mark.parametrize("case", list(RECORDED))
def test_each_recorded_real_server_exchange_gives_its_rows_with_their_types(case: str):
    if not (ANSWERS / f"{case}.json").exists():
        pytest.skip(f"no recording {case} (DRIFTLINE_WRITE_FIXTURES=1 pytest tests/test_real_servers.py)")
    path, request, answer, kw = recorded(case)
    protocol, inputs, outputs = RECORDED[case]
    got_protocol, instances = extract(path, request, answer, **kw)
    assert got_protocol == protocol
    assert [typed(dict(i.inputs)) for i in instances] == [typed(x) for x in inputs]
    assert [dict(i.outputs) for i in instances] == [pytest.approx(y) for y in outputs]
    assert [{k: type(v) for k, v in i.outputs.items()} for i in instances] == [
        {k: type(v) for k, v in y.items()} for y in outputs]


# -- nothing but ExtractError, whatever the bytes -----------------------------------------------------------

DATATYPES = st.sampled_from(["BOOL", "INT8", "INT64", "UINT8", "UINT64", "FP16", "BF16", "FP32", "FP64",
                             "BYTES", "FP8", ""])
TENSOR = st.fixed_dictionaries({"name": st.sampled_from(["x", "y"]), "datatype": DATATYPES,
                                "shape": st.lists(st.integers(-2, 4), max_size=3)},
                               optional={"parameters": st.fixed_dictionaries(
                                   {"binary_data_size": st.integers(-1, 40) | st.booleans()}),
                                   "data": st.lists(st.integers(-2**70, 2**70) | st.floats() | st.booleans()
                                                    | st.text(max_size=3) | st.none(), max_size=6)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors=st.lists(TENSOR, min_size=1, max_size=3), tail=st.binary(max_size=48),
       cut=st.integers(-3, 3) | st.none(), csv_body=st.binary(max_size=60),
       path=st.sampled_from([V2, V1, MLFLOW]))
def test_binary_bodies_and_csv_never_raise_anything_but_extract_error(tensors, tail, cut, csv_body, path):
    header = json.dumps({"inputs": tensors}).encode()
    length = None if cut is None else len(header) + cut
    for args, kw in (((path, header + tail, b""), {"request_header_length": length}),
                     ((path, header, b'{"outputs": []}' + tail), {"response_header_length": length}),
                     ((path, csv_body, b'{"predictions": [1]}'), {"request_content_type": "text/csv"})):
        try:
            extract(*args, **kw)
        except ExtractError:
            pass


# -- through the SDK's ASGI middleware --------------------------------------------------------------------


def test_the_asgi_middleware_hands_the_content_type_and_header_lengths_to_the_extractors():
    from collectors.sdk import Collector, DriftlineMiddleware
    from tests.test_sdk import RecordingSender

    answers = {"/invocations": ([(b"content-type", b"application/json")], b'{"predictions": [0, 1]}'),
               V2: ([(b"content-type", b"application/octet-stream"),
                     (b"inference-header-content-length", str(len(BINARY_RESPONSE_HEADER)).encode())],
                    BINARY_RESPONSE)}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers, body = answers[scope["path"]]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    collector = Collector("m", sender=RecordingSender())
    middleware = DriftlineMiddleware(app, collector=collector)
    captured: list[Any] = []
    middleware.capturer.offer = captured.append

    async def call(path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware({"type": "http", "method": "POST", "path": path, "headers": headers}, receive, send)
        return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")

    async def main() -> None:
        got = await call("/invocations", [(b"content-type", b"text/csv")], MLFLOW_CSV)
        assert got == b'{"predictions": [0, 1]}'
        got = await call(V2, [(b"content-type", b"application/octet-stream"),
                              (b"inference-header-content-length", str(len(BINARY_REQUEST_HEADER)).encode())],
                         BINARY_REQUEST)
        assert got == BINARY_RESPONSE

    try:
        asyncio.run(main())
    finally:
        collector.close()
    csv_capture, binary_capture = captured
    assert [dict(i.inputs)["city"] for i in csv_capture.instances] == ["Paris", "Lyon, FR"]
    assert [dict(i.outputs)["label"] for i in binary_capture.instances] == ["no", "yes!"]


# -- through the real proxy -------------------------------------------------------------------------------


def test_a_binary_oip_answer_is_captured_through_the_proxy_and_passed_on_byte_for_byte(proxied):  # noqa: F811
    length = str(len(BINARY_RESPONSE_HEADER))

    def answer(message: Message) -> bytes:
        assert message.body == BINARY_REQUEST
        assert message.get("Inference-Header-Content-Length") == str(len(BINARY_REQUEST_HEADER))
        return response(200, BINARY_RESPONSE,
                        ("Content-Type", "application/octet-stream"),
                        ("Inference-Header-Content-Length", length))

    async def scenario(env: Env) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(env.url + V2, data=BINARY_REQUEST, headers={
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": str(len(BINARY_REQUEST_HEADER))}) as got:
                assert got.status == 200
                assert got.headers["Inference-Header-Content-Length"] == length
                assert got.headers["Content-Type"] == "application/octet-stream"
                assert await got.read() == BINARY_RESPONSE
        for _ in range(100):  # the capture runs after the answer left
            if env.queue.captures:
                break
            await asyncio.sleep(0.01)

    env = proxied(answering(answer), scenario)
    [capture] = env.queue.captures
    assert [(dict(i.inputs), dict(i.outputs)) for i in capture.instances] == [
        ({"input0_0": 1, "input0_1": 2, "input1": True},
         {"score": 0.25, "label": "no", "proba_0": 0.75, "proba_1": 0.25}),
        ({"input0_0": 3, "input0_1": 4294967295, "input1": False},
         {"score": 0.75, "label": "yes!", "proba_0": 0.25, "proba_1": 0.75}),
    ]
    assert env.metrics.drops == {} and getattr(env.metrics, "rows", {}) == {}  # nothing left out
