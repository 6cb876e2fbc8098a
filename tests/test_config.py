"""The config file: models, loader, and one-run validation with line numbers."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import (
    Config,
    ConfigError,
    ConfigIssue,
    DatasetDriftRule,
    format_duration,
    format_issues,
    format_path,
    load_config,
    parse_duration,
    validate_file,
)
from monitor.engine.stats import Score, StatTest, registry
from monitor.engine.stats import TestKind as Kind
from monitor.errors import UnknownModel

FIXTURES = Path(__file__).parent / "fixtures" / "config"

MINIMAL_MODEL = """\
models:
  - name: m
    reference: ref.csv
    features:
      x: {type: numerical}
"""


def fixture(name: str) -> Path:
    return FIXTURES / f"{name}.yaml"


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line of ``path`` containing ``needle``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not found {occurrence} time(s) in {path}"
    return hits[occurrence - 1]


def write(tmp_path: Path, text: str, name: str = "driftline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def by_path(issues: list[ConfigIssue]) -> dict[str, ConfigIssue]:
    return {issue.path: issue for issue in issues}


@pytest.fixture
def extra_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two stand-in stat tests, registered only for the duration of one test."""

    def score(_a: object, _b: object) -> Score:
        return Score(0.0, 1.0)

    fakes = [
        StatTest(
            name="fake_distance",
            kind=Kind.DISTANCE,
            default_threshold=0.1,
            symmetric=True,
            description="categorical-only distance stand-in",
            categorical=score,
        ),
        StatTest(
            name="fake_pvalue",
            kind=Kind.P_VALUE,
            default_threshold=0.05,
            symmetric=True,
            description="numerical and categorical p-value stand-in",
            numerical=score,
            categorical=score,
        ),
    ]
    for fake in fakes:
        monkeypatch.setitem(registry._REGISTRY, fake.name, fake)
    yield


# --------------------------------------------------------------------------
# valid configs


def test_valid_config_loads_with_defaults_applied() -> None:
    config = load_config(fixture("valid"))

    assert config.model_names() == ["credit-default", "house-prices"]
    assert config.kafka.bootstrap_servers == "kafka-0:9092,kafka-1:9092"
    assert config.kafka.topics.dlq == "dl.dlq"

    credit = config.model("credit-default")
    assert credit.version == "v3"
    assert credit.features["income"].test == "ks"
    assert credit.features["is_new"].categorical
    assert credit.prediction is not None and credit.prediction.name == "score"
    assert credit.target is not None and credit.target.task == "binary_classification"
    assert credit.performance is not None
    assert list(credit.performance.metrics()) == ["accuracy", "roc_auc"]
    assert credit.alerts.for_ == 300.0
    assert credit.alerts.severity == "critical"
    assert credit.actions is not None
    assert credit.actions.cooldown == 3600.0
    assert credit.actions.dry_run is False

    settings = config.effective("credit-default")
    assert settings.window.kind == "count"
    assert settings.window.size == 1000
    assert settings.window.slide_events == 250
    assert settings.alpha == 0.05
    assert settings.correction == "bh"
    assert settings.dataset_drift.share == 0.3
    assert settings.materiality.categorical == 0.05
    assert settings.profile.exact_cap == 50_000
    assert settings.max_categories(credit.features["zip"]) == 50
    assert settings.max_categories(credit.features["region"]) == 100


def test_model_overrides_replace_window_and_merge_materiality_and_profile_key_by_key() -> None:
    config = load_config(fixture("valid"))
    settings = config.effective("house-prices")

    assert settings.window.kind == "time"
    assert settings.window.duration == 3600.0
    assert settings.window.slide_seconds == 900.0
    assert settings.window.slide_events is None
    assert settings.alpha == 0.01
    assert settings.correction == "bonferroni"
    assert settings.dataset_drift.mode == "any"
    # model sets materiality.numerical only: the rest comes from defaults
    assert settings.materiality.numerical == 0.2
    assert settings.materiality.categorical == 0.05
    assert settings.profile.sketch_k == 2048
    assert settings.profile.exact_cap == 50_000
    assert config.model("house-prices").version == "7"


def test_builtin_defaults_apply_when_the_file_has_no_defaults_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL_MODEL))
    settings = config.effective("m")

    assert settings.window.size == 1000 and settings.window.tumbling
    assert settings.alpha == 0.05
    assert settings.correction == "bh"
    assert settings.dataset_drift.mode == "any"
    assert (settings.materiality.numerical, settings.materiality.missing_share) == (0.1, 0.01)
    assert (settings.profile.exact_cap, settings.profile.sketch_k) == (100_000, 1024)
    assert settings.profile.max_categories == 200
    assert config.kafka.bootstrap_servers == "localhost:9092"
    assert config.kafka.topics.predictions == "driftline.predictions"
    assert config.kafka.group_id == "driftline"
    assert config.model("m").alerts.severity == "warning"


def test_relative_paths_resolve_against_the_config_directory() -> None:
    config = load_config(fixture("valid"))
    credit = config.model("credit-default")

    assert credit.reference.raw == "data/credit/reference.parquet"
    assert credit.reference.path == FIXTURES.absolute() / "data/credit/reference.parquet"
    assert credit.actions is not None and credit.actions.on_drift is not None
    retrain = credit.actions.on_drift.retrain
    assert retrain is not None
    assert retrain.job_template.raw == "../k8s/retrain.yaml"
    assert retrain.job_template.path == FIXTURES.absolute().parent / "k8s/retrain.yaml"
    # absolute paths stay as written
    assert config.model("house-prices").reference.path == Path("/srv/reference/houses.csv")
    assert config.source == fixture("valid").absolute()


def test_relative_paths_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    path = write(config_dir, MINIMAL_MODEL)
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("conf") / path.name)

    assert config.model("m").reference.path == config_dir / "ref.csv"


def test_dumped_config_validates_back_to_the_same_config() -> None:
    config = load_config(fixture("valid"))
    dumped = config.model_dump(by_alias=True, exclude_none=True)

    again = Config.model_validate(dumped, context={"base_dir": FIXTURES.absolute()})

    assert (again.kafka, again.defaults, again.models) == (
        config.kafka,
        config.defaults,
        config.models,
    )
    assert again.source is None  # only load_config knows the file


def test_model_lookup_of_an_unknown_name_raises_unknown_model_naming_the_models() -> None:
    config = load_config(fixture("valid"))

    with pytest.raises(UnknownModel, match="'credit-default', 'house-prices'; did you mean "
                                           "'credit-default'"):
        config.model("credit-defualt")
    with pytest.raises(UnknownModel, match="unknown model 'nope'") as raised:
        config.effective("nope")
    assert raised.value.known == ("credit-default", "house-prices")
    assert not isinstance(raised.value, KeyError)  # an API that maps KeyError to 404 hides bugs


def test_stat_tests_registered_later_are_accepted_without_code_changes(
    tmp_path: Path, extra_tests: None
) -> None:
    path = write(
        tmp_path,
        """\
        models:
          - name: m
            reference: ref.csv
            features:
              region: {type: categorical, test: fake_distance, threshold: 0.2}
              flag: {type: boolean, test: fake_pvalue, threshold: 0.01}
        """,
    )

    features = load_config(path).model("m").features

    assert features["region"].test == "fake_distance"
    assert features["region"].threshold == 0.2


def test_yaml_merge_keys_are_not_reported_as_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        common: &common {type: numerical}
        models:
          - name: m
            reference: ref.csv
            features:
              x: {<<: *common, type: categorical}
        """,
    )

    issues = validate_file(path)

    # the anchor's carrier key is unknown; the merge itself is fine
    assert [issue.path for issue in issues] == ["common"]
    assert issues[0].line == 1


# --------------------------------------------------------------------------
# every error in one run


def test_every_error_is_reported_in_one_run_with_its_line() -> None:
    path = fixture("many_errors")

    issues = validate_file(path)

    expected = {
        "defaults.alpha": line_of(path, "alpha: 1.5"),
        "defaults.correction": line_of(path, "correction: bhh"),
        "models[0].featurs": line_of(path, "featurs"),
        "models[0].features.income.test": line_of(path, "test: kss"),
        "models[0].features.region.test": line_of(path, "region:"),
        "models[0].alerts.for": line_of(path, "for: 5x"),
        "models[1].name": line_of(path, "Credit_Default!"),
        "models[1].prediction.name": line_of(path, "prediction:"),
    }
    assert {issue.path: issue.line for issue in issues} == expected
    assert len(issues) == len(expected)
    assert all(issue.file == str(path) for issue in issues)
    assert [issue.line for issue in issues] == sorted(expected.values())


def test_load_config_raises_config_error_carrying_every_issue() -> None:
    path = fixture("many_errors")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.issues == validate_file(path)
    assert str(caught.value).startswith(f"invalid config: {len(caught.value.issues)} problems\n")
    assert format_issues(caught.value.issues) in str(caught.value)


def test_issue_str_reads_file_line_path_and_message() -> None:
    issue = ConfigIssue(
        "driftline.yaml", "models[0].features.region.test", 12, "unknown test 'pssi'"
    )

    assert str(issue) == "driftline.yaml:12: models[0].features.region.test: unknown test 'pssi'"
    assert str(ConfigIssue("a.yaml", "", None, "config file is empty")) == (
        "a.yaml: config file is empty"
    )
    assert format_issues([issue, issue]).count("\n") == 1


def test_paths_format_with_indices_and_quote_unusual_keys() -> None:
    assert format_path(("models", 0, "features", "region", "test")) == (
        "models[0].features.region.test"
    )
    assert format_path(("models", 1, "features", "a.b")) == "models[1].features['a.b']"
    assert format_path(()) == ""


# --------------------------------------------------------------------------
# unknown keys


def test_unknown_key_reports_did_you_mean_with_line_number() -> None:
    path = fixture("unknown_keys")

    issues = by_path(validate_file(path))

    kafka = issues["kafka.bootstrap_server"]
    assert kafka.line == line_of(path, "bootstrap_server")
    assert kafka.message == "unknown key 'bootstrap_server'; did you mean 'bootstrap_servers'?"
    assert issues["defaults.windw"].message.endswith("did you mean 'window'?")
    assert issues["defaults.windw"].line == line_of(path, "windw")
    assert issues["models[0].features.x.tset"].message.endswith("did you mean 'test'?")
    assert issues["models[0].features.x.tset"].line == line_of(path, "tset")


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    issue = by_path(validate_file(fixture("unknown_keys")))["models[0].alerts.colour"]

    assert issue.message == ("unknown key 'colour'; allowed keys: for, severity, consecutive_windows, "
                             "stale_after, stale_windows, max_consumer_lag, overrides")


def test_unknown_metric_is_an_unknown_key_with_a_hint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL_MODEL
        + """\
    prediction: {name: p, type: numerical}
    target: {name: y, task: binary_classification}
    performance: {auc: {min: 0.7}}
""",
    )

    issue = by_path(validate_file(path))["models[0].performance.auc"]

    assert issue.message == "unknown key 'auc'; did you mean 'roc_auc'?"
    assert issue.line == line_of(path, "performance:")


# --------------------------------------------------------------------------
# stat tests and thresholds


def test_unknown_test_name_suggests_the_closest_registered_test() -> None:
    path = fixture("bad_tests")

    issue = by_path(validate_file(path))["models[0].features.income.test"]

    assert issue.message == "unknown test 'kss'; did you mean 'ks'?"
    assert issue.line == line_of(path, "test: kss")
    assert str(issue) == (
        f"{path}:{issue.line}: models[0].features.income.test: "
        "unknown test 'kss'; did you mean 'ks'?"
    )


def test_unknown_test_name_without_a_close_match_lists_the_known_tests(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_MODEL.replace("numerical}", "numerical, test: zzzzzz}"))

    issue = by_path(validate_file(path))["models[0].features.x.test"]

    assert issue.message.startswith("unknown test 'zzzzzz'; known tests: ")
    assert "ks" in issue.message


def test_test_that_does_not_support_the_feature_type_is_an_error() -> None:
    path = fixture("bad_tests")

    issues = by_path(validate_file(path))

    region = issues["models[0].features.region.test"]
    assert region.message.startswith("test 'ks' does not support categorical data")
    assert region.line == line_of(path, "region:")
    # boolean features are tested as categorical
    assert issues["models[0].features.is_new.test"].message.startswith(
        "test 'ks' does not support boolean data"
    )


def test_threshold_range_depends_on_the_kind_of_test(tmp_path: Path, extra_tests: None) -> None:
    path = write(
        tmp_path,
        """\
        models:
          - name: m
            reference: ref.csv
            features:
              height: {type: numerical, test: ks, threshold: 1.5}
              region: {type: categorical, test: fake_distance, threshold: 0}
              plan: {type: categorical, test: fake_distance, threshold: 1.5}
        """,
    )

    issues = by_path(validate_file(path))

    assert set(issues) == {
        "models[0].features.height.threshold",
        "models[0].features.region.threshold",
    }
    assert "p-value test" in issues["models[0].features.height.threshold"].message
    assert "distance test" in issues["models[0].features.region.threshold"].message


def test_threshold_without_an_explicit_test_is_an_error() -> None:
    path = fixture("bad_tests")

    issue = by_path(validate_file(path))["models[0].features.weight.threshold"]

    assert issue.message.startswith("threshold needs an explicit 'test'")
    assert issue.line == line_of(path, "weight:")


def test_max_categories_on_a_numerical_feature_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_MODEL.replace("numerical}", "numerical, max_categories: 5}"))

    issue = by_path(validate_file(path))["models[0].features.x.max_categories"]

    assert issue.message == "max_categories applies to categorical features only"


def test_unknown_feature_type_suggests_the_closest_type(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_MODEL.replace("numerical}", "numeric}"))

    issue = by_path(validate_file(path))["models[0].features.x.type"]

    assert "did you mean 'numerical'?" in issue.message
    assert issue.line == line_of(path, "x:")


# --------------------------------------------------------------------------
# durations and windows


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1m30s500ms", 90.5),
        ("0", 0.0),
    ],
)
def test_parse_duration_reads_prometheus_duration_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1.5h", "5x", "m", "-5m", "5 m", "30m1h", "5M"])
def test_parse_duration_rejects_malformed_strings(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.0, 0.5, 30.0, 300.0, 5400.0, 86400.0, 90061.0])
def test_format_duration_round_trips_through_parse_duration(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_bad_durations_are_reported_with_their_lines() -> None:
    path = fixture("bad_durations")

    issues = by_path(validate_file(path))

    assert set(issues) == {
        "defaults.window.duration",
        "models[0].alerts.for",
        "models[0].actions.cooldown",
    }
    assert issues["defaults.window.duration"].line == line_of(path, "1.5h")
    assert "whole numbers" in issues["defaults.window.duration"].message
    assert issues["models[0].alerts.for"].message.startswith("invalid duration '5x'")
    assert issues["models[0].alerts.for"].line == line_of(path, "for: 5x")
    assert "add a unit" in issues["models[0].actions.cooldown"].message


def test_integer_durations_count_as_seconds(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults:
          window: {duration: 600, slide: 60}
        models:
          - name: m
            reference: ref.csv
            features: {x: {type: numerical}}
            alerts: {for: 90}
        """,
    )

    config = load_config(path)

    assert config.effective("m").window.duration == 600.0
    assert config.effective("m").window.slide_seconds == 60.0
    assert config.model("m").alerts.for_ == 90.0


def test_negative_duration_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_MODEL + "    alerts: {for: -5}\n")

    issue = by_path(validate_file(path))["models[0].alerts.for"]

    assert issue.message == "must be greater than or equal to 0 (got -5)"


def test_window_with_both_size_and_duration_is_an_error() -> None:
    path = fixture("windows")

    issue = by_path(validate_file(path))["defaults.window"]

    assert issue.message.startswith("give either 'size' (a count window) or 'duration'")
    assert issue.line == line_of(path, "window: {size: 1000, duration: 5m}")


def test_window_with_neither_size_nor_duration_is_an_error() -> None:
    issue = by_path(validate_file(fixture("windows")))["models[3].window"]

    assert issue.message.startswith("give one of 'size'")


def test_slide_must_be_smaller_than_the_window() -> None:
    path = fixture("windows")

    issues = by_path(validate_file(path))

    count = issues["models[0].window.slide"]
    assert count.message.startswith("slide (100) must be smaller than size (100)")
    assert count.line == line_of(path, "slide: 100}")
    timed = issues["models[1].window.slide"]
    assert timed.message.startswith("slide (10m) must be shorter than duration (5m)")
    assert timed.line == line_of(path, "slide: 10m")


def test_count_window_slide_must_be_a_count_not_a_duration() -> None:
    issue = by_path(validate_file(fixture("windows")))["models[2].window.slide"]

    assert issue.message.startswith("a count window slides by a number of events")


# --------------------------------------------------------------------------
# cross-field checks


def test_duplicate_model_names_are_an_error() -> None:
    path = fixture("duplicate_models")

    issues = validate_file(path)

    assert len(issues) == 1
    assert issues[0].path == "models[2].name"
    assert issues[0].line == line_of(path, "name: credit-default", occurrence=2)
    assert issues[0].message == ("duplicate model name 'credit-default'; models[0] has it already")


def test_metric_that_does_not_fit_the_task_is_an_error() -> None:
    path = fixture("metric_task")

    issues = by_path(validate_file(path))

    assert set(issues) == {"models[0].performance.rmse", "models[1].performance.f1"}
    rmse = issues["models[0].performance.rmse"]
    assert rmse.message.startswith("metric 'rmse' does not fit task 'binary_classification'")
    assert rmse.line == line_of(path, "rmse:")
    assert issues["models[1].performance.f1"].message.startswith(
        "metric 'f1' does not fit task 'regression'"
    )


def test_performance_needs_a_target_and_bounds_need_min_or_max(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL_MODEL
        + """\
    prediction: {name: p, type: numerical}
    performance: {accuracy: {}, f1: {min: 0.9, max: 0.8}, roc_auc: {min: 1.5}}
""",
    )

    issues = by_path(validate_file(path))

    assert issues["models[0].performance"].message.startswith(
        "performance thresholds need a 'target'"
    )
    assert issues["models[0].performance.accuracy"].message == "give 'min' and/or 'max'"
    assert issues["models[0].performance.f1.max"].message == "max (0.8) is below min (0.9)"
    assert issues["models[0].performance.roc_auc.min"].message.startswith("roc_auc lies between")


def test_prediction_and_target_names_must_not_collide_with_feature_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL_MODEL
        + """\
    prediction: {name: x, type: numerical}
    target: {name: x, task: regression}
""",
    )

    issues = by_path(validate_file(path))

    assert issues["models[0].prediction.name"].message.startswith("prediction 'x' is also a")
    assert issues["models[0].prediction.name"].line == line_of(path, "prediction:")
    assert issues["models[0].target.name"].message.startswith("target 'x' is also a feature")


def test_cross_field_checks_run_even_when_other_keys_fail(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        models:
          - name: m
            reference: ref.csv
            alpha: 7
            features: {x: {type: numerical}}
            prediction: {name: x, type: numerical}
          - name: m
            reference: 12
            features: {y: {type: categorical}}
        """,
    )

    paths = {issue.path for issue in validate_file(path)}

    assert paths == {
        "models[0].alpha",
        "models[0].prediction.name",
        "models[1].name",
        "models[1].reference",
    }


def test_dataset_drift_rule_is_any_or_a_share() -> None:
    any_rule = DatasetDriftRule.model_validate("any")
    share = DatasetDriftRule.model_validate({"share": 0.5})

    assert any_rule.mode == "any" and any_rule.decide(1, 10)
    assert not any_rule.decide(0, 10)
    assert share.decide(5, 10) and not share.decide(4, 10)
    assert any_rule.model_dump_json() == '"any"'
    assert share.model_dump_json() == '{"share":0.5}'


def test_dataset_drift_rule_rejects_other_strings(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults: {dataset_drift: all}\n" + MINIMAL_MODEL)

    issue = by_path(validate_file(path))["defaults.dataset_drift"]

    assert issue.message.startswith("expected 'any' or a mapping like {share: 0.3}")
    assert issue.line == 1


# --------------------------------------------------------------------------
# YAML and file problems


def test_duplicate_yaml_keys_are_an_error_with_both_lines() -> None:
    path = fixture("duplicate_keys")

    issues = by_path(validate_file(path))

    alpha = issues["defaults.alpha"]
    assert alpha.line == line_of(path, "alpha: 0.01")
    assert f"first on line {line_of(path, 'alpha: 0.05')}" in alpha.message
    feature = issues["models[0].features.x"]
    assert feature.line == line_of(path, "x: {type: categorical}")
    assert feature.message.startswith("duplicate key 'x'")
    with pytest.raises(ConfigError):
        load_config(path)


def test_invalid_yaml_syntax_reports_the_parser_line() -> None:
    path = fixture("bad_syntax")

    issues = validate_file(path)

    assert len(issues) == 1
    assert issues[0].path == ""
    assert issues[0].line == line_of(path, "y: {type: numerical}")
    assert issues[0].message.startswith("invalid YAML: expected ',' or '}'")
    assert f"on line {line_of(path, 'x: {type: numerical')}" in issues[0].message


def test_unknown_yaml_tag_is_an_invalid_yaml_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL_MODEL + "    version: !!python/name:os.system ''\n")

    issues = validate_file(path)

    assert len(issues) == 1
    assert issues[0].message.startswith("invalid YAML:")
    assert issues[0].line == line_of(path, "version:")


def test_empty_file_is_an_error() -> None:
    issues = validate_file(fixture("empty"))

    assert issues == [
        ConfigIssue(
            str(fixture("empty")),
            "",
            None,
            "config file is empty; expected a mapping with a 'models' list",
        )
    ]


def test_file_with_only_comments_counts_as_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here yet\n")

    assert validate_file(path)[0].message.startswith("config file is empty")


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    issues = validate_file(path)

    assert issues == [ConfigIssue(str(path), "", None, "config file not found")]
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(path))


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert validate_file(tmp_path)[0].message == "is a directory, not a config file"


def test_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"models:\n  - name: caf\xe9\n")

    issues = validate_file(path)

    assert issues[0].message == "config file is not UTF-8 text"
    assert issues[0].line == 2


def test_top_level_list_is_an_error() -> None:
    issues = validate_file(fixture("not_a_mapping"))

    assert len(issues) == 1
    assert issues[0].line == 1
    assert issues[0].message.startswith("the top level must be a mapping")


def test_missing_models_and_features_are_reported_as_missing_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults: {alpha: 0.1}
        """,
    )

    issues = validate_file(path)

    assert [(issue.path, issue.line, issue.message) for issue in issues] == [
        ("models", 1, "missing required key 'models'")
    ]


def test_empty_models_list_and_wrong_shapes_read_plainly(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        kafka: [localhost]
        models: []
        """,
    )

    issues = by_path(validate_file(path))

    assert issues["kafka"].message == "expected a mapping, got a list"
    assert issues["models"].message == "must not be empty"


def test_keys_that_yaml_reads_as_booleans_are_reported_with_a_quoting_hint(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, MINIMAL_MODEL + "      on: {type: categorical}\n")

    # pydantic reports the key True as 1 in its error location
    issue = by_path(validate_file(path))["models[0].features[1]"]

    assert issue.message.startswith("keys must be strings; YAML read this key as true")
    assert issue.line == line_of(path, "on:")


def test_the_service_section_defaults_to_safe_values_when_absent(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL_MODEL))

    assert config.service.history == 50
    assert config.service.checkpoint_interval == 10.0
    assert config.service.max_message_bytes == 1_048_576
    assert config.service.label_join.ttl == 7 * 86400.0
    assert config.service.label_join.max_pending == 100_000
    assert config.kafka.partitions == 4


def test_service_settings_take_durations_and_report_each_bad_value_with_its_line(tmp_path: Path) -> None:
    good = load_config(write(tmp_path, "service: {checkpoint_interval: 2s, label_join: {ttl: 1h}}\n"
                             + MINIMAL_MODEL))
    assert good.service.checkpoint_interval == 2.0 and good.service.label_join.ttl == 3600.0

    text = ("service:\n  history: 0\n  checkpoint_interval: soon\n  label_join: {max_pendng: 5}\n"
            "kafka: {partitions: 0}\n" + MINIMAL_MODEL)
    issues = by_path(validate_file(write(tmp_path, text, "bad.yaml")))

    assert issues["service.history"].line == 2
    assert issues["service.checkpoint_interval"].line == 3
    assert "invalid duration 'soon'" in issues["service.checkpoint_interval"].message
    assert "did you mean 'max_pending'" in issues["service.label_join.max_pendng"].message
    assert issues["kafka.partitions"].line == 5
