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
    def __init__(self) -> None:
        self.drops: dict[str, int] = {}

    def dropped(self, reason: str, events: int) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + events


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
    ("unparseable", dict(response=b"not json"), False),
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
    assert drops.drops == ({} if reason == "status" else {reason: 1})
    assert draws.drawn == (1 if steps.index(reason) >= steps.index("sampled_out") else 0)


def test_a_skipped_request_is_counted_as_skipped_and_never_extracted() -> None:
    pipeline, drops, offered = capturer()
    assert pipeline.exchange(pair(skip=True, response=b"not json")) == "skipped"
    assert (drops.drops, offered) == ({"skipped": 1}, [])


def test_a_non_2xx_answer_is_neither_captured_nor_counted_unless_capture_errors_is_set() -> None:
    pipeline, drops, offered = capturer()
    for status in (None, 199, 300, 404, 503):
        assert pipeline.exchange(pair(status=status)) == "status"
    assert (drops.drops, offered) == ({}, [])
    pipeline, drops, offered = capturer(capture_errors=True)
    capture = pipeline.exchange(pair(status=503, response=b'{"predictions":[0.0,1.0]}'))
    assert isinstance(capture, Capture) and capture.status == 503 and offered == [capture]
    assert pipeline.exchange(pair(status=None)) == "status"  # no answer at all: nothing to capture


def test_a_body_that_was_not_kept_is_counted_as_oversize_as_one_event() -> None:
    pipeline, drops, offered = capturer()
    assert pipeline.exchange(pair(request=None)) == "oversize"
    assert pipeline.exchange(pair(response=None)) == "oversize"
    assert (drops.drops, offered) == ({"oversize": 2}, [])


def test_sampling_keeps_a_draw_below_the_rate_and_counts_each_dropped_request_as_one_event() -> None:
    draws = Draws(iter([0.25, 0.5, 0.75, 0.49]))
    pipeline, drops, offered = capturer(draws, sample_rate=0.5)
    outcomes = [pipeline.exchange(pair()) for _ in range(4)]
    assert [o if isinstance(o, str) else "captured" for o in outcomes] == [
        "captured", "sampled_out", "sampled_out", "captured"]
    assert drops.drops == {"sampled_out": 2} and len(offered) == 2


def test_at_a_sample_rate_of_one_nothing_is_drawn() -> None:
    draws = Draws(itertools.repeat(0.99))
    pipeline, _, offered = capturer(draws)
    pipeline.exchange(pair())
    assert draws.drawn == 0 and len(offered) == 1


def test_a_sample_rate_of_zero_drops_every_request() -> None:
    pipeline, drops, offered = capturer(Draws(itertools.repeat(0.0)), sample_rate=0.0)
    assert pipeline.exchange(pair()) == "sampled_out"
    assert (drops.drops, offered) == ({"sampled_out": 1}, [])


def test_a_payload_that_cannot_be_read_is_counted_as_unparseable() -> None:
    pipeline, drops, offered = capturer()
    for request, response in ((b"not json", ANSWER), (REQUEST, b"{"), (b'{"instances": 1}', ANSWER),
                              (REQUEST, b'{"predictions":[1.5]}')):
        assert pipeline.exchange(pair(request=request, response=response)) == "unparseable"
    assert (drops.drops, offered) == ({"unparseable": 4}, [])


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
    assert drops.drops == {"skipped": 1}


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
