"""The README's config and metrics references are generated, and the copy there is current.

``python -m monitor.cli.reference --write`` regenerates them; these tests fail when the README
copy differs from what the pydantic models and the exporters say, and show that the check can
fail (a removed row, a changed default, a new field).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field

from alerts.metrics import ReceiverMetrics
from collectors.delivery.metrics import CollectorMetrics
from monitor.cli import reference
from monitor.cli.reference import (
    config_reference,
    config_rows,
    exporter_registries,
    generated_blocks,
    metric_rows,
    rewrite,
    stale_blocks,
)
from monitor.config import Config, KafkaConfig
from monitor.errors import UsageError
from monitor.runtime import exposition
from monitor.service.export import make_registry
from tests.test_export import full_status

README = Path(__file__).resolve().parent.parent / "README.md"
METRIC_BLOCKS = ("metrics-serve", "metrics-remediate", "metrics-collector")


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    return generated_blocks()


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def row(markdown: str, first_cell: str) -> str:
    """The table line of ``markdown`` whose first cell is ``first_cell``."""
    (line,) = [line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |")]
    return line


def test_the_readme_config_reference_matches_the_pydantic_models(readme: str, blocks: dict[str, str]) -> None:
    assert stale_blocks(readme, {"config-reference": blocks["config-reference"]}) == [], (
        "README.md is stale: run python -m monitor.cli.reference --write")


def test_the_readme_metrics_reference_matches_the_exporters(readme: str, blocks: dict[str, str]) -> None:
    assert stale_blocks(readme, {name: blocks[name] for name in METRIC_BLOCKS}) == [], (
        "README.md is stale: run python -m monitor.cli.reference --write")


def test_a_readme_with_a_removed_metric_row_is_reported_stale(readme: str, blocks: dict[str, str]) -> None:
    line = row(readme, "`driftline_ready`")
    assert stale_blocks(readme.replace(line + "\n", ""), blocks) == ["metrics-serve"]


def test_a_readme_with_a_changed_default_is_reported_stale(readme: str, blocks: dict[str, str]) -> None:
    line = row(readme, "`defaults.alpha`")
    assert "| `0.05` |" in line
    changed = readme.replace(line, line.replace("| `0.05` |", "| `0.01` |"))
    assert stale_blocks(changed, blocks) == ["config-reference"]


def test_a_readme_with_a_changed_help_text_is_reported_stale(readme: str, blocks: dict[str, str]) -> None:
    line = row(readme, "`driftline_collector_queue_depth`")
    changed = readme.replace(line, line.replace("Events waiting", "Events queued"))
    assert stale_blocks(changed, blocks) == ["metrics-collector"]


def test_a_new_field_added_to_a_model_appears_in_the_reference_and_makes_the_readme_stale(
        readme: str) -> None:
    class Kafka(KafkaConfig):
        retries: int = Field(default=3, ge=0, description="Times a failed send is retried.")

    class Extended(Config):
        kafka: Kafka = Field(default=Kafka(), description="The Kafka connection.")

    markdown = config_reference(Extended)
    assert row(markdown, "`kafka.retries`") == (
        "| `kafka.retries` | integer, at least 0 | `3` | Times a failed send is retried. |")
    assert stale_blocks(readme, {"config-reference": markdown}) == ["config-reference"]


def test_every_config_key_has_a_one_line_description() -> None:
    rows = list(config_rows(Config))
    assert len(rows) > 80
    missing = [row.key for row in rows if not row.description.strip() or "\n" in row.description]
    assert missing == []


def test_the_config_reference_says_types_defaults_and_choices_in_plain_words() -> None:
    rows = {row.key: row for row in config_rows(Config)}
    assert rows["defaults.correction"].type == "one of `none`, `bonferroni`, `bh`"
    assert rows["defaults.correction"].default == "`bh`"
    assert rows["service.checkpoint_interval"].type == "duration, above 0"
    assert rows["service.checkpoint_interval"].default == "`10s`"
    assert rows["service.label_join.ttl"].default == "`7d`"
    assert rows["defaults.alpha"].type == "number, above 0 and below 1"
    assert rows["kafka.partitions"].type == "integer, 1 to 10000"
    assert rows["defaults.window"].default == "`{size: 1000}`"
    assert rows["defaults.window.slide"].type == "integer (events) or duration"
    assert rows["defaults.dataset_drift"].default == "`any`"
    assert rows["models"].default == "required"
    assert rows["models[].alerts.consecutive_windows"].default == "`3`"
    assert rows["models[].alerts.for"].default == "`0s`"  # the YAML key, not the attribute
    assert rows["models[].features.<name>.type"].type == "one of `numerical`, `categorical`, `boolean`"
    assert "`ks`" in rows["models[].features.<name>.test"].type
    assert rows["models[].reference"].type == "file path"
    # a model met again is not expanded twice: its row says where its keys are
    assert rows["models[].window"].type == "mapping (keys as `defaults.window`)"
    assert "models[].window.size" not in rows


def test_every_exported_metric_has_a_one_line_description() -> None:
    for name, registry in exporter_registries().items():
        rows = metric_rows(registry)
        assert rows, name
        for metric in rows:
            assert metric.name.startswith("driftline_"), metric.name
            assert len(metric.description.split()) >= 5 and "\n" not in metric.description, metric.name
            if metric.type == "counter":
                assert metric.name.endswith("_total"), metric.name


def documented_labels(registry: Any) -> dict[str, set[str]]:
    return {row.name.removesuffix("_total"): set(row.labels) for row in metric_rows(registry)}


def scraped_labels(registry: Any) -> dict[str, set[str]]:
    """Label names each family's samples carry (``le`` aside), for the families with samples."""
    body, _ = exposition(registry)
    return {family.name: {key for sample in family.samples for key in sample.labels} - {"le"}
            for family in text_string_to_metric_families(body.decode())
            if family.samples and not family.name.endswith("_created")}  # the client's own series


def test_the_labels_listed_are_the_labels_the_series_carry() -> None:
    serve = make_registry(full_status)
    collector = CollectorMetrics(("credit",))
    collector.observe_proxy_latency("credit", 200, 0.01)
    receiver = ReceiverMetrics(("credit",))
    receiver.actions.labels(model="credit", action="retrain", outcome="acted").inc()
    receiver.last_action.labels(model="credit", action="retrain").set(1.0)
    receiver.handle_seconds.observe(0.01)
    for registry in (serve, collector.registry, receiver.registry):
        scraped, documented = scraped_labels(registry), documented_labels(registry)
        assert len(scraped) >= len(documented) // 2  # most families have samples here
        for family, labels in scraped.items():
            assert documented[family] == labels, family


def test_check_exits_1_naming_the_stale_blocks_and_write_rewrites_only_between_the_markers(
        tmp_path: Path, readme: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = row(readme, "`driftline_ready`")
    path = tmp_path / "README.md"
    path.write_text(readme.replace(line + "\n", "").replace("## Metrics reference", "## Metrics, edited"))

    assert reference.main(["--check", str(path)]) == 1
    assert "stale generated blocks: metrics-serve;" in capsys.readouterr().err

    assert reference.main(["--write", str(path)]) == 0
    written = path.read_text()
    assert line in written and "## Metrics, edited" in written  # prose outside the markers stays
    assert written == readme.replace("## Metrics reference", "## Metrics, edited")
    assert reference.main(["--check", str(path)]) == 0


def test_a_readme_without_the_markers_is_stale_and_cannot_be_written(
        tmp_path: Path, blocks: dict[str, str]) -> None:
    text = ("# a README\n\n<!-- BEGIN generated: metrics-serve (x) -->\nold\n"
            "<!-- END generated: metrics-serve -->\n")
    assert stale_blocks(text, blocks) == list(blocks)
    with pytest.raises(UsageError, match="no generated block markers for config-reference, "
                                         "metrics-remediate, metrics-collector"):
        rewrite(text, blocks)
    assert rewrite(text, {"metrics-serve": "| a |\n"}) == (
        "# a README\n\n<!-- BEGIN generated: metrics-serve (x) -->\n\n| a |\n\n"
        "<!-- END generated: metrics-serve -->\n")
    path = tmp_path / "README.md"
    path.write_text(text)
    assert reference.main(["--write", str(path)]) == 1
    assert path.read_text() == text
