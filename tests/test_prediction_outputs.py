"""How the service reads a model's outputs (issue 11, item 1): outputs the config does not
know are counted like unknown inputs, and a configured prediction that no event of a window
carries is a data-quality finding, never a drift verdict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from monitor.batch import tabular
from monitor.engine.analysis import DriftSettings, FeatureSpec, analyze
from monitor.engine.profiles import ProfileSettings
from monitor.engine.windows import WindowSpec
from monitor.streaming.model_state import ModelMonitor, ModelSetup
from monitor.wire.decode import decode_predictions, encode_predictions
from tests.conftest import make_frame

INPUTS = {"income": "numerical", "age": "numerical", "region": "categorical", "is_member": "boolean"}
TYPES = {**INPUTS, "score": "numerical"}
SIZE = 300


def frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    data = make_frame(rng, n)[list(INPUTS)]
    data["score"] = rng.random(n)
    return data


def monitor(rng: np.random.Generator) -> ModelMonitor:
    reference = tabular.profile_frame(frame(rng, 3000), TYPES)
    specs = tuple(FeatureSpec(name, kind) for name, kind in TYPES.items())
    setup = ModelSetup(name="m", features=specs, prediction="score", window=WindowSpec(size=SIZE),
                       settings=DriftSettings(), profile=ProfileSettings(), reference=reference,
                       reference_source="test", performance=None, join_cap=10_000, join_ttl_s=3600)
    return ModelMonitor(setup, clock=lambda: 1_800_000_000.0)


def feed(model: ModelMonitor, rows: pd.DataFrame, outputs: list[dict[str, Any]]) -> list[Any]:
    records = rows[list(INPUTS)].to_dict("records")
    events = [{"request_id": f"r{i}", "ts": 1_700_000_000_000 + i,
               "inputs": {k: (bool(v) if isinstance(v, np.bool_) else v) for k, v in row.items()},
               "outputs": out}
              for i, (row, out) in enumerate(zip(records, outputs, strict=True))]
    return model.add(decode_predictions(encode_predictions("m", events)))


def test_a_prediction_under_another_name_is_a_quality_finding_naming_the_outputs_events_carry(rng):
    model = monitor(rng)
    rows = frame(rng, SIZE)
    [report] = feed(model, rows, [{"prediction": s} for s in rows["score"]])
    body = report.body
    assert "score" not in body["features"] and "score" not in {f.name for f in report.features}
    findings = [q for q in body["quality"] if q["feature"] == "score"]
    assert findings == [{"feature": "score", "issue": "prediction_absent", "value": float(SIZE),
                         "detail": "prediction field 'score' absent; events carry outputs: prediction"}]
    assert body["unknown_fields"] == {"outputs.prediction": SIZE}
    # the inputs are judged exactly as the batch check judges them without the prediction
    expected = analyze(model.setup.reference, tabular.profile_frame(rows[list(INPUTS)], INPUTS),
                       [FeatureSpec(n, k) for n, k in INPUTS.items()], DriftSettings())
    assert report.drift_detected == expected.drift_detected
    assert {f.name: f.p_value for f in report.features} == {f.name: f.p_value for f in expected.features}


def test_a_window_without_any_output_says_so_in_the_finding(rng):
    model = monitor(rng)
    [report] = feed(model, frame(rng, SIZE), [{} for _ in range(SIZE)])
    [finding] = [q for q in report.body["quality"] if q["feature"] == "score"]
    assert finding["issue"] == "prediction_absent"
    assert finding["detail"] == f"prediction field 'score' has no values in the window's {SIZE} events; " \
                                "events carry no outputs"


def test_outputs_the_config_does_not_know_are_counted_and_the_prediction_is_tested(rng):
    model = monitor(rng)
    rows = frame(rng, SIZE)
    [report] = feed(model, rows, [{"score": s, "proba_1": s, "label": "late"} for s in rows["score"]])
    assert report.body["unknown_fields"] == {"outputs.proba_1": SIZE, "outputs.label": SIZE}
    assert "score" in report.body["features"]
    assert not [q for q in report.body["quality"] if q["issue"] == "prediction_absent"]
    assert model.status().unknown_fields == {"outputs.proba_1": SIZE, "outputs.label": SIZE}
