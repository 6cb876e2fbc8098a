"""Real in-memory stand-ins shared by the collector tests."""

from __future__ import annotations

from collections.abc import Callable

from monitor.wire.decode import PredictionBatch, decode_predictions

OnDone = Callable[[Exception | None], None]


class RecordingSender:
    """A Sender that acknowledges every message at once and keeps it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bytes]] = []
        self.closed = False

    def send(self, topic: str, key: bytes, value: bytes, on_done: OnDone) -> None:
        self.messages.append((topic, key, value))
        on_done(None)

    def flush(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def batches(self) -> list[PredictionBatch]:
        return [decode_predictions(value) for _, _, value in self.messages]
