"""Schemathesis against the real service: a running ``Service`` on the real broker
(not the in-memory fake of ``test_api_schema.py``), so every write path that
reaches Kafka, the engine and the config file is fuzzed too.  No 5xx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from monitor.service.api import create_app
from monitor.service.app import Service
from monitor.service.export import make_registry
from tests.servers import Broker
from tests.test_serve_e2e import Setup, _stream

pytestmark = pytest.mark.slow


@schemathesis.serializer("application/msgpack")
def _raw_msgpack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[Any]:
    tmp: Path = tmp_path_factory.mktemp("live-api")
    setup = Setup(tmp, broker, ["churn"], size=100)
    service = Service.from_config(str(setup.config()))
    service.start()
    try:
        setup.produce("churn", _stream(np.random.default_rng(5), 300), 0)
        deadline = time.monotonic() + 60
        while not (service.status().ready and service.history("churn")):
            assert service.alive and time.monotonic() < deadline, service.failure or "not ready in 60 s"
            time.sleep(0.2)
        yield create_app(service, make_registry(service.status))
    finally:
        service.stop()


def test_no_request_to_the_running_service_gets_a_server_error(live_app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", live_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance])
            if case.path_parameters and "model" in case.path_parameters:
                # random names are almost never configured: also hit the real model
                case.path_parameters["model"] = "churn"
                case.call_and_validate(checks=[not_a_server_error, status_code_conformance])

        check()
