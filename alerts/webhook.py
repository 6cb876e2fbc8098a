"""Alertmanager's webhook payload (version 4), parsed whole or not at all.

Alertmanager POSTs a group of alerts::

    {"version": "4", "groupKey": "...", "status": "firing", "receiver": "driftline",
     "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": "...", "truncatedAlerts": 0,
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "2026-12-07T00:10:00Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "...", "fingerprint": "1a2b3c4d5e6f7a8b"}]}

:func:`parse` validates the whole body before anything is decided, so a
half-parsed payload never acts: any error is one :class:`~monitor.errors.InputError`
line naming the field.  Pure: bytes in, :class:`~alerts.types.Alert` tuples out.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from alerts.types import Alert
from monitor.errors import InputError

#: Alertmanager writes this for "no end time yet" (Go's zero time).
ZERO_TIME = "0001-01-01T00:00:00Z"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


class _Alert(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    starts_at: str
    fingerprint: str
    annotations: dict[str, str] = {}
    ends_at: str = ZERO_TIME
    generator_url: str = ""


class _Payload(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    version: str
    alerts: list[_Alert]
    status: str = ""
    receiver: str = ""
    group_key: str = ""
    truncated_alerts: int = 0


_decoder = msgspec.json.Decoder(_Payload)


def parse(body: bytes) -> tuple[Alert, ...]:
    """The alerts of a webhook body; :class:`InputError` (one line) when any part is wrong."""
    try:
        payload = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InputError(f"not an Alertmanager webhook payload: {_short(exc)}") from None
    if payload.version != "4":
        raise InputError(f"webhook payload version {payload.version!r} is not supported (expected '4')")
    alerts = []
    for index, raw in enumerate(payload.alerts):
        where = f"alerts[{index}]"
        if not raw.fingerprint:
            raise InputError(f"{where}.fingerprint is empty")
        if not _RFC3339.fullmatch(raw.starts_at):
            raise InputError(f"{where}.startsAt is not an RFC 3339 time: {raw.starts_at[:40]!r}")
        if "alertname" not in raw.labels:
            raise InputError(f"{where}.labels has no alertname")
        ends_at = None if raw.ends_at in ("", ZERO_TIME) else raw.ends_at
        alerts.append(Alert(status=raw.status, labels=dict(raw.labels),
                            annotations=dict(raw.annotations), starts_at=raw.starts_at,
                            ends_at=ends_at, fingerprint=raw.fingerprint,
                            generator_url=raw.generator_url))
    return tuple(alerts)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."
