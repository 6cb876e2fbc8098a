"""HTTP for the demo, the one module that imports httpx: the replay's requests, the probes
that wait for each part, and the reads of the live view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


class Unreachable(OSError):
    """Nothing answered (refused, reset, timed out)."""


@dataclass(frozen=True)
class Answer:
    status: int
    text: str

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        return httpx.Response(self.status, text=self.text).json()


class Client:
    """A keep-alive client for one base URL (or absolute URLs when ``base`` is empty)."""

    def __init__(self, base: str = "", timeout: float = 30.0) -> None:
        self._client = httpx.Client(base_url=base, timeout=timeout)

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> Answer:
        try:
            response = self._client.get(url, params=params)
        except httpx.HTTPError as exc:
            raise Unreachable(f"GET {url}: {type(exc).__name__}: {exc}") from None
        return Answer(response.status_code, response.text)

    def post(self, url: str, body: Any, headers: Mapping[str, str] | None = None) -> Answer:
        try:
            response = self._client.post(url, json=body, headers=dict(headers or {}))
        except httpx.HTTPError as exc:
            raise Unreachable(f"POST {url}: {type(exc).__name__}: {exc}") from None
        return Answer(response.status_code, response.text)

    def close(self) -> None:
        self._client.close()


def answers_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether ``GET url`` answers 200 (a readiness probe)."""
    client = Client(timeout=timeout)
    try:
        return client.get(url).ok
    except Unreachable:
        return False
    finally:
        client.close()
