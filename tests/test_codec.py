"""The wire codec: what decodes, what is refused, and why."""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import InputError
from monitor.streaming.status import INVALID_REASONS
from monitor.wire.decode import (
    DEFAULT_MAX_BYTES,
    JSON,
    MSGPACK,
    DecodeError,
    Label,
    decode_labels,
    decode_predictions,
    encode_labels,
    encode_predictions,
    encoding,
)
from monitor.wire.encode import encode_encoded_predictions, encode_event, envelope_size

EVENTS: list[dict[str, Any]] = [
    {"request_id": "r0", "ts": 1732780800000, "inputs": {"age": 41, "region": "north", "member": True},
     "outputs": {"score": 0.7}, "latency_ms": 12.5, "status": 200},
    {"request_id": None, "ts": 1732780800001.9, "inputs": {"age": None, "region": "süd"},
     "outputs": {}, "status": "ok"},
    {"ts": 0, "inputs": {}},
]


def message(**fields: Any) -> bytes:
    """A prediction message written by the stdlib, not by the codec under test."""
    body: dict[str, Any] = {"schema": 1, "model": "m", "events": [dict(e) for e in EVENTS]}
    body.update(fields)
    return json.dumps(body).encode()


def reject(data: bytes, *, labels: bool = False, **kw: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        (decode_labels if labels else decode_predictions)(data, **kw)
    assert "\n" not in str(info.value)
    assert info.value.reason in INVALID_REASONS
    assert str(info.value).startswith(info.value.reason + ": ")
    return info.value


def assert_matches_stdlib(batch: Any, parsed: dict[str, Any]) -> None:
    events = parsed["events"]
    assert batch.model == parsed["model"]
    assert batch.model_version == parsed.get("model_version")
    assert batch.n == len(events)
    assert batch.request_ids == tuple(e.get("request_id") for e in events)
    assert batch.ts_ms.dtype == np.int64
    assert batch.ts_ms.tolist() == [math.floor(e["ts"]) for e in events]
    assert batch.inputs == tuple(e["inputs"] for e in events)
    assert batch.outputs == tuple(e.get("outputs", {}) for e in events)
    expected_latency = [e.get("latency_ms") for e in events]
    np.testing.assert_array_equal(batch.latency_ms, [math.nan if x is None else x for x in expected_latency])
    assert batch.status == tuple(e.get("status") for e in events)


# -- decoding what is valid ----------------------------------------------------------------------


def test_a_batch_written_by_the_stdlib_decodes_to_the_same_values_json_parses() -> None:
    data = message(model_version="v3")
    assert_matches_stdlib(decode_predictions(data), json.loads(data))


@pytest.mark.parametrize("enc", [JSON, MSGPACK])
def test_an_encoded_batch_decodes_back_to_the_events_it_was_made_from(enc: str) -> None:
    data = encode_predictions("m", EVENTS, model_version="v3", encoding=enc)
    expected = json.loads(encode_predictions("m", EVENTS, model_version="v3"))
    assert_matches_stdlib(decode_predictions(data, encoding=enc), expected)


@pytest.mark.parametrize("enc", [JSON, MSGPACK])
@pytest.mark.parametrize("version", [None, "v3"])
def test_events_encoded_one_by_one_join_into_the_same_bytes_as_the_whole_batch(enc: str, version: str | None
                                                                               ) -> None:
    parts = [encode_event(e, encoding=enc) for e in EVENTS]
    joined = encode_encoded_predictions("m", parts, model_version=version, encoding=enc)
    assert joined == encode_predictions("m", EVENTS, model_version=version, encoding=enc)
    # the size bound the collector splits messages by is never below the real size
    bound = envelope_size("m", model_version=version, encoding=enc) + sum(len(p) + 1 for p in parts)
    assert len(joined) <= bound <= len(joined) + len(parts) + 5
    many = parts * 40  # a msgpack array of 120: a longer length prefix
    assert len(encode_encoded_predictions("m", many, encoding=enc)) <= (
        envelope_size("m", encoding=enc) + sum(len(p) + 1 for p in many))


def test_a_message_holding_one_event_at_the_top_level_decodes_to_a_batch_of_one() -> None:
    event = EVENTS[0]
    data = json.dumps({"schema": 1, "model": "m", "model_version": "v1", **event}).encode()
    batch = decode_predictions(data)
    assert_matches_stdlib(batch, {"model": "m", "model_version": "v1", "events": [event]})


def test_an_empty_events_list_is_a_valid_batch_of_none() -> None:
    batch = decode_predictions(message(events=[]))
    assert batch.n == 0
    assert batch.ts_ms.dtype == np.int64 and batch.latency_ms.dtype == np.float64


def test_unknown_keys_are_ignored_at_every_level() -> None:
    events = [{**EVENTS[0], "trace_id": "abc", "extra": {"deep": [1, 2]}}]
    batch = decode_predictions(message(events=events, producer="svc-7", schema_minor=3))
    assert_matches_stdlib(batch, {"model": "m", "events": [EVENTS[0]]})


def test_float_timestamps_are_floored_and_large_int_timestamps_are_exact() -> None:
    events = [{"ts": 1.999, "inputs": {}}, {"ts": 2**53 - 1, "inputs": {}}]
    assert decode_predictions(message(events=events)).ts_ms.tolist() == [1, 2**53 - 1]


def test_the_columns_of_a_decoded_batch_cannot_be_changed() -> None:
    batch = decode_predictions(message())
    with pytest.raises(ValueError):
        batch.ts_ms[0] = 5


def test_numpy_scalars_are_encoded_as_plain_numbers() -> None:
    data = encode_predictions("m", [{"ts": np.int64(7), "inputs": {"x": np.float32(0.5), "n": np.int32(3)}}])
    assert json.loads(data)["events"][0] == {"ts": 7, "inputs": {"x": 0.5, "n": 3}}


@pytest.mark.parametrize("enc", [JSON, MSGPACK])
def test_labels_round_trip_with_floored_timestamps(enc: str) -> None:
    targets: list[Any] = [1, "cat", False, 2.5]
    labels = [{"request_id": f"r{i}", "ts": 10.7 + i, "target": t} for i, t in enumerate(targets)]
    batch = decode_labels(encode_labels("m", labels, encoding=enc), encoding=enc)
    assert batch.model == "m"
    parsed = json.loads(encode_labels("m", labels))["labels"]
    assert batch.labels == tuple(Label(x["request_id"], math.floor(x["ts"]), x["target"]) for x in parsed)


def test_a_message_holding_one_label_at_the_top_level_decodes_to_a_batch_of_one() -> None:
    data = json.dumps({"schema": 1, "model": "m", "request_id": "r9", "ts": 5, "target": 0, "x": 1}).encode()
    assert decode_labels(data).labels == (Label("r9", 5, 0),)


# -- refusing what is not ------------------------------------------------------------------------


def test_a_message_over_the_limit_is_rejected_as_oversize_before_it_is_parsed() -> None:
    assert reject(b"x" * 101, max_bytes=100).reason == "oversize"
    error = reject(message(), max_bytes=10)
    assert (error.reason, error.model, error.events) == ("oversize", None, 1)
    # a message exactly at the default limit is parsed (and here found not to be JSON)
    assert reject(b"x" * DEFAULT_MAX_BYTES).reason == "bad_json"


@pytest.mark.parametrize(("data", "enc"), [
    (b"not json at all", JSON),
    (b'{"schema": 1, "model": "m"', JSON),
    ('{"schema":1,"model":"m","ts":0,"inputs":{"région":1}}'.encode("latin-1"), JSON),
    (b"[1, 2, 3]", JSON),
    (b'"a string"', JSON),
    (b"", JSON),
    (b"\xc1", MSGPACK),
    (msgspec.msgpack.encode([1, 2]), MSGPACK),
])
def test_bytes_that_are_not_an_object_are_rejected_as_bad_json(data: bytes, enc: str) -> None:
    error = reject(data, encoding=enc)
    assert (error.reason, error.model, error.events) == ("bad_json", None, 1)
    assert reject(data, encoding=enc, labels=True).reason == "bad_json"


@pytest.mark.parametrize("schema", [2, 0, "1", 1.0, True, None])
def test_a_message_of_another_schema_version_is_rejected_naming_the_supported_one(schema: Any) -> None:
    error = reject(message(schema=schema))
    assert error.reason == "schema_version"
    assert "supported: 1" in str(error)
    assert (error.model, error.events) == ("m", len(EVENTS))


def test_a_message_without_a_schema_is_rejected_as_schema_version() -> None:
    data = json.dumps({"model": "m", "labels": [{"request_id": "r", "ts": 1, "target": 1}] * 4}).encode()
    error = reject(data, labels=True)
    assert (error.reason, error.model, error.events) == ("schema_version", "m", 4)
    assert "missing" in str(error)


def test_schema_is_checked_before_the_other_fields() -> None:
    assert reject(message(schema=2, model=5, events="nope")).reason == "schema_version"


def test_a_batch_with_a_string_timestamp_is_rejected_as_wrong_types() -> None:
    events = [dict(EVENTS[2]) for _ in range(5)]
    events[3]["ts"] = "2024-11-28"
    error = reject(message(events=events))
    assert str(error) == "wrong_types: events[3].ts: expected a number, got str"
    assert (error.model, error.events) == ("m", 5)


@pytest.mark.parametrize(("event", "path", "says"), [
    ({"ts": True, "inputs": {}}, "events[0].ts", "got bool"),
    ({"ts": -1, "inputs": {}}, "events[0].ts", ">= 0"),
    ({"ts": None, "inputs": {}}, "events[0].ts", "got null"),
    ({"inputs": {}}, "events[0]", "missing required field ts"),
    ({"ts": 1}, "events[0]", "missing required field inputs"),
    ({"ts": 1, "inputs": [1, 2]}, "events[0].inputs", "got array"),
    ({"ts": 1, "inputs": {}, "outputs": "yes"}, "events[0].outputs", "got str"),
    ({"ts": 1, "inputs": {}, "request_id": 17}, "events[0].request_id", "got int"),
    ({"ts": 1, "inputs": {}, "latency_ms": "fast"}, "events[0].latency_ms", "got str"),
    ({"ts": 1, "inputs": {}, "status": 1.5}, "events[0].status", "got float"),
    ({"ts": 1, "inputs": {}, "status": False}, "events[0].status", "got bool"),
])
def test_an_event_field_of_the_wrong_type_is_rejected_naming_its_path(
    event: dict[str, Any], path: str, says: str
) -> None:
    error = reject(message(events=[event]))
    assert error.reason == "wrong_types"
    assert str(error).startswith(f"wrong_types: {path}: ")
    assert says in str(error)
    assert (error.model, error.events) == ("m", 1)


def test_a_timestamp_too_large_for_a_float_is_rejected_as_wrong_types() -> None:
    error = reject(b'{"schema": 1, "model": "m", "events": [{"ts": 1e400, "inputs": {}}]}')
    assert str(error) == "wrong_types: events[0].ts: number out of range"
    assert reject(message(events=[{"ts": 2**53 + 2, "inputs": {}}])).reason == "wrong_types"


def test_a_non_finite_timestamp_in_msgpack_is_rejected_as_wrong_types() -> None:
    for ts in (math.nan, math.inf):
        data = msgspec.msgpack.encode({"schema": 1, "model": "m", "events": [{"ts": ts, "inputs": {}}]})
        assert reject(data, encoding=MSGPACK).reason == "wrong_types"


@pytest.mark.parametrize(("fields", "starts", "model"), [
    ({"model": ""}, "wrong_types: model: ", None),
    ({"model": 5}, "wrong_types: model: ", None),
    ({"model": None}, "wrong_types: model: ", None),
    ({"model_version": 3}, "wrong_types: model_version: ", "m"),
    ({"events": {"ts": 1}}, "wrong_types: events: expected array", "m"),
    ({"events": None}, "wrong_types: events: expected array", "m"),
])
def test_a_message_field_of_the_wrong_type_is_rejected_naming_it(
    fields: dict[str, Any], starts: str, model: str | None
) -> None:
    error = reject(message(**fields))
    assert str(error).startswith(starts)
    assert error.model == model


def test_a_message_without_a_model_is_rejected_as_wrong_types() -> None:
    error = reject(json.dumps({"schema": 1, "events": []}).encode())
    assert (str(error), error.model) == ("wrong_types: object missing required field model", None)


def test_a_single_event_message_names_the_top_level_field_that_is_wrong() -> None:
    error = reject(json.dumps({"schema": 1, "model": "m", "ts": "now", "inputs": {}}).encode())
    assert str(error) == "wrong_types: ts: expected a number, got str"
    assert reject(json.dumps({"schema": 1, "model": "m"}).encode()).reason == "wrong_types"


@pytest.mark.parametrize(("label", "path"), [
    ({"ts": 1, "target": 1}, "labels[2]"),
    ({"request_id": "r", "target": 1}, "labels[2]"),
    ({"request_id": "r", "ts": 1}, "labels[2]"),
    ({"request_id": "r", "ts": 1, "target": None}, "labels[2].target"),
    ({"request_id": "r", "ts": 1, "target": [1]}, "labels[2].target"),
    ({"request_id": "r", "ts": 1, "target": {"y": 1}}, "labels[2].target"),
    ({"request_id": None, "ts": 1, "target": 1}, "labels[2].request_id"),
])
def test_a_label_missing_a_field_or_with_a_non_scalar_or_null_target_is_rejected(
    label: dict[str, Any], path: str
) -> None:
    good = {"request_id": "r", "ts": 1, "target": 1}
    data = json.dumps({"schema": 1, "model": "m", "labels": [good, good, label, good]}).encode()
    error = reject(data, labels=True)
    assert str(error).startswith(f"wrong_types: {path}: ")
    assert (error.model, error.events) == ("m", 4)


def test_decode_error_is_an_input_error() -> None:
    assert issubclass(DecodeError, InputError)


def test_an_unknown_encoding_is_a_programming_error_not_a_decode_error() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        decode_predictions(message(), encoding="text/csv")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(["schema", "model", "model_version", "events", "labels", "ts", "inputs", "request_id",
                        "target", "status", "latency_ms", "outputs"])


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), enc=st.sampled_from([JSON, MSGPACK]), labels=st.booleans())
def test_random_bytes_never_raise_anything_but_decode_error(data: bytes, enc: str, labels: bool) -> None:
    try:
        (decode_labels if labels else decode_predictions)(data, encoding=enc)
    except DecodeError as error:
        assert error.reason in INVALID_REASONS and "\n" not in str(error)


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(keys, json_values, max_size=6), enc=st.sampled_from([JSON, MSGPACK]),
       labels=st.booleans())
def test_random_objects_with_contract_keys_either_decode_or_raise_decode_error(
    body: dict[str, Any], enc: str, labels: bool
) -> None:
    data = msgspec.msgpack.encode(body) if enc == MSGPACK else json.dumps(body).encode()
    try:
        (decode_labels if labels else decode_predictions)(data, encoding=enc)
    except DecodeError as error:
        assert error.reason in ("bad_json", "schema_version", "wrong_types")


# -- choosing the encoding -----------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "expected"), [
    (None, JSON),
    ([], JSON),
    ([("trace", b"x")], JSON),
    ([("content-type", b"application/msgpack")], MSGPACK),
    ([("Content-Type", b"application/x-msgpack")], MSGPACK),
    ([("CONTENT-TYPE", b"Application/MsgPack; v=1")], MSGPACK),
    ([("content-type", b"application/json")], JSON),
    ([("content-type", b"text/plain")], JSON),
    ([("content-type", None)], JSON),
    ([("x-msgpack", b"application/msgpack")], JSON),
])
def test_the_content_type_header_selects_msgpack_and_anything_else_means_json(
    headers: Any, expected: str
) -> None:
    assert encoding(headers) == expected
