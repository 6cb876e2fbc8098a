"""The alerting and remediation sections of the config: alerts, actions, links, remediate."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config

REFERENCE = Path(__file__).resolve().parent.parent / "sample_data" / "flights" / "reference.parquet"
JOB = Path(__file__).resolve().parent.parent / "k8s" / "jobs" / "retrain.yaml"


def config_with(tmp_path: Path, model_extra: str, top: str = "") -> Path:
    path = tmp_path / "driftline.yaml"
    path.write_text(textwrap.dedent(f"""\
        {top}
        models:
          - name: m
            reference: {REFERENCE}
            features: {{dep_delay: {{type: numerical}}}}
            prediction: {{name: p, type: numerical}}
            target: {{name: y, task: binary_classification}}
            performance: {{accuracy: {{min: 0.7}}}}
        """) + textwrap.indent(textwrap.dedent(model_extra), "    "))
    return path


def messages(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [f"{issue.path}: {issue.message}" for issue in caught.value.issues]


def test_alert_defaults_need_three_drifted_windows_and_an_hour_for_staleness_of_count_windows(
        tmp_path: Path) -> None:
    alerts = load_config(config_with(tmp_path, "")).models[0].alerts
    assert (alerts.consecutive_windows, alerts.stale_after, alerts.stale_windows) == (3, None, 3)
    assert (alerts.for_of("DriftlineDatasetDrift"), alerts.severity_of("DriftlineDatasetDrift")) == (
        0.0, "warning")


def test_a_per_alert_override_changes_only_that_alert(tmp_path: Path) -> None:
    alerts = load_config(config_with(tmp_path, """\
        alerts: {for: 5m, overrides: {DriftlineFeatureDrift: {for: 30m, severity: info},
                                      DriftlineConsumerLagHigh: {enabled: false}}}
        """)).models[0].alerts
    assert alerts.for_of("DriftlineFeatureDrift") == 1800.0
    assert alerts.severity_of("DriftlineFeatureDrift") == "info"
    assert alerts.for_of("DriftlineDatasetDrift") == 300.0
    assert not alerts.enabled("DriftlineConsumerLagHigh") and alerts.enabled("DriftlineFeatureDrift")


def test_an_override_of_an_alert_that_does_not_exist_is_an_error_naming_the_alerts(tmp_path: Path) -> None:
    [message] = messages(config_with(tmp_path, "alerts: {overrides: {DriftlineDrift: {for: 1m}}}\n"))
    assert message.startswith("models[0].alerts.overrides: ")
    assert "unknown alert 'DriftlineDrift'" in message and "DriftlineDatasetDrift" in message


def test_a_rollback_names_exactly_one_kind_of_object(tmp_path: Path) -> None:
    both = messages(config_with(tmp_path, """\
        actions: {on_performance_drop: {rollback: {deployment: a, rollout: b}}}
        """))
    assert both == ["models[0].actions.on_performance_drop.rollback: "
                    "give exactly one of deployment, inference_service, rollout (the object's name)"]


@pytest.mark.parametrize(("key", "kind"), [("deployment", "Deployment"),
                                           ("inference_service", "InferenceService"),
                                           ("rollout", "Rollout")])
def test_the_rollback_object_is_the_lock_target_unless_a_target_is_given(
        tmp_path: Path, key: str, kind: str) -> None:
    actions = load_config(config_with(tmp_path, f"""\
        actions: {{on_performance_drop: {{rollback: {{{key}: serving, namespace: ml}}}}}}
        """)).models[0].actions
    assert actions is not None
    target = actions.lock_target()
    assert target is not None and (target.kind, target.name, target.namespace) == (kind, "serving", "ml")
    explicit = load_config(config_with(tmp_path, f"""\
        actions: {{on_drift: {{retrain: {{job_template: {JOB}}}}}, approval: manual,
                  target: {{inference_service: isvc}}}}
        """)).models[0].actions
    assert explicit is not None and explicit.approval == "manual"
    assert explicit.lock_target() is not None and explicit.lock_target().kind == "InferenceService"


def test_remediate_and_links_have_safe_defaults_and_reject_bad_values(tmp_path: Path) -> None:
    config = load_config(config_with(tmp_path, ""))
    assert config.remediate.token_file is None and config.remediate.max_actions_per_hour == 20
    assert config.links.monitor_url == "http://localhost:8000"
    [message] = messages(config_with(tmp_path, "", top="remediate: {max_actions_per_hour: 0}"))
    assert message.startswith("remediate.max_actions_per_hour: ")
