"""The sample flight-delay model (sample_data/model): reproducible training, and its real
model server answering OIP v2 and KServe v1 with the same probabilities as ``Predictor``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.servers import Process, free_port

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "sample_data" / "model"
NAME = "flight-delay"
TRAIN_TIMEOUT_S = 120.0
START_TIMEOUT_S = 60.0


def load_flight_model() -> ModuleType:
    """sample_data/model/flight_model.py, imported by path (it is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("flight_model", MODEL_DIR / "flight_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("flight_model", module)
    spec.loader.exec_module(module)
    return module


fm = load_flight_model()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clean(value: Any) -> Any:
    """A JSON-able feature value: NaN and pandas NA become None, numpy scalars Python ones."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def reference_rows(n: int, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """The first ``n`` rows of the model's reference profile, features only unless ``columns``."""
    frame = pd.read_parquet(MODEL_DIR / "reference.parquet").head(n)[columns or fm.FEATURES]
    return [{k: clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def post(url: str, body: bytes | dict[str, Any]) -> tuple[int, Any]:
    """POST JSON (or raw bytes); (status, parsed JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def oip_request(rows: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
    """An OIP v2 inference request with one tensor per feature."""
    inputs = []
    for f in fm.FEATURES:
        numeric = f in fm.NUMERICAL
        inputs.append({"name": f, "shape": [len(rows)], "datatype": "FP64" if numeric else "BYTES",
                       "data": [row[f] for row in rows]})
    doc: dict[str, Any] = {"inputs": inputs}
    if request_id is not None:
        doc["id"] = request_id
    return doc


def start_server(tmp_path: Path, model_dir: Path = MODEL_DIR) -> Process:
    port = free_port()
    return Process([sys.executable, str(MODEL_DIR / "server.py"), "--host", "127.0.0.1", "--port", str(port),
                    "--model-dir", str(model_dir), "--name", NAME], tmp_path, name=f"model-server-{port}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real model server on a free port for this module; yields its base URL."""
    proc = start_server(tmp_path_factory.mktemp("model-server"))
    with proc:
        url = f"http://127.0.0.1:{proc.args[proc.args.index('--port') + 1]}"
        proc.wait_http(f"{url}/v2/health/ready", START_TIMEOUT_S)
        yield url


@pytest.mark.slow
def test_training_twice_with_the_same_seed_gives_byte_identical_weights(tmp_path: Path) -> None:
    hashes = []
    for run in ("a", "b"):
        out = tmp_path / run
        done = subprocess.run([sys.executable, str(MODEL_DIR / "train.py"), "--out", str(out)],
                              capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        hashes.append(sha256(out / fm.WEIGHTS_FILE))
        assert done.stdout.strip() == hashes[-1]
    committed = json.loads((MODEL_DIR / fm.SPEC_FILE).read_text())["weights"]["sha256"]
    assert hashes[0] == hashes[1] == sha256(MODEL_DIR / fm.WEIGHTS_FILE) == committed
    assert (tmp_path / "a" / fm.SPEC_FILE).read_bytes() == (MODEL_DIR / fm.SPEC_FILE).read_bytes()


def test_the_committed_weights_are_small_and_match_the_spec() -> None:
    assert (MODEL_DIR / fm.WEIGHTS_FILE).stat().st_size < 300_000
    predictor = fm.Predictor.load(MODEL_DIR)
    assert predictor.sha256 == sha256(MODEL_DIR / fm.WEIGHTS_FILE)
    assert predictor.spec["metrics"]["reference"]["roc_auc"] > 0.8


def test_the_reference_profile_holds_every_reference_row_with_the_model_output() -> None:
    profile = pd.read_parquet(MODEL_DIR / "reference.parquet")
    flights = pd.read_parquet(ROOT / "sample_data" / "flights" / "reference.parquet")
    assert list(profile.columns) == fm.FEATURES + [fm.TARGET, fm.OUTPUT]
    assert len(profile) == len(flights) and profile["dep_delay"].isna().sum() > 0
    assert profile[fm.OUTPUT].between(0, 1).all()
    head = profile.head(200)
    expected = fm.Predictor.load(MODEL_DIR).predict(reference_rows(200))
    assert head[fm.OUTPUT].tolist() == pytest.approx(expected, abs=1e-6)


def test_oip_v2_and_kserve_v1_answer_the_in_process_predictor_probabilities(server: str) -> None:
    rows = reference_rows(50)
    expected = fm.Predictor.load(MODEL_DIR).predict(rows)
    status, v2 = post(f"{server}/v2/models/{NAME}/infer", oip_request(rows, "req-1"))
    assert status == 200, v2
    assert v2["model_name"] == NAME and v2["model_version"] == "v1" and v2["id"] == "req-1"
    [out] = v2["outputs"]
    assert out["name"] == fm.OUTPUT and out["shape"] == [50] and out["datatype"] == "FP32"
    status, v2_versioned = post(f"{server}/v2/models/{NAME}/versions/v1/infer", oip_request(rows))
    assert status == 200 and v2_versioned["id"]
    status, v1 = post(f"{server}/v1/models/{NAME}:predict", {"instances": rows})
    assert status == 200, v1
    assert out["data"] == pytest.approx(expected, abs=1e-5)
    assert v2_versioned["outputs"][0]["data"] == pytest.approx(expected, abs=1e-5)
    assert v1["predictions"] == pytest.approx(expected, abs=1e-5)


def test_the_served_probabilities_rank_2000_reference_flights_with_roc_auc_above_0_8(server: str) -> None:
    rows = [r for r in reference_rows(2000, fm.FEATURES + [fm.TARGET]) if r[fm.TARGET] is not None]
    labels = [r.pop(fm.TARGET) for r in rows]
    status, answer = post(f"{server}/v1/models/{NAME}:predict", {"instances": rows})
    assert status == 200, answer
    status, v2 = post(f"{server}/v2/models/{NAME}/infer", oip_request(rows))
    assert status == 200, v2
    assert len(rows) > 1900
    assert roc_auc_score(labels, answer["predictions"]) > 0.8
    assert roc_auc_score(labels, v2["outputs"][0]["data"]) > 0.8


def test_the_metadata_and_health_endpoints_describe_the_model(server: str) -> None:
    assert get(f"{server}/v2/health/live") == (200, {"live": True})
    assert get(f"{server}/v2/models/{NAME}/ready") == (200, {"name": NAME, "ready": True})
    assert get(f"{server}/v1/models/{NAME}") == (200, {"name": NAME, "ready": True})
    status, meta = get(f"{server}/v2/models/{NAME}")
    assert status == 200
    assert [i["name"] for i in meta["inputs"]] == fm.FEATURES
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["dest"] == "BYTES"
    assert meta["outputs"] == [{"name": fm.OUTPUT, "datatype": "FP32", "shape": [-1]}]


def test_a_null_in_a_numeric_tensor_is_a_missing_value_and_shape_n_by_1_is_accepted(server: str) -> None:
    rows = reference_rows(5)
    rows[0]["dep_delay"] = rows[0]["dep_time"] = None
    doc = oip_request(rows)
    for tensor in doc["inputs"]:
        tensor["shape"] = [5, 1]
    status, answer = post(f"{server}/v2/models/{NAME}/infer", doc)
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == pytest.approx(fm.Predictor.load(MODEL_DIR).predict(rows), abs=1e-5)


def test_an_empty_batch_gets_an_empty_answer(server: str) -> None:
    status, v2 = post(f"{server}/v2/models/{NAME}/infer", oip_request([]))
    assert status == 200 and v2["outputs"][0]["shape"] == [0] and v2["outputs"][0]["data"] == []
    assert post(f"{server}/v1/models/{NAME}:predict", {"instances": []}) == (200, {"predictions": []})


def _with(doc: dict[str, Any], name: str, **changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for tensor in doc["inputs"]:
        if tensor["name"] == name:
            tensor.update(changes)
    return doc


@pytest.mark.parametrize("case", ["missing feature", "shape mismatch", "row count mismatch", "wrong datatype",
                                  "string in a number tensor", "non-JSON", "no inputs", "bad shape"])
def test_bad_oip_requests_get_a_400_with_a_one_line_error(server: str, case: str) -> None:
    good = oip_request(reference_rows(3))
    body: bytes | dict[str, Any] = {
        "missing feature": {"inputs": good["inputs"][1:]},
        "shape mismatch": _with(good, "distance", shape=[4]),
        "row count mismatch": _with(good, "distance", shape=[2], data=[1.0, 2.0]),
        "wrong datatype": _with(good, "carrier", datatype="FP32"),
        "string in a number tensor": _with(good, "distance", data=["far", 1.0, 2.0]),
        "non-JSON": b"{not json",
        "no inputs": {"id": "x"},
        "bad shape": _with(good, "distance", shape=[3, 2]),
    }[case]
    status, answer = post(f"{server}/v2/models/{NAME}/infer", body)
    assert status == 400, answer
    assert set(answer) == {"error"} and answer["error"] and "\n" not in answer["error"]


@pytest.mark.parametrize("url, body, status", [
    ("/v2/models/other/infer", {"inputs": []}, 404),
    ("/v2/models/flight-delay/versions/v9/infer", {"inputs": []}, 404),
    ("/v1/models/other:predict", {"instances": []}, 404),
    ("/v1/models/flight-delay:predict", {"instances": [{"distance": 100}]}, 400),
    ("/v1/models/flight-delay:predict", {"instances": "nope"}, 400),
    ("/v1/models/flight-delay:predict", b"[1, 2", 400),
])
def test_bad_kserve_and_unknown_model_requests_get_one_line_errors(server: str, url: str,
                                                                    body: bytes | dict[str, Any],
                                                                    status: int) -> None:
    got, answer = post(server + url, body)
    assert got == status, answer
    assert set(answer) == {"error"} and "\n" not in answer["error"]


@pytest.mark.parametrize("damage", ["corrupted", "missing"])
def test_the_server_exits_2_with_one_stderr_line_when_the_weights_are_bad(tmp_path: Path,
                                                                         damage: str) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in (fm.SPEC_FILE, fm.WEIGHTS_FILE):
        shutil.copy(MODEL_DIR / name, model_dir / name)
    weights = model_dir / fm.WEIGHTS_FILE
    if damage == "missing":
        weights.unlink()
    else:
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF
        weights.write_bytes(bytes(data))
    with start_server(tmp_path, model_dir) as proc:
        assert proc.wait(START_TIMEOUT_S) == 2
    lines = proc.stderr_path.read_text().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and ("sha256" if damage == "corrupted" else "missing") in lines[0]
