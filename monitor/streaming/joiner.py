"""The label join: late ground truth meets the prediction it belongs to.

Labels arrive minutes to days after their predictions, on their own topic.
:class:`LabelJoin` holds each prediction's value by ``request_id`` until its
label comes, a TTL passes, or the buffer is full; the oldest go first, and
every eviction is counted.  Time is event time: the latest ``ts`` seen on
either stream, so a replay after a crash evicts exactly what the first run
evicted.

:class:`PerformanceWindow` collects the joined pairs into tumbling windows
(``size`` pairs, or ``duration`` of label time) and evaluates each with
:func:`monitor.engine.performance.check.evaluate` when it closes.

Both are pure (no I/O, no clock) and snapshot to plain dicts.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from monitor.engine.performance.check import PerformancePlan, PerformanceResult, evaluate

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class JoinResult:
    y_true: tuple[Scalar, ...]
    y_pred: tuple[Scalar, ...]
    latest_ts_ms: int


class LabelJoin:
    """Predictions and labels held by request id until the other arrives.

    Usually the label comes last; a label that comes first (the two topics
    are read side by side) waits the same way.  ``cap`` bounds each side;
    ``ttl_ms`` drops entries older than the latest event time by more than
    it.  Counters: :attr:`joined` pairs, :attr:`evicted` predictions and
    :attr:`unmatched` labels dropped without a partner, :attr:`duplicates`
    (a second entry with a held request id replaces the first) and
    :attr:`without_id` (predictions without a request id, never joinable).
    """

    def __init__(self, *, cap: int, ttl_ms: int) -> None:
        if cap < 1 or ttl_ms <= 0:
            raise ValueError(f"join buffer cap must be >= 1 and ttl > 0, got {cap}, {ttl_ms}")
        self.cap = cap
        self.ttl_ms = ttl_ms
        self._predictions: OrderedDict[str, tuple[int, Scalar]] = OrderedDict()
        self._labels: OrderedDict[str, tuple[int, Scalar]] = OrderedDict()
        self._watermark = -(2**62)
        self.joined = 0
        self.unmatched = 0
        self.evicted = 0
        self.duplicates = 0
        self.without_id = 0

    def __len__(self) -> int:
        """Predictions waiting for their label."""
        return len(self._predictions)

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    def add_predictions(self, request_ids: Sequence[str | None],
                        ts_ms: NDArray[np.int64] | Sequence[int],
                        values: Sequence[Scalar]) -> JoinResult:
        """Hold predictions; returns the pairs whose label was already waiting."""
        y_true: list[Scalar] = []
        y_pred: list[Scalar] = []
        held, labels = self._predictions, self._labels
        for request_id, ts, value in zip(request_ids, ts_ms, values, strict=True):
            if request_id is None:
                self.without_id += 1
                continue
            label = labels.pop(request_id, None) if labels else None
            if label is not None:
                y_true.append(label[1])
                y_pred.append(value)
                continue
            if request_id in held:
                self.duplicates += 1
                del held[request_id]
            held[request_id] = (int(ts), value)
        return self._done(y_true, y_pred, ts_ms)

    def add_labels(self, request_ids: Sequence[str], ts_ms: Sequence[int],
                   targets: Sequence[Scalar]) -> JoinResult:
        """Pairs (target, prediction) for the labels whose prediction is held;
        the other labels wait for theirs."""
        y_true: list[Scalar] = []
        y_pred: list[Scalar] = []
        held, labels = self._predictions, self._labels
        for request_id, ts, target in zip(request_ids, ts_ms, targets, strict=True):
            found = held.pop(request_id, None)
            if found is not None:
                y_true.append(target)
                y_pred.append(found[1])
                continue
            if request_id in labels:
                self.duplicates += 1
                del labels[request_id]
            labels[request_id] = (int(ts), target)
        return self._done(y_true, y_pred, ts_ms)

    def _done(self, y_true: list[Scalar], y_pred: list[Scalar],
              ts_ms: NDArray[np.int64] | Sequence[int]) -> JoinResult:
        self.joined += len(y_true)
        if len(ts_ms):
            self._advance(int(np.max(np.asarray(ts_ms))))
        while len(self._predictions) > self.cap:
            self._predictions.popitem(last=False)
            self.evicted += 1
        while len(self._labels) > self.cap:
            self._labels.popitem(last=False)
            self.unmatched += 1
        return JoinResult(tuple(y_true), tuple(y_pred), self._watermark)

    def _advance(self, ts_ms: int) -> None:
        if ts_ms <= self._watermark:
            return
        self._watermark = ts_ms
        horizon = ts_ms - self.ttl_ms
        # insertion order is arrival order, close to event order: stop at the
        # first entry young enough (a straggler behind it waits its turn)
        for buffer, kind in ((self._predictions, "evicted"), (self._labels, "unmatched")):
            dropped = 0
            while buffer:
                first = next(iter(buffer.values()))
                if first[0] >= horizon:
                    break
                buffer.popitem(last=False)
                dropped += 1
            setattr(self, kind, getattr(self, kind) + dropped)

    def snapshot(self) -> dict[str, Any]:
        def side(buffer: OrderedDict[str, tuple[int, Scalar]]) -> dict[str, list[Any]]:
            return {"ids": list(buffer), "ts": [v[0] for v in buffer.values()],
                    "values": [v[1] for v in buffer.values()]}

        return {"predictions": side(self._predictions), "labels": side(self._labels),
                "watermark": self._watermark,
                "counts": [self.joined, self.unmatched, self.evicted, self.duplicates, self.without_id]}

    def restore(self, state: Mapping[str, Any]) -> None:
        def side(part: Mapping[str, Any]) -> OrderedDict[str, tuple[int, Scalar]]:
            ids, ts, values = part["ids"], part["ts"], part["values"]
            if not (len(ids) == len(ts) == len(values)):
                raise ValueError("join buffer snapshot has columns of different lengths")
            return OrderedDict((str(i), (int(t), v)) for i, t, v in zip(ids, ts, values, strict=True))

        self._predictions = side(state["predictions"])
        self._labels = side(state["labels"])
        self._watermark = int(state["watermark"])
        self.joined, self.unmatched, self.evicted, self.duplicates, self.without_id = (
            int(c) for c in state["counts"])


def _as_array(values: Sequence[Scalar]) -> NDArray[Any]:
    """float64 (NaN missing) when every value is a number or boolean, else strings."""
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, str)) for v in values):
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    return np.array([None if v is None else str(v) for v in values], dtype=object)


class PerformanceWindow:
    """Tumbling windows of joined (target, prediction) pairs.

    Count windows close every ``size`` pairs; time windows (``duration_ms``)
    close when a pair's label time passes the window end.  Time windows keep
    at most ``cap`` pairs (the first ones); the rest are counted in
    :attr:`overflow`.
    """

    def __init__(self, plan: PerformancePlan, *, size: int | None = None,
                 duration_ms: int | None = None, cap: int = 100_000) -> None:
        if (size is None) == (duration_ms is None):
            raise ValueError("give a size or a duration")
        self.plan = plan
        self.size = size
        self.duration_ms = duration_ms
        self.cap = cap
        self._true: list[Scalar] = []
        self._pred: list[Scalar] = []
        self._window: int | None = None  # time: index of the open window
        self.overflow = 0

    @property
    def rows(self) -> int:
        return len(self._true)

    def add(self, joined: JoinResult) -> list[PerformanceResult]:
        out: list[PerformanceResult] = []
        if self.size is not None:
            pos = 0
            while pos < len(joined.y_true):
                take = min(self.size - len(self._true), len(joined.y_true) - pos)
                self._true.extend(joined.y_true[pos:pos + take])
                self._pred.extend(joined.y_pred[pos:pos + take])
                pos += take
                if len(self._true) == self.size:
                    out.append(self._close())
            return out
        assert self.duration_ms is not None
        if not joined.y_true:
            return out
        index = joined.latest_ts_ms // self.duration_ms
        if self._window is None:
            self._window = index
        if index > self._window:
            if self._true:
                out.append(self._close())
            self._window = index
        room = self.cap - len(self._true)
        self.overflow += max(0, len(joined.y_true) - room)
        self._true.extend(joined.y_true[:max(room, 0)])
        self._pred.extend(joined.y_pred[:max(room, 0)])
        return out

    def _close(self) -> PerformanceResult:
        y_true, y_pred = _as_array(self._true), _as_array(self._pred)
        self._true, self._pred = [], []
        try:
            return evaluate(self.plan, y_true, y_pred)
        except (ValueError, TypeError) as exc:  # labels that do not fit the task
            reason = " ".join(str(exc).split())
            return PerformanceResult(rows=0, dropped=len(y_true), metrics={},
                                     undefined={"all": f"labels do not fit the task: {reason}"},
                                     violations=())

    def snapshot(self) -> dict[str, Any]:
        return {"true": list(self._true), "pred": list(self._pred), "window": self._window,
                "overflow": self.overflow}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._true, self._pred = list(state["true"]), list(state["pred"])
        self._window = None if state["window"] is None else int(state["window"])
        self.overflow = int(state["overflow"])
