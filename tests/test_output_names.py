"""Naming a model's positional predictions (issue 11, item 1): `collect --output-names`,
`DRIFTLINE_OUTPUT_NAMES`, the `driftline.io/output-names` annotation and the extractors' rule."""

from __future__ import annotations

import json

import pytest
import yaml

from collectors.capture import Capturer, CaptureSettings, RecordedExchange
from collectors.events import Instance
from collectors.extractors import ExtractError, extract
from collectors.k8s.inject import InjectOptions, inject_manifests
from monitor.errors import InputError


def kserve(predictions: object, instances: object = ((1.0, 2.0),)) -> tuple[bytes, bytes]:
    return (json.dumps({"instances": [list(i) for i in instances]}).encode(),
            json.dumps({"predictions": predictions}).encode())


def test_without_output_names_a_kserve_v1_prediction_is_the_output_named_prediction():
    _, rows = extract("/v1/models/m:predict", *kserve([0.7]))
    assert rows == (Instance({"f0": 1.0, "f1": 2.0}, {"prediction": 0.7}),)


def test_one_output_name_names_a_scalar_prediction():
    _, rows = extract("/v1/models/m:predict", *kserve([0.7, 0.2], [(1.0, 2.0), (3.0, 4.0)]),
                      output_names=["delay_score"])
    assert [r.outputs for r in rows] == [{"delay_score": 0.7}, {"delay_score": 0.2}]


def test_output_names_name_the_values_of_a_list_prediction_in_order():
    request = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1]]}}).encode()
    _, rows = extract("/invocations", request, json.dumps({"predictions": [[0.1, 0.9]]}).encode(),
                      output_names=["p_no", "p_yes"])
    assert rows[0].outputs == {"p_no": 0.1, "p_yes": 0.9}


def test_outputs_that_come_with_names_keep_them():
    request = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                                      "data": [1.0, 2.0]}]}).encode()
    response = json.dumps({"outputs": [{"name": "score", "shape": [1], "datatype": "FP32",
                                        "data": [0.4]}]}).encode()
    _, rows = extract("/v2/models/m/infer", request, response, output_names=["delay_score"])
    assert rows[0].outputs == {"score": 0.4}
    _, rows = extract("/v1/models/m:predict", *kserve([{"label": 1, "p": 0.8}]), output_names=["x"])
    assert rows[0].outputs == {"label": 1, "p": 0.8}


def test_a_prediction_with_more_values_than_output_names_is_a_mismatch():
    with pytest.raises(ExtractError, match="mismatch: a prediction has 2 values but output_names has 1"):
        extract("/v1/models/m:predict", *kserve([[0.1, 0.9]]), output_names=["p"])


def test_the_capture_pipeline_applies_output_names_and_counts_a_mismatch_as_unparseable_rows():
    offered: list[object] = []
    rows: dict[str, int] = {}
    requests: dict[str, int] = {}

    class Drops:
        def dropped(self, reason: str, events: int, model: str | None = None) -> None:
            rows[reason] = rows.get(reason, 0) + events

        def unparsed(self, reason: str, model: str | None = None) -> None:  # one request (issue 15)
            requests[reason] = requests.get(reason, 0) + 1

        def uncaptured(self, status: int | None, model: str | None = None) -> None:
            raise AssertionError("every answer here is a 200")

    pipeline = Capturer(CaptureSettings(model="m", output_names=("delay_score",)), Drops(), offered.append,
                        clock=lambda: 0.0)
    request, response = kserve([0.7])
    exchange = RecordedExchange(status=200, path="/v1/models/m:predict", request_body=request,
                                response_body=response, request_id="r", elapsed=0.001)
    capture = pipeline.exchange(exchange)
    assert capture in offered and capture.instances[0].outputs == {"delay_score": 0.7}  # type: ignore[union-attr]
    request, response = kserve([[0.1, 0.9]])
    bad = RecordedExchange(status=200, path="/v1/models/m:predict", request_body=request,
                           response_body=response, request_id="r2", elapsed=0.001)
    # the request's one row was read; its answer has two values for one name: the row is counted
    assert pipeline.exchange(bad) == "unparseable" and (rows, requests) == ({"unparseable": 1}, {})


def test_collect_reads_output_names_from_its_flag_and_from_the_environment(monkeypatch):
    from monitor.cli.main import main

    seen: list[object] = []
    monkeypatch.setattr("collectors.sidecar.run", seen.append)
    base = ["collect", "--upstream", "http://127.0.0.1:8080", "--model", "m", "--kafka", "k:9092"]
    assert main([*base, "--output-names", "p_no, p_yes"]) == 0
    monkeypatch.setenv("DRIFTLINE_OUTPUT_NAMES", "delay_score")
    assert main(base) == 0
    assert [s.proxy.output_names for s in seen] == [("p_no", "p_yes"), ("delay_score",)]  # type: ignore[attr-defined]


POD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: flights, labels: {app.kubernetes.io/name: flight-delay}}
spec:
  selector: {matchLabels: {app: flights}}
  template:
    metadata:
      labels: {app: flights, app.kubernetes.io/name: flight-delay}
      annotations: {driftline.io/output-names: "delay_score"}
    spec:
      containers:
        - name: model
          image: kserve/sklearnserver
          ports: [{containerPort: 8080}]
"""


def test_the_output_names_annotation_reaches_the_collector_as_its_environment_variable():
    [deployment] = inject_manifests(list(yaml.safe_load_all(POD)), InjectOptions())
    containers = deployment["spec"]["template"]["spec"]["containers"]
    [collector] = [c for c in containers if c["name"] == "driftline-collector"]
    assert {"name": "DRIFTLINE_OUTPUT_NAMES", "value": "delay_score"} in collector["env"]


@pytest.mark.parametrize("value", ["", "a,,b", " , "])
def test_an_output_names_annotation_with_an_empty_name_is_refused_naming_it(value):
    with pytest.raises(InputError, match="driftline.io/output-names"):
        InjectOptions.from_annotations({"driftline.io/output-names": value})
