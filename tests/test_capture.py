"""The one capture pipeline (``collectors.capture``): its steps, their order, and what each drop counts.

The proxy (tests/test_proxy.py, tests/test_proxy_http.py) and the SDK (tests/test_sdk.py) run
their calls through it; here it runs alone, on the same payloads those tests send.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator

import pytest

from collectors.capture import Capturer, CaptureSettings, RecordedExchange, skip_requested
from collectors.events import Capture, Instance
from collectors.extractors import FieldPolicy

PATH = "/v1/models/m:predict"
REQUEST = b'{"instances": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}'
ANSWER = b'{"predictions":[1.5,3.75]}'
NOW_S = 1_700_000_000.0


class RecordingDrops:
    """Rows dropped (``drops``), requests left out unparsed (``requests``), answers not captured."""

    def __init__(self) -> None:
        self.drops: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        self.answers: dict[int | None, int] = {}

    def dropped(self, reason: str, events: int, model: str | None = None) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + events

    def unparsed(self, reason: str, model: str | None = None) -> None:
        self.requests[reason] = self.requests.get(reason, 0) + 1

    def uncaptured(self, status: int | None, model: str | None = None) -> None:
        self.answers[status] = self.answers.get(status, 0) + 1


class Draws:
    """A sampling source that remembers how often it was drawn."""

    def __init__(self, values: Iterator[float]) -> None:
        self.values, self.drawn = values, 0

    def __call__(self) -> float:
        self.drawn += 1
        return next(self.values)


def capturer(draws: Callable[[], float] = lambda: 0.0, **settings: object
             ) -> tuple[Capturer, RecordingDrops, list[Capture]]:
    drops, offered = RecordingDrops(), []
    capture_settings = CaptureSettings(**{"model": "m", **settings})
    pipeline = Capturer(capture_settings, drops, offered.append, clock=lambda: NOW_S, sample=draws)
    return pipeline, drops, offered


def pair(*, status: int | None = 200, request: bytes | None = REQUEST, response: bytes | None = ANSWER,
         skip: bool = False, elapsed: float = 0.0123456) -> RecordedExchange:
    return RecordedExchange(status=status, path=PATH, request_body=request, response_body=response,
                            request_id="rid", elapsed=elapsed, skip=skip)


def test_a_kserve_v1_pair_is_offered_as_one_capture_with_a_row_per_instance() -> None:
    pipeline, drops, offered = capturer(model_version="v7")
    outcome = pipeline.exchange(pair())
    assert offered == [outcome]
    assert outcome == Capture(model="m", request_id="rid", ts_ms=1_700_000_000_000,
                              instances=(Instance({"f0": 1.0, "f1": 2.0, "f2": 3.0}, {"prediction": 1.5}),
                                         Instance({"f0": 4.0, "f1": 5.0, "f2": 6.0}, {"prediction": 3.75})),
                              latency_ms=12.346, status=200, model_version="v7")
    assert drops.drops == {}


# Each request fails every step from one on; the first that refuses it names the outcome.
ORDER = [
    ("skipped", dict(skip=True, status=500, request=None), True),
    ("status", dict(status=500, request=None), True),
    ("oversize", dict(request=None), True),
    ("sampled_out", dict(response=b"not json"), True),
    ("overload", dict(response=b"not json"), False),
    ("unparseable", dict(request=b"not json"), False),
]


@pytest.mark.parametrize(("reason", "facts", "sampled_out"), ORDER, ids=[r for r, _, _ in ORDER])
def test_each_request_is_dropped_at_the_first_step_that_refuses_it(reason: str, facts: dict[str, object],
                                                                   sampled_out: bool) -> None:
    steps = [r for r, _, _ in ORDER]
    draws = Draws(itertools.repeat(0.9 if sampled_out else 0.1))
    pipeline, drops, offered = capturer(draws, sample_rate=0.5)
    pipeline.overloaded = steps.index(reason) <= steps.index("overload")
    assert pipeline.exchange(pair(**facts)) == reason
    assert offered == []
    assert drops.drops == {}  # no rows were known: each counts one request
    assert drops.requests == ({} if reason == "status" else {reason: 1})
    assert drops.answers == ({500: 1} if reason == "status" else {})
    assert draws.drawn == (1 if steps.index(reason) >= steps.index("sampled_out") else 0)


def test_a_skipped_request_is_counted_as_skipped_and_never_extracted() -> None:
    pipeline, drops, offered = capturer()
    assert pipeline.exchange(pair(skip=True, response=b"not json")) == "skipped"
    assert (drops.requests, drops.drops, offered) == ({"skipped": 1}, {}, [])


def test_a_non_2xx_answer_is_not_captured_but_counted_by_status_unless_capture_errors_is_set() -> None:
    pipeline, drops, offered = capturer()
    for status in (None, 199, 300, 404, 503, 503):
        assert pipeline.exchange(pair(status=status)) == "status"
    # issue 15, defect 9: every model answer left out is counted; no answer at all is the proxy's
    assert (drops.drops, drops.requests, offered) == ({}, {}, [])
    assert drops.answers == {199: 1, 300: 1, 404: 1, 503: 2}
    pipeline, drops, offered = capturer(capture_errors=True)
    capture = pipeline.exchange(pair(status=503, response=b'{"predictions":[0.0,1.0]}'))
    assert isinstance(capture, Capture) and capture.status == 503 and offered == [capture]
    assert pipeline.exchange(pair(status=None)) == "status"  # no answer at all: nothing to capture


def test_a_body_that_was_not_kept_is_counted_as_one_unparsed_request_not_as_rows() -> None:
    pipeline, drops, offered = capturer()
    assert pipeline.exchange(pair(request=None)) == "oversize"
    assert pipeline.exchange(pair(response=None)) == "oversize"
    assert (drops.requests, drops.drops, offered) == ({"oversize": 2}, {}, [])


def test_sampling_keeps_a_draw_below_the_rate_and_counts_each_dropped_request_once() -> None:
    draws = Draws(iter([0.25, 0.5, 0.75, 0.49]))
    pipeline, drops, offered = capturer(draws, sample_rate=0.5)
    outcomes = [pipeline.exchange(pair()) for _ in range(4)]
    assert [o if isinstance(o, str) else "captured" for o in outcomes] == [
        "captured", "sampled_out", "sampled_out", "captured"]
    assert drops.requests == {"sampled_out": 2} and drops.drops == {} and len(offered) == 2


def test_at_a_sample_rate_of_one_nothing_is_drawn() -> None:
    draws = Draws(itertools.repeat(0.99))
    pipeline, _, offered = capturer(draws)
    pipeline.exchange(pair())
    assert draws.drawn == 0 and len(offered) == 1


def test_a_sample_rate_of_zero_drops_every_request() -> None:
    pipeline, drops, offered = capturer(Draws(itertools.repeat(0.0)), sample_rate=0.0)
    assert pipeline.exchange(pair()) == "sampled_out"
    assert (drops.requests, offered) == ({"sampled_out": 1}, [])


def test_a_request_that_cannot_be_read_is_counted_as_one_unparseable_request() -> None:
    pipeline, drops, offered = capturer()
    for request, response in ((b"not json", ANSWER), (b'{"instances": 1}', ANSWER),
                              (b'{"instances": 1}', b"{")):
        assert pipeline.exchange(pair(request=request, response=response)) == "unparseable"
    assert (drops.requests, drops.drops, offered) == ({"unparseable": 3}, {}, [])


def test_a_read_request_whose_answer_cannot_be_read_counts_its_rows_as_unparseable() -> None:
    # the request's two rows are known: rows are counted (captured, then dropped), not a request
    pipeline, drops, offered = capturer()
    for response in (b"{", b'{"predictions":[1.5]}', b'{"predictions": "x"}'):
        assert pipeline.exchange(pair(response=response)) == "unparseable"
    assert (drops.requests, drops.drops, offered) == ({}, {"unparseable": 6}, [])
    # a binary OIP answer whose tensor bytes do not add up: the request's 3 rows
    head = b'{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2,3]}]}'
    answer = b'{"outputs":[{"name":"y","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":12}}]}'
    oip, drops, _ = capturer()
    exchange = RecordedExchange(status=200, path="/v2/models/m/infer", request_body=head,
                                response_body=answer + b"\x00" * 8, request_id="r", elapsed=0.0,
                                response_header_length=str(len(answer)))
    assert oip.exchange(exchange) == "unparseable"
    assert (drops.requests, drops.drops) == ({}, {"unparseable": 3})


def test_a_payload_without_instances_is_neither_captured_nor_counted() -> None:
    pipeline, drops, offered = capturer()
    assert pipeline.exchange(pair(request=b'{"instances": []}', response=b'{"predictions": []}')) \
        == "no_instances"
    assert (drops.drops, offered) == ({}, [])


def test_pii_fields_are_dropped_or_hashed_before_the_capture_is_offered() -> None:
    policy = FieldPolicy(drop=frozenset({"f1"}), hash=frozenset({"f2", "prediction"}), salt=b"pepper")
    pipeline, _, offered = capturer(policy=policy)
    pipeline.exchange(pair())

    def hashed(text: str) -> str:
        return hashlib.sha256(b"pepper" + text.encode()).hexdigest()[:16]

    [capture] = offered
    assert [(dict(i.inputs), dict(i.outputs)) for i in capture.instances] == [
        ({"f0": 1.0, "f2": hashed("3.0")}, {"prediction": hashed("1.5")}),
        ({"f0": 4.0, "f2": hashed("6.0")}, {"prediction": hashed("3.75")}),
    ]


def test_the_settings_choose_the_extractor_and_name_positional_features() -> None:
    pipeline, _, offered = capturer(protocol="kserve_v1", feature_names=("age", "income", "score"))
    pipeline.exchange(RecordedExchange(status=200, path="/anything", request_body=REQUEST,
                                       response_body=ANSWER, request_id="rid", elapsed=0.0))
    assert [dict(i.inputs) for i in offered[0].instances] == [{"age": 1.0, "income": 2.0, "score": 3.0},
                                                              {"age": 4.0, "income": 5.0, "score": 6.0}]


def test_the_skip_header_opts_out_only_with_a_1_blanks_around_it_allowed() -> None:
    assert [skip_requested(v) for v in (b"1", b" 1\t", None, b"", b"0", b"true", b"11")] == [
        True, True, False, False, False, False, False]


def test_a_transport_that_decides_before_the_answer_counts_a_skip_at_once() -> None:
    pipeline, drops, _ = capturer()
    assert pipeline.skipped(b"1") and not pipeline.skipped(None) and not pipeline.skipped(b"no")
    assert drops.requests == {"skipped": 1} and drops.drops == {}


ROWS = (Instance({"age": 41}, {"score": 0.83}), Instance({"age": 19}, {"score": 0.12}),
        Instance({"age": 33}, {"score": 0.5}))


def test_a_logged_prediction_is_offered_with_the_latency_and_status_it_was_given() -> None:
    pipeline, drops, offered = capturer(model_version="v7")
    capture = pipeline.logged(ROWS, "req-17", 3.2, 201)
    assert offered == [capture] and drops.drops == {}
    assert capture == Capture(model="m", request_id="req-17", ts_ms=1_700_000_000_000, instances=ROWS,
                              latency_ms=3.2, status=201, model_version="v7")


def test_a_sampled_out_logged_prediction_counts_each_of_its_rows() -> None:
    pipeline, drops, offered = capturer(Draws(itertools.repeat(0.0)), sample_rate=0.0)
    assert pipeline.logged(ROWS, "req-17", None, 200) == "sampled_out"
    assert (drops.drops, offered) == ({"sampled_out": 3}, [])


def test_a_logged_prediction_without_rows_is_not_sampled_counted_or_offered() -> None:
    draws = Draws(itertools.repeat(0.0))
    pipeline, drops, offered = capturer(draws, sample_rate=0.0)
    assert pipeline.logged((), "req-17", None, 200) == "no_instances"
    assert (drops.drops, offered, draws.drawn) == ({}, [], 0)


def test_a_logged_prediction_goes_through_the_field_policy_too() -> None:
    pipeline, _, offered = capturer(policy=FieldPolicy(drop=frozenset({"age"})))
    pipeline.logged(ROWS[:1], "req-17", None, 200)
    assert [(dict(i.inputs), dict(i.outputs)) for i in offered[0].instances] == [({}, {"score": 0.83})]


# -- issue 15: multi-model servers, counts that add up, the OIP request id ------------------------

V2_REQUEST = (b'{"id": "oip-42", "inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP64", '
              b'"data": [1.0, 2.0]}]}')
V2_ANSWER = (b'{"id": "oip-42", "model_name": "sum", "outputs": [{"name": "y", "shape": [2], '
             b'"datatype": "FP64", "data": [1.5, 2.5]}]}')


def call(path: str, *, request: bytes = REQUEST, response: bytes = ANSWER, request_id: str = "rid",
         given: bool = True) -> RecordedExchange:
    return RecordedExchange(status=200, path=path, request_body=request, response_body=response,
                            request_id=request_id, elapsed=0.001, request_id_given=given)


def test_without_a_model_each_call_is_keyed_by_the_model_and_version_its_path_names() -> None:
    pipeline, drops, offered = capturer(model=None)
    a = pipeline.exchange(call("/v1/models/sum:predict"))
    b = pipeline.exchange(call("/v1/models/multi"))
    c = pipeline.exchange(call("/v2/models/sum/versions/3/infer", request=V2_REQUEST, response=V2_ANSWER))
    assert isinstance(a, Capture) and isinstance(b, Capture) and isinstance(c, Capture)
    assert [(x.model, x.model_version, x.served_model) for x in (a, b, c)] == [
        ("sum", None, None), ("multi", None, None), ("sum", "3", None)]
    assert len(offered) == 3 and drops.drops == drops.requests == {}


def test_a_configured_model_wins_and_the_served_model_is_kept_in_each_event() -> None:
    pipeline, _, offered = capturer(model="credit", model_version="v7")
    capture = pipeline.exchange(call("/v2/models/sum/versions/3/infer", request=V2_REQUEST,
                                     response=V2_ANSWER))
    assert isinstance(capture, Capture)
    assert (capture.model, capture.model_version, capture.served_model) == ("credit", "v7", "sum")
    assert [e["served_model"] for e in capture.events()] == ["sum", "sum"]
    same = pipeline.exchange(call("/v1/models/credit:predict"))
    assert isinstance(same, Capture) and same.served_model is None  # the same name is not repeated
    assert "served_model" not in same.events()[0]


def test_the_model_map_renames_a_served_model_before_model() -> None:
    pipeline, _, _ = capturer(model=None, model_map={"sum": "adder"})
    capture = pipeline.exchange(call("/v1/models/sum:predict"))
    other = pipeline.exchange(call("/v1/models/multi:predict"))
    assert isinstance(capture, Capture) and isinstance(other, Capture)
    assert (capture.model, capture.served_model) == ("adder", "sum")
    assert (other.model, other.served_model) == ("multi", None)
    pipeline, _, _ = capturer(model="all", model_map={"sum": "adder"})
    mapped, grouped = pipeline.exchange(call("/v1/models/sum")), pipeline.exchange(call("/v1/models/x"))
    assert isinstance(mapped, Capture) and isinstance(grouped, Capture)
    assert (mapped.model, grouped.model, grouped.served_model) == ("adder", "all", "x")


def test_a_call_whose_path_names_no_model_is_counted_when_there_is_no_model() -> None:
    pipeline, drops, offered = capturer(model=None)
    assert pipeline.exchange(call("/invocations")) == "no_model"
    assert pipeline.exchange(call("/v1/models/")) == "no_model"
    assert (drops.requests, drops.drops, offered) == ({"no_model": 2}, {}, [])


def test_an_oip_request_id_names_the_events_when_the_caller_sent_no_x_request_id() -> None:
    pipeline, _, _ = capturer(model=None)
    made_up = pipeline.exchange(call("/v2/models/sum/infer", request=V2_REQUEST, response=V2_ANSWER,
                                     request_id="generated", given=False))
    header = pipeline.exchange(call("/v2/models/sum/infer", request=V2_REQUEST, response=V2_ANSWER,
                                    request_id="from-header", given=True))
    no_id = pipeline.exchange(call("/v2/models/sum/infer", response=V2_ANSWER, request_id="generated",
                                   request=V2_REQUEST.replace(b'"id": "oip-42", ', b""), given=False))
    v1 = pipeline.exchange(call("/v1/models/sum:predict", request_id="generated", given=False))
    assert [c.request_id for c in (made_up, header, no_id, v1) if isinstance(c, Capture)] == [
        "oip-42", "from-header", "generated", "generated"]


def test_the_oip_request_id_is_read_from_the_json_head_of_a_binary_tensor_body() -> None:
    from collectors.capture import oip_request_id
    head = (b'{"id":"bin-1","inputs":[{"name":"x","shape":[1],"datatype":"FP32",'
            b'"parameters":{"binary_data_size":4}}]}')
    assert oip_request_id(head + b"\x00\x00\x80?") == "bin-1"
    # with the header's length, the tail is never decoded: a tail that is not UTF-8 changes nothing
    assert oip_request_id(head + b"\xff\xfe\x80?", str(len(head))) == "bin-1"
    assert oip_request_id(head + b"\x00\x00\x80?", "x") == "bin-1"  # a bad length: the whole body
    assert oip_request_id(b"not json") is None and oip_request_id(b'{"id": 5, "inputs": []}') is None


def test_the_counters_add_up_over_every_path_of_the_pipeline() -> None:
    from collectors.delivery.metrics import CollectorMetrics
    from collectors.delivery.queue import Delivery
    from tests.counters import assert_identity
    from tests.fakes import RecordingSender

    metrics = CollectorMetrics()
    delivery = Delivery(RecordingSender(), "t", "", max_queue_events=3, drop="newest", metrics=metrics)
    pipeline = Capturer(CaptureSettings(model=None, sample_rate=0.5), metrics.of_model(None), delivery.offer,
                        sample=Draws(itertools.cycle([0.1, 0.9])))
    exchanges = [call("/v1/models/a:predict"),  # 2 rows, drawn 0.1: queued
                 call("/v1/models/a:predict"),  # drawn 0.9: sampled out, one request
                 call("/v1/models/b:predict"),  # 2 rows: the queue of 3 is full, dropped as rows
                 call("/invocations"),  # no model
                 RecordedExchange(404, "/v1/models/a", REQUEST, ANSWER, "r", 0.0),  # uncaptured
                 RecordedExchange(200, "/v1/models/a", None, ANSWER, "r", 0.0),  # oversize
                 RecordedExchange(200, "/v1/models/a", REQUEST, ANSWER, "r", 0.0, skip=True)]
    for exchange in exchanges:
        pipeline.exchange(exchange)
    pipeline.sample = lambda: 0.0
    pipeline.exchange(call("/v1/models/a:predict", response=b"{"))  # 2 rows read, answer not: rows
    pipeline.exchange(call("/v1/models/a:predict", request=b"{"))  # unparseable request
    pipeline.overloaded = True
    pipeline.exchange(call("/v1/models/a:predict"))  # overload
    pipeline.overloaded = False
    logged = Capturer(CaptureSettings(model="a", sample_rate=0.5), metrics.of_model("a"), delivery.offer,
                      sample=lambda: 0.9)
    logged.logged(ROWS, "req", None, 200)  # 3 rows known, sampled out: rows
    delivery.start()
    delivery.stop(5.0)
    counts = assert_identity(metrics.exposition()[0])
    assert (counts.captured, counts.sent) == (9, 2)
    assert {k: v for k, v in counts.dropped.items() if v} == {"queue_full": 2, "sampled_out": 3,
                                                               "unparseable": 2}
    assert {k: v for k, v in counts.unparsed.items() if v} == {
        "sampled_out": 1, "no_model": 1, "oversize": 1, "skipped": 1, "unparseable": 1, "overload": 1}
    assert counts.uncaptured == {"1xx": 0, "3xx": 0, "4xx": 1, "5xx": 0, "error": 0}
    for model in ("a", "b"):
        assert_identity(metrics.exposition()[0], model)


def test_the_model_map_and_the_path_rules() -> None:
    from collectors.routing import Served, parse_model_map, served_model
    assert [served_model(p) for p in ("/v1/models/sum", "/v1/models/sum:predict", "/v1/models/s:explain",
                                      "/v2/models/sum/infer", "/v2/models/sum/versions/7/infer",
                                      "/v2/models/sum", "/invocations", "/v1/models/a/b", "/v2/models/")] == [
        Served("sum"), Served("sum"), Served("s"), Served("sum"), Served("sum", "7"), Served("sum"),
        None, None, None]
    assert parse_model_map(" sum=adder, multi = multi-v2,,") == {"sum": "adder", "multi": "multi-v2"}
    assert parse_model_map(None) == {}
    for bad in ("sum", "=x", "sum=", "a=b,a=c"):
        with pytest.raises(ValueError, match="--model-map"):
            parse_model_map(bad)
