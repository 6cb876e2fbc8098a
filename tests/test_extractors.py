"""The collector's payload extractors: real protocol bodies in, instances out, and every refusal."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.events import Capture, Instance
from collectors.extractors import (
    PROTOCOLS,
    REASONS,
    ExtractError,
    FieldPolicy,
    GenericSpec,
    apply,
    by_shape,
    compile_spec,
    extract,
)
from monitor.errors import InputError, UsageError

# -- bodies from the protocols' own documentation, written out literally ---------------------------------

# KServe "First InferenceService" (kserve.github.io/website, get_started/first_isvc): iris-input.json
# sent to /v1/models/sklearn-iris:predict, and the documented answer.
KSERVE_V1_IRIS_REQUEST = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
KSERVE_V1_IRIS_RESPONSE = b'{"predictions":[1,1]}'

# KServe TensorFlow sample (docs/samples/v1beta1/tensorflow, "flowers"): the documented response to
# POST /v1/models/tensorflow-sample:predict.  The sample's input.json is one instance
# {"instances":[{"image_bytes":{"b64":"<16 KB of base64 JPEG>"},"key":"   1"}]}; the base64 is cut
# short here, the shape is the sample's.
KSERVE_V1_FLOWERS_REQUEST = (b'{"instances":[{"image_bytes":{"b64":"/9j/4AAQSkZJRgABAQAAAQABAAD"},'
                             b'"key":"   1"}]}')
KSERVE_V1_FLOWERS_RESPONSE = b"""{
    "predictions": [
        {
            "scores": [0.999114931, 9.20987877e-05, 0.000136786213, 0.000337257545, 0.000300532585, 1.84813616e-05],
            "prediction": 0,
            "key": "   1"
        }
    ]
}"""  # noqa: E501 (the documented body, verbatim)

# Open Inference Protocol, specification/protocol/inference_rest.md, "Inference Request Examples"
# (github.com/kserve/open-inference-protocol), verbatim.  The example is not self-consistent: input1
# has shape [3] but one data value, the batch sizes disagree (2 vs 3), and the response lacks the
# comma after "id" : "42", so it is not JSON.  The extractor says so rather than guessing.
OIP_SPEC_REQUEST = b"""{
  "id" : "42",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "data" : [ 1, 2, 3, 4 ]
    },
    {
      "name" : "input1",
      "shape" : [ 3 ],
      "datatype" : "BOOL",
      "data" : [ true ]
    }
  ],
  "outputs" : [
    {
      "name" : "output0"
    }
  ]
}"""
OIP_SPEC_RESPONSE = b"""{
  "id" : "42"
  "outputs" : [
    {
      "name" : "output0",
      "shape" : [ 3, 2 ],
      "datatype"  : "FP32",
      "data" : [ 1.0, 1.1, 2.0, 2.1, 3.0, 3.1 ]
    }
  ]
}"""

# KServe v2 (Open Inference Protocol) sample, docs/samples/v1beta1/xgboost/README.md in kserve/kserve:
# iris-input.json sent to /v2/models/xgboost-iris/infer, and the documented output.
OIP_KSERVE_REQUEST = b"""{
  "inputs": [
    {
      "name": "input-0",
      "shape": [2, 4],
      "datatype": "FP32",
      "data": [
        [6.8, 2.8, 4.8, 1.4],
        [6.0, 3.4, 4.5, 1.6]
      ]
    }
  ]
}"""
OIP_KSERVE_RESPONSE = b"""{
  "id": "4e546709-0887-490a-abd6-00cbc4c26cf4",
  "model_name": "xgboost-iris",
  "model_version": "v1.0.0",
  "outputs": [
    {
      "data": [1.0, 1.0],
      "datatype": "FP32",
      "name": "predict",
      "parameters": null,
      "shape": [2]
    }
  ]
}"""

# MLflow, "Deploy MLflow Model as a Local Inference Server" / `mlflow models serve --help`
# (mlflow.org/docs/latest/ml/deployment/deploy-model-locally): the four accepted JSON inputs.
MLFLOW_SPLIT = b"""{
        "dataframe_split": {"columns": ["a", "b"],
                            "index": [0, 1, 2],
                            "data": [[1, 2], [3, 4], [5, 6]]}
    }"""
MLFLOW_RECORDS = b"""{
        "dataframe_records": [{"a":1, "b":2}, {"a":3, "b":4}, {"a":5, "b":6}]
    }"""
MLFLOW_INPUTS_ROWS = b"""{
        "inputs": [[1, 2], [3, 4], [5, 6]]
    }"""
MLFLOW_INSTANCES = b"""{
    "instances": [
        {"a": "s1", "b": 1, "c": [1, 2, 3]},
        {"a": "s2", "b": 2, "c": [4, 5, 6]},
        {"a": "s3", "b": 3, "c": [7, 8, 9]}
    ]
}"""
MLFLOW_INPUTS_COLUMNS = b"""{
    "inputs": {"a": ["s1", "s2", "s3"], "b": [1, 2, 3], "c": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}
}"""
# The scoring server's answer: {"predictions": [...]} (MLflow 2), a bare list from MLflow 1.x.
MLFLOW_RESPONSE = b'{"predictions": [0.5, 1.5, 2.5]}'


def refuse(reason: str, *args: Any, **kw: Any) -> ExtractError:
    with pytest.raises(ExtractError) as info:
        extract(*args, **kw)
    error = info.value
    assert error.reason == reason
    assert isinstance(error, InputError)
    message = str(error)
    assert "\n" not in message and message.startswith(f"{reason}: ") and len(message) <= 320
    return error


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- KServe v1 -------------------------------------------------------------------------------------------


def test_the_kserve_iris_example_gives_one_instance_per_row_with_its_prediction():
    protocol, instances = extract("/v1/models/sklearn-iris:predict", KSERVE_V1_IRIS_REQUEST,
                                  KSERVE_V1_IRIS_RESPONSE)
    assert protocol == "kserve_v1"
    assert instances == (
        Instance({"f0": 6.8, "f1": 2.8, "f2": 4.8, "f3": 1.4}, {"prediction": 1}),
        Instance({"f0": 6.0, "f1": 3.4, "f2": 4.5, "f3": 1.6}, {"prediction": 1}),
    )


def test_feature_names_name_the_values_of_list_instances():
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    _, instances = extract("/v1/models/sklearn-iris:predict", KSERVE_V1_IRIS_REQUEST, KSERVE_V1_IRIS_RESPONSE,
                           feature_names=names)
    assert instances[1].inputs == {"sepal_length": 6.0, "sepal_width": 3.4, "petal_length": 4.5,
                                   "petal_width": 1.6}


def test_the_kserve_flowers_example_keeps_scalars_and_writes_nested_values_as_json_text():
    _, (instance,) = extract("/v1/models/tensorflow-sample:predict", KSERVE_V1_FLOWERS_REQUEST,
                             KSERVE_V1_FLOWERS_RESPONSE)
    assert instance.inputs == {"image_bytes": '{"b64":"/9j/4AAQSkZJRgABAQAAAQABAAD"}', "key": "   1"}
    assert instance.outputs["prediction"] == 0 and instance.outputs["key"] == "   1"
    assert json.loads(str(instance.outputs["scores"]))[1] == pytest.approx(9.20987877e-05)


def test_nested_values_become_compact_key_sorted_json_text():
    request = body({"instances": [{"tags": {"b": 1, "a": [True, None]}, "n": 1}]})
    _, (instance,) = extract("/v1/models/m:predict", request, b"")
    assert instance.inputs == {"tags": '{"a":[true,null],"b":1}', "n": 1}


def test_list_and_object_predictions_are_named_by_position_and_by_key():
    request = body({"instances": [[1], [2]]})
    _, lists = extract("/v1/models/m:predict", request, body({"predictions": [[0.2, 0.8], [0.6, 0.4]]}))
    assert [x.outputs for x in lists] == [{"prediction_0": 0.2, "prediction_1": 0.8},
                                          {"prediction_0": 0.6, "prediction_1": 0.4}]
    answer = body({"predictions": [{"label": "a"}, {"label": "b"}]})
    _, dicts = extract("/v1/models/m:predict", request, answer)
    assert [x.outputs for x in dicts] == [{"label": "a"}, {"label": "b"}]


def test_the_v1_inputs_alias_takes_rows_or_columns():
    answer = body({"predictions": [5, 6]})
    rows = extract("/v1/models/m:predict", body({"inputs": [{"x": 1}, {"x": 2}]}), answer)
    cols = extract("/v1/models/m:predict", body({"inputs": {"x": [1, 2]}}), answer)
    expected = (Instance({"x": 1}, {"prediction": 5}), Instance({"x": 2}, {"prediction": 6}))
    assert rows == cols == ("kserve_v1", expected)


def test_scalar_instances_are_one_feature_each():
    _, instances = extract("/v1/models/m:predict", body({"instances": ["good movie", "bad movie"]}),
                           body({"predictions": [1, 0]}))
    assert [x.inputs for x in instances] == [{"f0": "good movie"}, {"f0": "bad movie"}]


# -- Open Inference Protocol v2 ---------------------------------------------------------------------------


def test_the_kserve_v2_iris_example_gives_columns_by_tensor_name_and_pairs_the_output_tensor():
    protocol, instances = extract("/v2/models/xgboost-iris/infer", OIP_KSERVE_REQUEST, OIP_KSERVE_RESPONSE)
    assert protocol == "oip_v2"
    assert instances == (
        Instance({"input-0_0": 6.8, "input-0_1": 2.8, "input-0_2": 4.8, "input-0_3": 1.4}, {"predict": 1.0}),
        Instance({"input-0_0": 6.0, "input-0_1": 3.4, "input-0_2": 4.5, "input-0_3": 1.6}, {"predict": 1.0}),
    )


def test_the_specifications_own_example_is_refused_for_what_is_wrong_with_it():
    error = refuse("mismatch", "/v2/models/mymodel/infer", OIP_SPEC_REQUEST, b"")
    assert "'input1'" in str(error) and "[3]" in str(error)
    refuse("not_json", "/v2/models/mymodel/infer", OIP_SPEC_REQUEST, OIP_SPEC_RESPONSE)
    # With input1 made consistent, the batch sizes still disagree (2 against 3).
    fixed = json.loads(OIP_SPEC_REQUEST)
    fixed["inputs"][1]["data"] = [True, False, True]
    error = refuse("mismatch", "/v2/models/mymodel/infer", body(fixed), b"")
    assert "'input0' has 2" in str(error) and "'input1' has 3" in str(error)


def test_the_specifications_response_pairs_with_a_three_instance_request():
    response = OIP_SPEC_RESPONSE.replace(b'"42"\n', b'"42",\n')
    request = body({"inputs": [tensor("input1", [3], [True, False, True], "BOOL")]})
    _, instances = extract("/v2/models/mymodel/versions/1/infer", request, response)
    assert instances == (Instance({"input1": True}, {"output0_0": 1.0, "output0_1": 1.1}),
                         Instance({"input1": False}, {"output0_0": 2.0, "output0_1": 2.1}),
                         Instance({"input1": True}, {"output0_0": 3.0, "output0_1": 3.1}))


def tensor(name: str, shape: Any, data: Any, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_flat_and_nested_tensor_data_give_the_same_instances():
    flat = extract("/v2/models/m/infer", body({"inputs": [tensor("x", [2, 3], [1, 2, 3, 4, 5, 6])]}), b"")
    nested_data = [[1, 2, 3], [4, 5, 6]]
    nested = extract("/v2/models/m/infer", body({"inputs": [tensor("x", [2, 3], nested_data)]}), b"")
    assert flat == nested
    assert flat[1][1].inputs == {"x_0": 4, "x_1": 5, "x_2": 6}


def test_tensors_of_shape_n_and_n_by_1_are_one_feature_and_bytes_stay_strings():
    request = body({"inputs": [tensor("age", [2, 1], [[41], [52]], "INT32"),
                               tensor("city", [2], ["Lyon", "Kyiv"], "BYTES")]})
    response = body({"outputs": [tensor("proba", [2, 2], [0.1, 0.9, 0.7, 0.3])]})
    _, instances = extract("/v2/models/m/infer", request, response)
    assert instances == (Instance({"age": 41, "city": "Lyon"}, {"proba_0": 0.1, "proba_1": 0.9}),
                         Instance({"age": 52, "city": "Kyiv"}, {"proba_0": 0.7, "proba_1": 0.3}))


def test_higher_rank_tensors_give_each_instance_its_sub_tensor_as_json_text():
    request = body({"inputs": [tensor("img", [2, 2, 2], list(range(8)), "UINT8")]})
    _, instances = extract("/v2/models/m/infer", request, b"")
    assert [x.inputs for x in instances] == [{"img": "[[0,1],[2,3]]"}, {"img": "[[4,5],[6,7]]"}]


def test_a_minus_one_dimension_is_inferred_and_feature_names_name_a_single_tensors_columns():
    request = body({"inputs": [tensor("input-0", [-1, 2], [[1, 2], [3, 4], [5, 6]])]})
    _, instances = extract("/v2/models/m/infer", request, b"", feature_names=["a", "b"])
    assert [x.inputs for x in instances] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 5, "b": 6}]


def test_output_tensors_must_have_the_request_batch_size():
    request = body({"inputs": [tensor("x", [2], [1, 2])]})
    answer = body({"outputs": [tensor("y", [3], [1, 2, 3])]})
    error = refuse("mismatch", "/v2/models/m/infer", request, answer)
    assert "2 instances" in str(error)


def test_binary_tensor_data_is_an_unknown_shape():
    request = body({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                                "parameters": {"binary_data_size": 4}}]})
    assert "binary" in str(refuse("unknown_shape", "/v2/models/m/infer", request, b""))


# -- MLflow ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_body", [MLFLOW_SPLIT, MLFLOW_RECORDS], ids=["split", "records"])
def test_mlflow_dataframes_give_one_instance_per_row_named_by_column(request_body: bytes):
    protocol, instances = extract("/invocations", request_body, MLFLOW_RESPONSE)
    assert protocol == "mlflow"
    assert instances == (Instance({"a": 1, "b": 2}, {"prediction": 0.5}),
                         Instance({"a": 3, "b": 4}, {"prediction": 1.5}),
                         Instance({"a": 5, "b": 6}, {"prediction": 2.5}))


def test_mlflow_tensor_rows_are_positional_and_named_by_feature_names():
    _, instances = extract("/invocations", MLFLOW_INPUTS_ROWS, MLFLOW_RESPONSE)
    assert [x.inputs for x in instances] == [{"f0": 1, "f1": 2}, {"f0": 3, "f1": 4}, {"f0": 5, "f1": 6}]
    _, named = extract("/invocations", MLFLOW_INPUTS_ROWS, MLFLOW_RESPONSE, feature_names=("a", "b"))
    assert [x.inputs for x in named] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 5, "b": 6}]


def test_mlflow_instances_and_columnar_inputs_give_the_same_rows():
    by_rows = extract("/invocations", MLFLOW_INSTANCES, MLFLOW_RESPONSE)
    by_columns = extract("/invocations", MLFLOW_INPUTS_COLUMNS, MLFLOW_RESPONSE)
    assert by_rows == by_columns
    assert by_rows[1][2] == Instance({"a": "s3", "b": 3, "c": "[7,8,9]"}, {"prediction": 2.5})


def test_mlflow_answers_as_a_bare_list_records_or_columns_pair_by_row():
    expected = [{"label": "x", "p": 0.1}, {"label": "y", "p": 0.2}, {"label": "z", "p": 0.3}]
    answers = [body(expected), body({"predictions": expected}),
               body({"predictions": {"label": ["x", "y", "z"], "p": [0.1, 0.2, 0.3]}})]
    for answer in answers:
        _, instances = extract("/invocations", MLFLOW_RECORDS, answer)
        assert [dict(x.outputs) for x in instances] == expected


def test_mlflow_refuses_rows_that_do_not_fit_the_columns_and_ambiguous_bodies():
    split = body({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3]]}})
    assert "row 1" in str(refuse("mismatch", "/invocations", split, b""))
    both = body({"instances": [[1]], "dataframe_records": [{"a": 1}]})
    refuse("unknown_shape", "/invocations", both, b"")
    ragged = body({"inputs": {"a": [1, 2], "b": [1]}})
    refuse("mismatch", "/invocations", ragged, b"")


# -- choosing the protocol -------------------------------------------------------------------------------

V1_BODY = body({"instances": [[1, 2]]})
V2_BODY = body({"inputs": [tensor("x", [1, 2], [1, 2])]})
MLFLOW_BODY = body({"dataframe_records": [{"a": 1}]})


@pytest.mark.parametrize(("path", "request_body", "expected"), [
    ("/v1/models/iris:predict", V1_BODY, "kserve_v1"),
    ("/v1/models/iris%3Apredict?timeout=3", V1_BODY, "kserve_v1"),
    ("http://iris.default.svc:8080/v1/models/iris:predict", V1_BODY, "kserve_v1"),
    ("/v2/models/iris/infer", V2_BODY, "oip_v2"),
    ("/v2/models/iris/versions/7/infer/", V2_BODY, "oip_v2"),
    ("/seldon/ns/iris/v2/models/iris/infer", V2_BODY, "oip_v2"),
    ("/invocations", MLFLOW_BODY, "mlflow"),
    ("/invocations", V1_BODY, "mlflow"),
])
def test_auto_detection_goes_by_path_first(path: str, request_body: bytes, expected: str):
    assert extract(path, request_body, b"")[0] == expected


@pytest.mark.parametrize(("request_body", "expected"), [
    (V1_BODY, "kserve_v1"),
    (body({"inputs": [[1, 2]]}), "kserve_v1"),
    (V2_BODY, "oip_v2"),
    (MLFLOW_BODY, "mlflow"),
    (body({"dataframe_split": {"columns": ["a"], "data": [[1]]}}), "mlflow"),
    (body({"inputs": {"a": [1]}}), "mlflow"),
])
def test_auto_detection_falls_back_to_the_request_shape(request_body: bytes, expected: str):
    assert by_shape(json.loads(request_body)) == expected
    assert extract("/predict", request_body, b"")[0] == expected


def test_a_known_path_wins_over_the_shape_and_a_named_protocol_over_both():
    refuse("unknown_shape", "/v2/models/m/infer", V1_BODY, b"")
    assert extract("/v2/models/m/infer", V1_BODY, b"", protocol="kserve_v1")[0] == "kserve_v1"


def test_an_unknown_protocol_or_a_generic_protocol_without_spec_is_a_usage_error():
    with pytest.raises(UsageError):
        extract("/", V1_BODY, b"", protocol="v3")
    with pytest.raises(UsageError):
        extract("/", V1_BODY, b"", protocol="generic")
    with pytest.raises(UsageError):
        extract("/", V1_BODY, b"", feature_names="abc")
    assert PROTOCOLS == ("kserve_v1", "oip_v2", "mlflow", "generic")


# -- responses without predictions, and every refusal ---------------------------------------------------


@pytest.mark.parametrize("response", [b"", b"  \n", b'{"error": "model not ready"}',
                                      b'{"predictions": null}'])
def test_a_response_without_predictions_gives_instances_with_empty_outputs(response: bytes):
    _, instances = extract("/v1/models/iris:predict", KSERVE_V1_IRIS_REQUEST, response)
    assert [dict(x.outputs) for x in instances] == [{}, {}]
    assert len(instances) == 2 and instances[0].inputs["f0"] == 6.8


@pytest.mark.parametrize(("reason", "path", "request_body", "response_body"), [
    ("not_json", "/v1/models/m:predict", b"", b""),
    ("not_json", "/v1/models/m:predict", b"\xff\xfe", b""),
    ("not_json", "/v1/models/m:predict", b"[" * 5000, b""),
    ("not_json", "/v1/models/m:predict", V1_BODY, b"<html>502 Bad Gateway</html>"),
    ("not_json", "/v1/models/m:predict", b'{"instances": [1e999]}', b""),
    ("unknown_shape", "/somewhere", body({"features": [1]}), b""),
    ("unknown_shape", "/v1/models/m:predict", body([1, 2]), b""),
    ("unknown_shape", "/v1/models/m:predict", body({"instances": {"a": 1}}), b""),
    ("unknown_shape", "/v2/models/m/infer", body({"inputs": []}), b""),
    ("unknown_shape", "/v2/models/m/infer", body({"inputs": [tensor("x", "2", [1])]}), b""),
    ("unknown_shape", "/v2/models/m/infer", body({"inputs": [tensor("x", [3, 0], [])]}), b""),
    ("unknown_shape", "/invocations", body({"dataframe_split": [1]}), b""),
    ("mismatch", "/v1/models/m:predict", KSERVE_V1_IRIS_REQUEST, body({"predictions": [1, 1, 1]})),
    ("mismatch", "/v1/models/m:predict", KSERVE_V1_IRIS_REQUEST, body({"predictions": 1})),
    ("mismatch", "/v2/models/m/infer", body({"inputs": [tensor("x", [2, 2], [1, 2, 3])]}), b""),
    ("mismatch", "/v2/models/m/infer", body({"inputs": [tensor("x", [2], [1, 2]), tensor("y", [1], [7])]}),
     b""),
])
def test_every_refusal_has_its_reason_and_a_one_line_message(reason: str, path: str, request_body: bytes,
                                                             response_body: bytes):
    assert reason in REASONS
    refuse(reason, path, request_body, response_body)


def test_feature_names_that_do_not_fit_the_values_are_a_mismatch():
    error = refuse("mismatch", "/v1/models/iris:predict", KSERVE_V1_IRIS_REQUEST, b"",
                   feature_names=["a", "b"])
    assert "4 values" in str(error) and "2 names" in str(error)


def test_messages_name_counts_and_keys_but_never_feature_values():
    secret = "4111-1111-1111-1111"
    request = body({"instances": [{"card": secret}, {"card": secret}]})
    error = refuse("mismatch", "/v1/models/m:predict", request, body({"predictions": [{"card": secret}]}))
    assert secret not in str(error)


# -- generic JSONPath ------------------------------------------------------------------------------------

CUSTOM_REQUEST = body({"model": "churn", "data": [{"id": 7, "features": {"age": 41, "plan": "pro"}},
                                                  {"id": 8, "features": {"age": 29, "plan": "free"}}]})
CUSTOM_RESPONSE = body({"result": [{"id": 7, "score": 0.91, "label": "churn"},
                                   {"id": 8, "score": 0.12, "label": "stay"}]})


def test_generic_paths_select_instances_their_inputs_and_their_outputs():
    spec = GenericSpec(instances="$.data[*]", inputs="$.features", outputs="$.result[*].score")
    protocol, instances = extract("/api/score", CUSTOM_REQUEST, CUSTOM_RESPONSE, generic=spec)
    assert protocol == "generic"
    assert instances == (Instance({"age": 41, "plan": "pro"}, {"score": 0.91}),
                         Instance({"age": 29, "plan": "free"}, {"score": 0.12}))


def test_generic_output_instances_make_outputs_relative_and_several_matches_are_several_fields():
    spec = GenericSpec(instances="$.data[*]", inputs="features.age", outputs="$['score','label']",
                       output_instances="$.result[*]")
    _, instances = extract("/api/score", CUSTOM_REQUEST, CUSTOM_RESPONSE, generic=spec)
    assert instances == (Instance({"age": 41}, {"score": 0.91, "label": "churn"}),
                         Instance({"age": 29}, {"score": 0.12, "label": "stay"}))


def test_generic_without_inputs_takes_the_whole_instance_and_index_matches_are_predictions():
    spec = GenericSpec(instances="$.rows[*]", inputs=None, outputs="$.scores[*]")
    _, instances = extract("/x", body({"rows": [[1, "a"], [2, "b"]]}), body({"scores": [0.3, 0.4]}),
                           generic=spec, feature_names=["n", "s"])
    assert instances == (Instance({"n": 1, "s": "a"}, {"prediction": 0.3}),
                         Instance({"n": 2, "s": "b"}, {"prediction": 0.4}))


def test_generic_filters_of_the_extended_syntax_work():
    spec = GenericSpec(instances="$.data[?(@.id > 7)]", inputs="$.features", outputs="$.result[?(@.id > 7)]")
    _, (instance,) = extract("/api/score", CUSTOM_REQUEST, CUSTOM_RESPONSE, generic=spec)
    assert instance == Instance({"age": 29, "plan": "free"}, {"id": 8, "score": 0.12, "label": "stay"})


def test_generic_specs_are_compiled_once_and_bad_expressions_are_one_line_errors():
    spec = GenericSpec(instances="$.data[*]", inputs=None, outputs="$.out[*]")
    assert compile_spec(spec) is compile_spec(spec)
    with pytest.raises(ExtractError) as info:
        compile_spec(GenericSpec(instances="$.data[*]", inputs="$.[[", outputs="$"))
    assert info.value.reason == "unknown_shape"
    assert "\n" not in str(info.value) and "inputs '$.[['" in str(info.value)


def test_generic_counts_must_agree_and_instances_must_match():
    spec = GenericSpec(instances="$.data[*]", inputs="$.features", outputs="$.result[*].score")
    refuse("mismatch", "/x", CUSTOM_REQUEST, body({"result": [{"score": 1}]}), generic=spec)
    refuse("unknown_shape", "/x", body({"other": []}), b"", generic=spec, protocol="generic")
    _, instances = extract("/x", CUSTOM_REQUEST, body({"error": "boom"}), generic=spec)
    assert [dict(x.outputs) for x in instances] == [{}, {}]


def test_a_generic_spec_goes_after_the_path_but_before_the_shape():
    spec = GenericSpec(instances="$.instances[*]", inputs=None, outputs="$.out[*]")
    assert extract("/v1/models/m:predict", V1_BODY, b"", generic=spec)[0] == "kserve_v1"
    assert extract("/custom", V1_BODY, body({"out": [1]}), generic=spec)[0] == "generic"
    assert extract("/custom", MLFLOW_BODY, b"", generic=spec)[0] == "mlflow"


# -- personal data ---------------------------------------------------------------------------------------


def test_the_field_policy_drops_and_hashes_in_inputs_and_outputs():
    salt = b"per-model secret"
    instances = (Instance({"email": "a@b.c", "zip": 75011, "age": 41, "name": None},
                          {"score": 0.3, "segment": "gold"}),)
    policy = FieldPolicy(drop=frozenset({"email", "age"}), hash=frozenset({"zip", "segment", "name", "age"}),
                         salt=salt)
    (cleaned,) = apply(instances, policy)
    assert cleaned.inputs == {"zip": hashlib.sha256(salt + b"75011").hexdigest()[:16], "name": None}
    assert cleaned.outputs == {"score": 0.3, "segment": hashlib.sha256(salt + b"gold").hexdigest()[:16]}


def test_hashes_are_deterministic_per_salt_so_categories_stay_comparable():
    rows = tuple(Instance({"city": c}) for c in ["Lyon", "Kyiv", "Lyon"])
    first = apply(rows, FieldPolicy(hash=frozenset({"city"}), salt=b"s1"))
    again = apply(rows, FieldPolicy(hash=frozenset({"city"}), salt=b"s1"))
    other = apply(rows, FieldPolicy(hash=frozenset({"city"}), salt=b"s2"))
    assert first == again and first[0].inputs == first[2].inputs != first[1].inputs
    assert first[0].inputs != other[0].inputs
    assert first[1].inputs["city"] == hashlib.sha256(b"s1Kyiv").hexdigest()[:16]
    assert apply(rows, FieldPolicy()) == rows


def test_extracted_and_cleaned_instances_become_wire_events_one_per_row():
    _, instances = extract("/invocations", MLFLOW_RECORDS, MLFLOW_RESPONSE)
    cleaned = apply(instances, FieldPolicy(drop=frozenset({"b"})))
    events = Capture(model="m", request_id="r1", ts_ms=1, instances=cleaned).events()
    assert [e["request_id"] for e in events] == ["r1/0", "r1/1", "r1/2"]
    assert events[2]["inputs"] == {"a": 5} and events[2]["outputs"] == {"prediction": 2.5}


# -- nothing but ExtractError, whatever the bytes ---------------------------------------------------------

PATHS = st.sampled_from(["/v1/models/m:predict", "/v2/models/m/infer", "/invocations", "/other", ""])
MODES = st.sampled_from(["auto", *PROTOCOLS])
KEYS = st.sampled_from(["instances", "inputs", "outputs", "predictions", "name", "shape", "datatype", "data",
                        "dataframe_split", "dataframe_records", "columns", "features", "result", "score"])
LEAVES = (st.none() | st.booleans() | st.integers(-3, 2**70)
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5))
JSON_VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(KEYS | st.text(max_size=3), inner, max_size=5), max_leaves=40)
ANY_SPEC = GenericSpec(instances="$.data[*]", inputs="$.features", outputs="$.result[*].score")


def only_extract_errors(path: str, request: bytes, response: bytes, protocol: str, names: Any) -> None:
    try:
        protocol_used, instances = extract(path, request, response, protocol=protocol, generic=ANY_SPEC,
                                           feature_names=names)
    except ExtractError as error:
        assert error.reason in REASONS and "\n" not in str(error)
    else:
        assert protocol_used in PROTOCOLS
        assert all(isinstance(x, Instance) for x in instances)
        for x in instances:
            for value in [*x.inputs.values(), *x.outputs.values()]:
                assert value is None or isinstance(value, str | int | float | bool)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=PATHS, request=st.binary(max_size=200), response=st.binary(max_size=200), protocol=MODES)
def test_random_bytes_never_raise_anything_but_extract_error(path: str, request: bytes, response: bytes,
                                                              protocol: str):
    only_extract_errors(path, request, response, protocol, None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=PATHS, request=JSON_VALUES, response=JSON_VALUES, protocol=MODES,
       names=st.none() | st.lists(st.text(max_size=3), max_size=3))
def test_random_json_never_raises_anything_but_extract_error(path: str, request: Any, response: Any,
                                                             protocol: str, names: Any):
    only_extract_errors(path, body(request), body(response), protocol, names)


TENSORS = st.fixed_dictionaries({
    "name": st.text(min_size=1, max_size=3), "shape": st.lists(st.integers(-2, 4), max_size=4),
    "datatype": st.sampled_from(["FP32", "BYTES"]), "data": JSON_VALUES | st.lists(LEAVES, max_size=8)})
ROWS = st.lists(st.lists(LEAVES, max_size=3) | st.dictionaries(KEYS, LEAVES, max_size=3) | LEAVES, max_size=4)
SHAPED_REQUESTS = st.one_of(
    st.fixed_dictionaries({"inputs": st.lists(TENSORS, max_size=3)}),
    st.fixed_dictionaries({"instances": ROWS | JSON_VALUES}),
    st.fixed_dictionaries({"inputs": ROWS | st.dictionaries(KEYS, st.lists(LEAVES, max_size=3), max_size=3)}),
    st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries({"columns": st.lists(KEYS, max_size=3),
                                                                     "data": ROWS})}),
    st.fixed_dictionaries({"dataframe_records": ROWS}),
    st.fixed_dictionaries({"data": st.lists(st.fixed_dictionaries({"features": JSON_VALUES}), max_size=3)}),
)
SHAPED_RESPONSES = st.one_of(
    st.fixed_dictionaries({"outputs": st.lists(TENSORS, max_size=3)}),
    st.fixed_dictionaries({"predictions": ROWS | JSON_VALUES}),
    st.fixed_dictionaries({"result": st.lists(st.fixed_dictionaries({"score": LEAVES}), max_size=4)}),
    ROWS,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=PATHS, request=SHAPED_REQUESTS, response=SHAPED_RESPONSES, protocol=MODES,
       names=st.none() | st.lists(st.text(max_size=3), max_size=4))
def test_protocol_shaped_json_never_raises_anything_but_extract_error(path: str, request: Any, response: Any,
                                                                      protocol: str, names: Any):
    only_extract_errors(path, body(request), body(response), protocol, names)
