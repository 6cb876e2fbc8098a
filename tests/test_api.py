"""The HTTP API over a small in-memory ServiceControl: every endpoint and every error code."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.exceptions import StarletteDeprecationWarning

from monitor.config import ConfigError, ConfigIssue
from monitor.errors import InputError, NotOwnedHere, NotReady, ProfileError, UnknownModel
from monitor.service.api import create_app
from monitor.service.export import make_registry
from monitor.streaming.status import (
    FeatureResult,
    ModelStatus,
    ServiceControl,
    ServiceStatus,
    WindowReport,
)

# starlette 1.10 asks for the `httpx2` package and warns, once at import, when it finds only httpx.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated",
                            category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PROFILE_MAGIC = b"DLPROFILE"


def window(model: str, end: int, *, evaluated_at: float, drift: bool = True,
           body: Mapping[str, Any] | None = None) -> WindowReport:
    features = (FeatureResult("income", "ks", 0.21, 0.0001, True),
                FeatureResult("region", "psi", 0.05, None, False))
    return WindowReport(
        model=model, window_start=end - 100, window_end=end, window_kind="count", rows=100,
        evaluated_at=evaluated_at, duration_s=0.02, drift_detected=drift, drifted_share=0.5,
        features=features, performance={"roc_auc": 0.81},
        body=body if body is not None else {"drift_detected": drift, "window": {"end": end}},
    )


def model_status(name: str, latest: WindowReport | None, *, rows: int = 40, fill: float = 0.4) -> ModelStatus:
    return ModelStatus(
        name=name, latest=latest, window_rows=rows, window_fill=fill, events_total=1040,
        unknown_fields={"debug_flag": 3}, labels_joined=10, labels_unmatched=2, join_evictions=1,
        join_buffer_size=30, performance={"roc_auc": 0.81}, reference="ref.parquet",
    )


def sample_status(*, ready: bool = True) -> ServiceStatus:
    """credit: owned and evaluated; churn: owned, no window yet; fraud: owned by another replica."""
    latest = window("credit", 1000, evaluated_at=1_700_000_300.0)
    return ServiceStatus(
        models={"credit": model_status("credit", latest),
                "churn": model_status("churn", None, rows=12, fill=0.12)},
        configured_models=("credit", "churn", "fraud"),
        events_total={"credit": 1040, "churn": 12},
        ready=ready,
        now=1_700_000_400.0,
    )


class FakeControl:
    """A ServiceControl kept in memory, with switches for the failures the API must map."""

    def __init__(self, status: ServiceStatus | None = None) -> None:
        self.current = status if status is not None else sample_status()
        self.reports: dict[str, list[WindowReport]] = {
            "credit": [window("credit", 900, evaluated_at=1_700_000_200.0, drift=False),
                       window("credit", 1000, evaluated_at=1_700_000_300.0)],
            "churn": [],
        }
        self.received_labels: list[tuple[bytes, str]] = []
        self.references: dict[str, bytes] = {}
        self.config_issues: list[ConfigIssue] = []
        self.reference_unreadable = False
        self.evidently_installed = True
        self.window_empty = False
        self.connected = True

    def _known(self, model: str) -> None:
        if model not in self.current.configured_models:
            raise UnknownModel(model, self.current.configured_models)

    def _sink(self) -> None:
        if not self.connected:
            raise NotReady("the service is not connected to Kafka yet", delay_s=2.5)

    def status(self) -> ServiceStatus:
        return self.current

    def history(self, model: str) -> list[WindowReport]:
        self._known(model)
        if model not in self.current.models:
            raise NotOwnedHere(model, "partition 3 of predictions is assigned to another member")
        return list(self.reports.get(model, []))

    def submit_labels(self, body: bytes, content_type: str) -> Mapping[str, int]:
        self.received_labels.append((body, content_type))
        if content_type == "application/msgpack":
            return {"accepted": 0, "joined": 0, "unmatched": 0}
        try:
            batch = json.loads(body)
        except ValueError as exc:
            raise InputError(f"labels: not JSON ({exc})") from None
        if not isinstance(batch, dict) or batch.get("schema") != 1:
            raise InputError('labels: expected an object with "schema": 1')
        model, labels = batch.get("model"), batch.get("labels")
        if not isinstance(model, str) or not isinstance(labels, list):
            raise InputError('labels: "model" must be a string and "labels" a list')
        self._known(model)
        self._sink()
        return {"accepted": len(labels), "joined": len(labels), "unmatched": 0}

    def upload_reference(self, model: str, data: bytes) -> Mapping[str, Any]:
        self._known(model)
        if not data.startswith(PROFILE_MAGIC):
            raise ProfileError("reference: not a driftline profile (bad magic bytes)")
        self._sink()
        self.references[model] = data
        return {"model": model, "bytes": len(data), "applies_from": "next window"}

    def reload_config(self) -> Mapping[str, Any]:
        if self.config_issues:
            raise ConfigError(self.config_issues)
        if self.reference_unreadable:
            raise InputError("config is valid but a reference cannot be read: ref.parquet: not found")
        return {"models": list(self.current.configured_models), "changed": []}

    def evidently_report(self, model: str) -> str:
        if not self.evidently_installed:
            raise RuntimeError("evidently is not installed;\ninstall driftline[evidently]")
        if self.window_empty:
            raise InputError("no feature has values in both the reference and the window")
        return f"<html><body>report of {model}</body></html>"


def client_for(control: ServiceControl) -> TestClient:
    return TestClient(create_app(control, make_registry(control.status)))


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
def client(control: FakeControl) -> TestClient:
    return client_for(control)


def detail(response: Any) -> str:
    message = response.json()["detail"]
    assert isinstance(message, str) and "\n" not in message
    return message


# --------------------------------------------------------------------------- health and metrics


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_the_service_is_ready(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
    assert "2 of 3" in response.json()["detail"]


def test_readyz_is_503_with_a_reason_while_the_service_starts() -> None:
    response = client_for(FakeControl(sample_status(ready=False))).get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert response.json()["detail"].startswith("not ready: ")


def test_metrics_are_served_in_the_prometheus_text_format_by_default(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert [sample.value for sample in families["driftline_ready"].samples] == [1.0]
    events = {s.labels["model"]: s.value for s in families["driftline_events"].samples}
    assert events == {"credit": 1040.0, "churn": 12.0, "fraud": 0.0}


def test_metrics_are_served_as_openmetrics_when_the_scraper_asks_for_it(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.text.endswith("# EOF\n")


def test_metrics_survive_a_malformed_openmetrics_version(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=abc"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


# --------------------------------------------------------------------------- models


def test_models_lists_every_configured_model_and_whether_this_replica_owns_it(client: TestClient) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    assert response.json() == {"models": [
        {"name": "credit", "owned": True, "window_rows": 40, "window_fill": 0.4,
         "evaluated_at": 1_700_000_300.0, "drift_detected": True},
        {"name": "churn", "owned": True, "window_rows": 12, "window_fill": 0.12,
         "evaluated_at": None, "drift_detected": None},
        {"name": "fraud", "owned": False, "window_rows": None, "window_fill": None,
         "evaluated_at": None, "drift_detected": None},
    ]}


def test_drift_returns_the_body_of_the_latest_window(client: TestClient) -> None:
    response = client.get("/models/credit/drift")
    assert response.status_code == 200
    assert response.json() == {"drift_detected": True, "window": {"end": 1000}}


def test_drift_writes_nan_as_null_and_numpy_values_as_plain_json() -> None:
    body = {"features": {"age": {"p_value": float("nan"), "statistic": np.float64("inf")}},
            "rows": (1, 2), "counts": np.array([3, 4])}
    status = sample_status()
    models = dict(status.models)
    models["credit"] = model_status("credit", window("credit", 1000, evaluated_at=1.0, body=body))
    control = FakeControl(ServiceStatus(models=models, configured_models=status.configured_models))
    response = client_for(control).get("/models/credit/drift")
    assert response.status_code == 200
    assert response.json() == {"features": {"age": {"p_value": None, "statistic": None}}, "rows": [1, 2],
                               "counts": [3, 4]}


def test_an_unknown_model_gets_a_404_naming_the_known_models(client: TestClient) -> None:
    response = client.get("/models/credi/drift")
    assert response.status_code == 404
    assert detail(response) == "unknown model 'credi'; configured models: 'credit', 'churn', 'fraud'"


def test_a_model_owned_by_another_replica_gets_a_404_saying_so(client: TestClient) -> None:
    response = client.get("/models/fraud/drift")
    assert response.status_code == 404
    assert detail(response).startswith("model 'fraud' is owned by another monitor replica")


def test_a_model_without_an_evaluated_window_gets_a_404_saying_how_full_its_window_is(
        client: TestClient) -> None:
    response = client.get("/models/churn/drift")
    assert response.status_code == 404
    assert detail(response) == (
        "model 'churn' has no evaluated window yet: 12 rows in the first window, 12% full")


def test_the_three_404_messages_are_distinct(client: TestClient) -> None:
    messages = {detail(client.get(f"/models/{name}/drift")) for name in ("nope", "fraud", "churn")}
    assert len(messages) == 3


def test_a_newline_in_a_model_name_does_not_break_the_one_line_message(client: TestClient) -> None:
    response = client.get("/models/a%0Ab/drift")
    assert response.status_code == 404
    assert "'a\\nb'" in detail(response)


# --------------------------------------------------------------------------- history


def test_history_lists_window_bodies_newest_last(client: TestClient, control: FakeControl) -> None:
    control.reports["credit"].reverse()  # the control's order does not matter
    response = client.get("/models/credit/history")
    assert response.status_code == 200
    assert [body["window"]["end"] for body in response.json()] == [900, 1000]


def test_history_limit_keeps_the_newest(client: TestClient) -> None:
    response = client.get("/models/credit/history", params={"limit": 1})
    assert response.status_code == 200
    assert [body["window"]["end"] for body in response.json()] == [1000]


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
def test_history_rejects_a_limit_outside_1_to_1000(client: TestClient, limit: str) -> None:
    assert client.get("/models/credit/history", params={"limit": limit}).status_code == 422


def test_history_of_a_model_without_windows_is_empty(client: TestClient) -> None:
    response = client.get("/models/churn/history")
    assert response.status_code == 200
    assert response.json() == []


def test_history_of_an_unknown_or_foreign_model_is_a_404(client: TestClient) -> None:
    assert detail(client.get("/models/nope/history")).startswith("unknown model 'nope'")
    assert "another monitor replica" in detail(client.get("/models/fraud/history"))


# --------------------------------------------------------------------------- report


def test_report_returns_the_evidently_html(client: TestClient) -> None:
    response = client.get("/models/credit/report")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html><body>report of credit</body></html>"


def test_report_is_a_404_for_a_model_without_a_window(client: TestClient) -> None:
    response = client.get("/models/churn/report")
    assert response.status_code == 404
    assert "no evaluated window" in detail(response)


def test_report_is_a_503_with_one_line_when_evidently_is_missing(
        client: TestClient, control: FakeControl) -> None:
    control.evidently_installed = False
    response = client.get("/models/credit/report")
    assert response.status_code == 503
    assert detail(response) == (
        "Evidently report unavailable: evidently is not installed; install driftline[evidently]")


# --------------------------------------------------------------------------- labels


def test_labels_in_json_are_passed_to_the_control_and_its_counts_returned(
        client: TestClient, control: FakeControl) -> None:
    body = json.dumps({"schema": 1, "model": "credit",
                       "labels": [{"request_id": "r1", "ts": 1, "target": 1}]}).encode()
    response = client.post("/labels", content=body,
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "joined": 1, "unmatched": 0}
    assert control.received_labels == [(body, "application/json")]


@pytest.mark.parametrize("content_type", ["application/msgpack", "application/x-msgpack"])
def test_labels_in_msgpack_reach_the_control_as_msgpack(
        client: TestClient, control: FakeControl, content_type: str) -> None:
    response = client.post("/labels", content=b"\x83\xa6schema\x01", headers={"Content-Type": content_type})
    assert response.status_code == 200
    assert control.received_labels == [(b"\x83\xa6schema\x01", "application/msgpack")]


def test_labels_that_are_not_json_get_a_400_with_one_line(client: TestClient) -> None:
    response = client.post("/labels", content=b"{not json\n", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert detail(response).startswith("labels: not JSON")


def test_labels_for_an_unknown_model_get_a_404(client: TestClient) -> None:
    body = json.dumps({"schema": 1, "model": "ghost", "labels": []})
    response = client.post("/labels", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 404
    assert detail(response).startswith("unknown model 'ghost'")


def test_labels_of_another_content_type_get_a_415(client: TestClient, control: FakeControl) -> None:
    response = client.post("/labels", content=b"a=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/json or application/msgpack" in detail(response)
    assert control.received_labels == []


# --------------------------------------------------------------------------- reference


def test_a_reference_profile_upload_reaches_the_control(client: TestClient, control: FakeControl) -> None:
    data = PROFILE_MAGIC + b"\x00\x01"
    response = client.post("/models/credit/reference", content=data,
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200
    assert response.json() == {"model": "credit", "bytes": len(data), "applies_from": "next window"}
    assert control.references == {"credit": data}


def test_a_malformed_profile_gets_a_400(client: TestClient) -> None:
    response = client.post("/models/credit/reference", content=b"garbage",
                           headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 400
    assert detail(response) == "reference: not a driftline profile (bad magic bytes)"


def test_a_profile_for_an_unknown_model_gets_a_404(client: TestClient) -> None:
    response = client.post("/models/ghost/reference", content=PROFILE_MAGIC)
    assert response.status_code == 404
    assert detail(response).startswith("unknown model 'ghost'")


# --------------------------------------------------------------------------- config reload


def test_a_config_reload_returns_what_the_control_reports(client: TestClient) -> None:
    response = client.post("/config/reload")
    assert response.status_code == 200
    assert response.json() == {"models": ["credit", "churn", "fraud"], "changed": []}


def test_an_invalid_config_reload_is_a_422_listing_every_issue(
        client: TestClient, control: FakeControl) -> None:
    control.config_issues = [
        ConfigIssue("d.yaml", "models[0].features.region.test", 12, "unknown test 'pssi'"),
        ConfigIssue("d.yaml", "", None, "empty file"),
    ]
    response = client.post("/config/reload")
    assert response.status_code == 422
    assert response.json() == {
        "detail": "invalid config, old config kept",
        "errors": ["d.yaml:12: models[0].features.region.test: unknown test 'pssi'", "d.yaml: empty file"],
    }


# --------------------------------------------------------------------------- bugs and the spec


class BrokenControl(FakeControl):
    def status(self) -> ServiceStatus:
        raise ValueError("secret internals\nTraceback (most recent call last): ...")


class KeyErrorControl(FakeControl):
    """A control with a bug: a lookup that is not about an unknown model."""

    def history(self, model: str) -> list[WindowReport]:
        return {"secret": []}[model]


@pytest.mark.parametrize(("broken", "path", "error"), [
    (BrokenControl, "/models", "ValueError"),
    (KeyErrorControl, "/models/credit/history", "KeyError"),  # a bug, not an unknown model's 404
])
def test_an_unexpected_error_is_logged_and_answered_with_a_one_line_500(
        caplog: pytest.LogCaptureFixture, broken: type[FakeControl], path: str, error: str) -> None:
    with caplog.at_level(logging.ERROR, logger="monitor.service.api"):
        response = client_for(broken()).get(path)
    assert response.status_code == 500
    assert detail(response) == f"internal error ({error}); the service log has the details"
    assert "secret" not in response.text
    assert any(record.exc_info and f"GET {path}" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(("path", "method", "codes"), [
    ("/healthz", "get", {"200"}),
    ("/readyz", "get", {"200", "503"}),
    ("/metrics", "get", {"200"}),
    ("/models", "get", {"200"}),
    ("/models/{model}/drift", "get", {"200", "404", "422"}),
    ("/models/{model}/history", "get", {"200", "404", "422"}),
    ("/models/{model}/report", "get", {"200", "404", "409", "422", "503"}),
    ("/labels", "post", {"200", "400", "404", "415", "503"}),
    ("/models/{model}/reference", "post", {"200", "400", "404", "422", "503"}),
    ("/config/reload", "post", {"200", "422"}),
])
def test_the_openapi_spec_documents_every_status_code(
        client: TestClient, path: str, method: str, codes: set[str]) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"][path][method]["responses"]) == codes


def test_the_openapi_spec_declares_the_raw_request_bodies(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/labels"]["post"]["requestBody"]["content"]) == {
        "application/json", "application/msgpack"}
    assert set(paths["/models/{model}/reference"]["post"]["requestBody"]["content"]) == {
        "application/octet-stream"}
    assert paths["/metrics"]["get"]["responses"]["200"]["content"].keys() >= {"text/plain"}


def test_a_reload_whose_reference_cannot_be_read_is_a_422_and_keeps_the_old_config(
        control: FakeControl) -> None:
    control.reference_unreadable = True
    response = client_for(control).post("/config/reload")
    assert response.status_code == 422
    assert response.json()["errors"] == [
        "config is valid but a reference cannot be read: ref.parquet: not found"]


def test_a_report_of_a_window_without_values_is_a_409_with_one_line(control: FakeControl) -> None:
    control.window_empty = True
    response = client_for(control).get("/models/credit/report")
    assert response.status_code == 409
    assert "no feature has values" in response.json()["detail"]


# --------------------------------------------------------------------------- typed errors, mapped once


def test_a_model_owned_by_another_replica_gets_a_404_naming_the_owner_from_the_status() -> None:
    status = replace(sample_status(), owners={
        "fraud": "partition 3 of driftline.predictions is assigned to another member of group driftline"})
    response = client_for(FakeControl(status)).get("/models/fraud/drift")
    assert response.status_code == 404
    assert detail(response) == (
        "model 'fraud' is owned by another monitor replica (partition 3 of driftline.predictions is "
        "assigned to another member of group driftline); ask that replica, or read the model's "
        "Prometheus metrics")


class RevokedControl(FakeControl):
    """Its status still shows credit, whose partition was revoked a moment ago."""

    def history(self, model: str) -> list[WindowReport]:
        raise NotOwnedHere(model, "partition 3 of predictions is assigned to another member")


def test_not_owned_here_raised_by_the_service_is_a_404_naming_the_owner() -> None:
    response = client_for(RevokedControl()).get("/models/credit/history")
    assert response.status_code == 404
    assert detail(response) == (
        "model 'credit' is owned by another monitor replica (partition 3 of predictions is assigned "
        "to another member); ask that replica, or read the model's Prometheus metrics")


@pytest.mark.parametrize(("path", "body"), [
    ("/labels", json.dumps({"schema": 1, "model": "credit", "labels": []}).encode()),
    ("/models/credit/reference", PROFILE_MAGIC),
])
def test_a_write_before_the_service_is_connected_is_a_503_with_retry_after(
        control: FakeControl, path: str, body: bytes) -> None:
    control.connected = False
    response = client_for(control).post(path, content=body,
                                        headers={"Content-Type": "application/json"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"  # 2.5 s, rounded up to whole seconds
    assert detail(response) == "the service is not connected to Kafka yet"
