"""The remediation policy (alerts/policy.py): one table row per rule, approval, and a
property test that no sequence of deliveries acts more often than the rules allow."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from alerts.policy import approve, decide
from alerts.types import ActionName, Alert, ClusterView, Decision, PastAction, decision_id
from monitor.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "sample_data" / "flights" / "reference.parquet"
JOB = ROOT / "k8s" / "jobs" / "retrain.yaml"

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC).timestamp()
STARTS = "2026-12-07T00:10:00Z"
DRIFT, PERF, FEATURE = "DriftlineDatasetDrift", "DriftlinePerformanceBelowMin", "DriftlineFeatureDrift"

RETRAIN = f"{{retrain: {{job_template: {JOB}}}}}"
ROLLBACK = "{rollback: {deployment: flight-delay, namespace: ml}}"
BOTH = f"{{retrain: {{job_template: {JOB}}}, rollback: {{deployment: flight-delay}}}}"
#: the sample's wiring with the safety net off, so that an outcome is "acted" unless a rule holds it
ACTING = f"{{on_drift: {RETRAIN}, on_performance_drop: {ROLLBACK}, cooldown: 1h, dry_run: false}}"


def model_yaml(name: str, actions: str | None) -> str:
    lines = [f"- name: {name}", f"  reference: {REFERENCE}", "  features: {dep_delay: {type: numerical}}",
             "  prediction: {name: p, type: numerical}", "  target: {name: y, task: binary_classification}",
             "  performance: {accuracy: {min: 0.7}}"] + ([] if actions is None else [f"  actions: {actions}"])
    return "".join(f"  {line}\n" for line in lines)


def write_config(directory: Path, models: dict[str, str | None], max_per_hour: int = 20) -> Config:
    """A config with ``models`` (name -> the ``actions:`` flow mapping, or None), loaded for real."""
    path = directory / "driftline.yaml"
    path.write_text(f"remediate: {{max_actions_per_hour: {max_per_hour}}}\nmodels:\n"
                    + "".join(model_yaml(name, actions) for name, actions in models.items()))
    return load_config(path)


def alert(name: str = DRIFT, model: str | None = "flight-delay", status: str = "firing",
          starts: str = STARTS, fingerprint: str | None = None) -> Alert:
    labels = {"alertname": name, "severity": "warning"} | ({} if model is None else {"model": model})
    if fingerprint is None:  # Alertmanager's fingerprint is a hash of the labels
        fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    return Alert(status="firing" if status == "firing" else "resolved", labels=labels,
                 annotations={"summary": f"{name} for {model}"}, starts_at=starts, ends_at=None,
                 fingerprint=fingerprint)


def past(action: ActionName = "retrain", ago: float = 60.0, key: str = "other@2026-12-06T00:00:00Z",
         model: str = "flight-delay", running: bool = False, outcome: str = "acted") -> PastAction:
    assert outcome in ("acted", "dry_run", "pending", "skipped", "ignored", "failed")
    return PastAction(model=model, action=action, alert_key=key, at=NOW - ago, running=running,
                      outcome=outcome)  # type: ignore[arg-type]


def labels(decisions: Sequence[Decision]) -> list[tuple[ActionName | None, str]]:
    return [(d.action, d.label) for d in decisions]


# ---------------------------------------------------------------- one row per rule

@dataclass(frozen=True)
class Row:
    alerts: tuple[Alert, ...]
    expected: list[tuple[ActionName | None, str]]
    actions: str | None = ACTING
    past: tuple[PastAction, ...] = ()
    max_per_hour: int = 20


SAME_KEY = alert().key
ROWS: dict[str, Row] = {
    # mapping
    "a resolved alert is recorded and does nothing": Row(
        (alert(status="resolved"),), [(None, "ignored:resolved")]),
    "an alert other than dataset drift or a performance drop only notifies": Row(
        (alert(FEATURE),), [("notify", "ignored:notify-only")]),
    "an alert without a model label is ignored as missing-label": Row(
        (alert(model=None),), [(None, "ignored:missing-label")]),
    "an alert with an empty model label is ignored as missing-label": Row(
        (alert(model=""),), [(None, "ignored:missing-label")]),
    "an alert for a model the config does not have is ignored as unknown-model": Row(
        (alert(model="no-such-model"),), [(None, "ignored:unknown-model")]),
    "a model without actions is ignored as no-action-configured": Row(
        (alert(),), [(None, "ignored:no-action-configured")], actions=None),
    "a performance drop for a model with only on_drift is ignored as no-action-configured": Row(
        (alert(PERF),), [(None, "ignored:no-action-configured")],
        actions=f"{{on_drift: {RETRAIN}, dry_run: false}}"),
    "dataset drift runs on_drift (a retrain)": Row((alert(),), [("retrain", "acted")]),
    "a performance drop runs on_performance_drop (a rollback)": Row(
        (alert(PERF),), [("rollback", "acted")]),
    "an action set with retrain and rollback gives two decisions, retrain first": Row(
        (alert(),), [("retrain", "acted"), ("rollback", "acted")],
        actions=f"{{on_drift: {BOTH}, dry_run: false}}"),
    # dry run and approval
    "dry_run is the default: the decision is recorded, nothing is changed": Row(
        (alert(),), [("retrain", "dry_run")], actions=f"{{on_drift: {RETRAIN}}}"),
    "approval manual holds the decision as pending": Row(
        (alert(),), [("retrain", "pending")],
        actions=f"{{on_drift: {RETRAIN}, dry_run: false, approval: manual}}"),
    "dry_run wins over approval manual: nothing waits for an approval that would change nothing": Row(
        (alert(),), [("retrain", "dry_run")], actions=f"{{on_drift: {RETRAIN}, approval: manual}}"),
    # dedupe
    "the same alert re-sent after acting is a duplicate (the cluster's record)": Row(
        (alert(),), [("retrain", "skipped:duplicate")], past=(past(key=SAME_KEY, ago=7200),)),
    "the same alert re-sent after a dry run is a duplicate": Row(
        (alert(),), [("retrain", "skipped:duplicate")], past=(past(key=SAME_KEY, outcome="dry_run"),)),
    "the same alert re-sent while it waits for approval is a duplicate": Row(
        (alert(),), [("retrain", "skipped:duplicate")], past=(past(key=SAME_KEY, outcome="pending"),)),
    "the same alert twice in one payload acts once": Row(
        (alert(), alert()), [("retrain", "acted"), ("retrain", "skipped:duplicate")]),
    "dedupe is per action: an alert that rolled back may still retrain": Row(
        (alert(),), [("retrain", "acted"), ("rollback", "skipped:duplicate")],
        actions=f"{{on_drift: {BOTH}, dry_run: false}}",
        past=(past("rollback", key=SAME_KEY, ago=7200),)),
    "a failed attempt is no duplicate: the re-sent alert tries again": Row(
        (alert(),), [("retrain", "acted")], past=(past(key=SAME_KEY, outcome="failed"),)),
    "a duplicate is named as such even within the cooldown": Row(
        (alert(),), [("retrain", "skipped:duplicate")], past=(past(key=SAME_KEY, ago=10),)),
    # cooldown
    "a new episode (new startsAt) within the cooldown is skipped as cooldown": Row(
        (alert(),), [("retrain", "skipped:cooldown")], past=(past(ago=3599),)),
    "a new episode after the cooldown acts": Row((alert(),), [("retrain", "acted")], past=(past(ago=3600),)),
    "a pending decision of another alert starts the cooldown too": Row(
        (alert(),), [("retrain", "skipped:cooldown")], past=(past(outcome="pending"),)),
    "the cooldown is per action: a recent rollback does not hold a retrain back": Row(
        (alert(),), [("retrain", "acted")], past=(past("rollback"),)),
    "the cooldown is per model: another model's retrain does not hold this one back": Row(
        (alert(),), [("retrain", "acted")], past=(past(model="other-model"),)),
    "two different alerts for one model in one payload act once": Row(
        (alert(), alert(starts="2026-12-07T00:20:00Z")),
        [("retrain", "dry_run"), ("retrain", "skipped:cooldown")], actions=f"{{on_drift: {RETRAIN}}}"),
    # retrain in flight
    "a retrain still running holds a new retrain back, even after the cooldown": Row(
        (alert(),), [("retrain", "skipped:retrain-running")], past=(past(ago=7200, running=True),)),
    "a running retrain is the reason rather than the cooldown when both hold": Row(
        (alert(),), [("retrain", "skipped:retrain-running")], past=(past(ago=60, running=True),)),
    "a running retrain does not hold a rollback back": Row(
        (alert(PERF),), [("rollback", "acted")], past=(past(running=True),)),
    "a retrain started earlier in the payload is running for the next alert (no cooldown)": Row(
        (alert(), alert(starts="2026-12-07T00:20:00Z")),
        [("retrain", "acted"), ("retrain", "skipped:retrain-running")],
        actions=f"{{on_drift: {RETRAIN}, dry_run: false, cooldown: 0s}}"),
    # global rate limit
    "the rate limit counts every model's actions of the last hour": Row(
        (alert(),), [("retrain", "skipped:rate-limit")], max_per_hour=2,
        past=(past(model="a", ago=100), past("rollback", model="b", ago=3599, outcome="dry_run"))),
    "actions older than an hour do not count toward the rate limit": Row(
        (alert(),), [("retrain", "acted")], max_per_hour=2,
        past=(past(model="a", ago=100), past(model="b", ago=3600))),
    "pending and failed decisions do not count toward the rate limit": Row(
        (alert(),), [("retrain", "acted")], max_per_hour=1,
        past=(past(model="a", outcome="pending"), past(model="b", outcome="failed"))),
    "the rate limit counts the decisions made earlier in the same payload": Row(
        (alert(), alert(PERF)), [("retrain", "acted"), ("rollback", "skipped:rate-limit")], max_per_hour=1),
    "the rate limit counts one alert's retrain before its rollback": Row(
        (alert(),), [("retrain", "acted"), ("rollback", "skipped:rate-limit")], max_per_hour=1,
        actions=f"{{on_drift: {BOTH}, dry_run: false}}"),
    "the cooldown is the reason rather than the rate limit when both hold": Row(
        (alert(),), [("retrain", "skipped:cooldown")], max_per_hour=1, past=(past(),)),
}


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_rule(row: Row, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"flight-delay": row.actions, "bare": None}, row.max_per_hour)
    decisions = decide(row.alerts, config, ClusterView(past=row.past), NOW)
    assert labels(decisions) == row.expected
    for decision in decisions:
        assert decision.at == NOW
        assert decision.id == decision_id(decision.alert, decision.action)


def test_a_decision_names_its_model_even_when_the_model_is_unknown(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"flight-delay": ACTING})
    [decision] = decide([alert(model="no-such-model")], config, ClusterView(), NOW)
    assert decision.model == "no-such-model"


@pytest.mark.parametrize(("actions", "expected"), [
    (f"{{on_drift: {RETRAIN}}}",
     f"would create a retrain object from retrain.yaml for flight-delay: {DRIFT} since {STARTS}"),
    (f"{{on_drift: {RETRAIN}, dry_run: false, approval: manual}}",
     f"awaits approval: would create a retrain object from retrain.yaml for flight-delay: {DRIFT} "
     f"since {STARTS}"),
    (f"{{on_drift: {ROLLBACK}, dry_run: false}}",
     f"will roll back Deployment flight-delay of flight-delay: {DRIFT} since {STARTS}"),
], ids=["a dry run says what it would do", "a pending decision says it awaits approval",
        "an action says what it will do"])
def test_the_reason_of_an_action_is_one_line_naming_the_action_the_alert_and_its_start(
        actions: str, expected: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, {"flight-delay": actions})
    [decision] = decide([alert()], config, ClusterView(), NOW)
    assert decision.reason == expected and "\n" not in decision.reason


def test_decide_is_pure_the_same_input_gives_the_same_decisions(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"flight-delay": ACTING})
    view = ClusterView(past=(past(ago=10_000),))
    payload = [alert(), alert(PERF), alert(FEATURE), alert(status="resolved")]
    assert decide(payload, config, view, NOW) == decide(payload, config, view, NOW)
    assert view.past == (past(ago=10_000),)


# ---------------------------------------------------------------- approval

MANUAL = f"{{on_drift: {RETRAIN}, dry_run: false, approval: manual}}"


@dataclass(frozen=True)
class ApproveRow:
    past: tuple[PastAction, ...]
    expected: str
    actions: str | None = MANUAL
    max_per_hour: int = 20


APPROVALS: dict[str, ApproveRow] = {
    "an approved decision acts; its own pending record does not count against it": ApproveRow(
        (past(key=SAME_KEY, outcome="pending", ago=120),), "acted"),
    "an approval after another alert's retrain was acted on is skipped as cooldown": ApproveRow(
        (past(key=SAME_KEY, outcome="pending", ago=120), past(ago=30)), "skipped:cooldown"),
    "an approval another replica already carried out is skipped as duplicate": ApproveRow(
        (past(key=SAME_KEY, outcome="pending", ago=120), past(key=SAME_KEY, ago=30)), "skipped:duplicate"),
    "an approval while a retrain runs is skipped as retrain-running": ApproveRow(
        (past(ago=7200, running=True),), "skipped:retrain-running"),
    "an approval over the hourly limit is skipped as rate-limit": ApproveRow(
        (past(model="a"), past(model="b")), "skipped:rate-limit", max_per_hour=2),
    "an approval after the config turned dry_run on is a dry run": ApproveRow(
        (), "dry_run", actions=f"{{on_drift: {RETRAIN}, approval: manual}}"),
    "an approval after the model lost its actions is ignored": ApproveRow(
        (), "ignored:no-action-configured", actions=None),
}


@pytest.mark.parametrize("row", list(APPROVALS.values()), ids=list(APPROVALS))
def test_approve(row: ApproveRow, tmp_path: Path) -> None:
    manual = write_config(tmp_path, {"flight-delay": MANUAL})
    [pending] = decide([alert()], manual, ClusterView(), NOW - 120)
    assert pending.outcome == "pending"
    (tmp_path / "now").mkdir()
    config = write_config(tmp_path / "now", {"flight-delay": row.actions}, row.max_per_hour)
    approved = approve(pending, config, ClusterView(past=row.past), NOW)
    assert approved.label == row.expected
    assert (approved.id, approved.at, approved.alert) == (pending.id, NOW, pending.alert)


def test_an_approved_action_says_it_was_approved(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"flight-delay": MANUAL})
    [pending] = decide([alert()], config, ClusterView(), NOW)
    own = ClusterView(past=(past(key=SAME_KEY, outcome="pending", ago=0),))
    approved = approve(pending, config, own, NOW)
    assert approved.reason.startswith("approved: will create a retrain object") and STARTS in approved.reason


def test_approving_a_decision_that_is_not_pending_is_a_value_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"flight-delay": ACTING})
    [acted] = decide([alert()], config, ClusterView(), NOW)
    with pytest.raises(ValueError, match=r"is acted, not pending"):
        approve(acted, config, ClusterView(), NOW)
    [ignored] = decide([alert(status="resolved")], config, ClusterView(), NOW)
    with pytest.raises(ValueError, match=r"is ignored:resolved, not pending"):
        approve(ignored, config, ClusterView(), NOW)


# ---------------------------------------------------------------- the property

MODELS = {"m1": 300.0, "m2": 600.0, "m3": 1800.0}  # name -> cooldown (s)
MAX_PER_HOUR = 4
T0 = datetime(2026, 12, 7, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def property_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return write_config(tmp_path_factory.mktemp("policy"), {
        name: f"{{on_drift: {RETRAIN}, on_performance_drop: {ROLLBACK}, cooldown: {int(cooldown)}s, "
              f"dry_run: false}}" for name, cooldown in MODELS.items()}, MAX_PER_HOUR)


def delivered(model: str, name: str, episode: int, firing: bool) -> Alert:
    """One alert as Alertmanager delivers it: its fingerprint follows its labels, so a
    re-firing episode has the same fingerprint and a new startsAt."""
    starts = datetime.fromtimestamp(T0 - 7200 + 1000 * episode, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return alert(name, model, "firing" if firing else "resolved", starts)


@dataclass(frozen=True)
class Step:
    advance: int  # seconds since the previous payload
    payload: tuple[Alert, ...]
    running: bool  # whether the retrains started by this payload keep running
    finish: bool  # whether every running retrain finishes before this payload


alerts_ = st.builds(delivered, st.sampled_from([*MODELS, "ghost"]), st.sampled_from([DRIFT, PERF, FEATURE]),
                    st.integers(0, 3), st.booleans())
steps = st.lists(st.builds(Step, st.integers(0, 1500), st.lists(alerts_, max_size=6).map(tuple),
                           st.booleans(), st.integers(0, 3).map(lambda n: n == 0)),  # retrains outlast a step
                 min_size=1, max_size=30)


@dataclass(frozen=True)
class Acted:
    at: float
    model: str
    action: ActionName
    key: str
    while_running: bool  # a retrain of the model was running when this one was decided


Decide = Callable[[Sequence[Alert], Config, ClusterView, float], list[Decision]]


def simulate(policy: Decide, config: Config, deliveries: Sequence[Step]) -> list[Acted]:
    """Feed the payloads one at a time; every decision that acts joins the view (as the
    cluster would show it) before the next payload."""
    now, record, log = T0, list[PastAction](), list[Acted]()
    for step in deliveries:
        now += step.advance
        if step.finish:
            record = [replace(p, running=False) for p in record]
        running = {p.model for p in record if p.running and p.action == "retrain"}
        for d in policy(step.payload, config, ClusterView(past=tuple(record)), now):
            if d.outcome in ("acted", "dry_run", "pending"):
                assert d.model is not None and d.action is not None
                blocked = d.action == "retrain" and d.model in running
                log.append(Acted(now, d.model, d.action, d.alert.key, blocked))
                record.append(PastAction(model=d.model, action=d.action, alert_key=d.alert.key, at=now,
                                         running=step.running and d.action == "retrain"))
    return log


def violations(log: Sequence[Acted], config: Config) -> list[str]:
    """Every way ``log`` breaks the safety rules (empty: it keeps them all)."""
    found: list[str] = []
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    keys: dict[tuple[str, str], int] = defaultdict(int)
    for acted in log:
        times[acted.model, acted.action].append(acted.at)
        keys[acted.key, acted.action] += 1
        if acted.while_running:
            found.append(f"retrain-running: {acted.model} retrained at {acted.at} while a retrain ran")
        in_hour = sum(1 for other in log if 0 <= acted.at - other.at < 3600)
        if in_hour > config.remediate.max_actions_per_hour:
            found.append(f"rate-limit: {in_hour} actions in the hour up to {acted.at}")
    for (model, action), at in times.items():
        actions = config.model(model).actions
        assert actions is not None
        for earlier, later in zip(at, at[1:], strict=False):
            if later - earlier < actions.cooldown:
                found.append(f"cooldown: {model} {action} at {earlier} and again at {later}")
    found.extend(f"duplicate: {key} {action} acted {count} times"
                 for (key, action), count in keys.items() if count > 1)
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(deliveries=steps)
def test_no_sequence_of_deliveries_acts_more_than_the_rules_allow(
        property_config: Config, deliveries: list[Step]) -> None:
    log = simulate(decide, property_config, deliveries)
    assert violations(log, property_config) == []


# The checker above must not pass vacuously: the same deliveries, through policies that
# each break one rule, must show a violation of that rule.

def _with(config: Config, cooldown: float | None = None, max_per_hour: int | None = None) -> Config:
    models = [m.model_copy(update={"actions": m.actions.model_copy(update={"cooldown": cooldown})})
              if cooldown is not None and m.actions is not None else m for m in config.models]
    remediate = config.remediate if max_per_hour is None else config.remediate.model_copy(
        update={"max_actions_per_hour": max_per_hour})
    return config.model_copy(update={"models": models, "remediate": remediate})


def no_cooldown(alerts: Sequence[Alert], config: Config, view: ClusterView, now: float) -> list[Decision]:
    return decide(alerts, _with(config, cooldown=0.0), view, now)


def no_rate_limit(alerts: Sequence[Alert], config: Config, view: ClusterView, now: float) -> list[Decision]:
    return decide(alerts, _with(config, max_per_hour=10**6), view, now)


def no_dedupe(alerts: Sequence[Alert], config: Config, view: ClusterView, now: float) -> list[Decision]:
    forgetful = tuple(replace(p, alert_key=f"forgotten-{i}") for i, p in enumerate(view.past))
    return decide(alerts, config, ClusterView(past=forgetful), now)


def blind_to_running(alerts: Sequence[Alert], config: Config, view: ClusterView,
                     now: float) -> list[Decision]:
    return decide(alerts, config, ClusterView(past=tuple(replace(p, running=False) for p in view.past)), now)


@pytest.mark.parametrize(("policy", "rule"), [
    (no_cooldown, "cooldown"), (no_rate_limit, "rate-limit"), (no_dedupe, "duplicate"),
    (blind_to_running, "retrain-running"),
], ids=["a policy without cooldown is caught", "a policy without the rate limit is caught",
        "a policy without dedupe is caught", "a policy blind to running retrains is caught"])
def test_the_property_catches_a_policy_that_breaks_a_rule(
        property_config: Config, policy: Decide, rule: str) -> None:
    found = find(steps, lambda deliveries: any(
        v.startswith(rule + ":") for v in violations(simulate(policy, property_config, deliveries),
                                                     property_config)),
        settings=settings(max_examples=5000, database=None, deadline=None, phases=[Phase.generate]))
    assert any(v.startswith(rule + ":") for v in violations(simulate(decide, property_config, found),
                                                            property_config)) is False
