"""The README's generated reference tables: the config keys and the metrics.

``python -m monitor.cli.reference [--check|--write] [README.md]``

* the **config reference** walks the pydantic models from :class:`~monitor.config.Config`
  down: one row per key path (``models[].alerts.consecutive_windows``) with its type in
  plain words, its default and its ``Field(description=...)``;
* the **metrics references** list what each exporter registers on a fresh registry (the
  service's :class:`~monitor.service.export.StatusCollector`, the receiver's
  :class:`~alerts.metrics.ReceiverMetrics`, the sidecar's
  :class:`~collectors.delivery.metrics.CollectorMetrics`): name, type, labels and HELP text.

Each table lives in the README between ``<!-- BEGIN generated: NAME ... -->`` and
``<!-- END generated: NAME -->``.  Without a flag the tables are printed; ``--write``
replaces what is between the markers (nothing else); ``--check`` exits 1 naming the blocks
that differ from what the code says.  It sits in the CLI layer because only the CLI may
import the service, the collector and the receiver together.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import AfterValidator, BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from monitor.config.durations import _coerce_duration, _coerce_slide, format_duration
from monitor.config.fields import ResolvedPath, _check_test_name
from monitor.config.models import Config
from monitor.config.settings import DatasetDriftRule
from monitor.engine import stats
from monitor.errors import UsageError
from monitor.runtime import write_atomically

COMMAND = "python -m monitor.cli.reference --write"


# ---- the config reference -------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigRow:
    key: str
    type: str
    default: str
    description: str


def config_rows(model: type[BaseModel], prefix: str = "",
                expanded: dict[type[BaseModel], str] | None = None) -> Iterator[ConfigRow]:
    """One row per key of ``model`` and, depth first, of the models below it.  A model met
    a second time (``models[].window`` after ``defaults.window``) is not expanded again:
    its row says where its keys are listed."""
    expanded = {} if expanded is None else expanded
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        annotation, metadata = _unwrap(field.annotation, list(field.metadata))
        nested, suffix = _nested(annotation)
        words = _type_words(annotation, metadata)
        seen = expanded.get(nested) if nested is not None else None
        if seen is not None:
            words += f" (keys as `{seen}`)"
        yield ConfigRow(key, words, _default(field, metadata), field.description or "")
        if nested is not None and seen is None and nested not in _LEAF_MODELS:
            expanded[nested] = key + suffix
            yield from config_rows(nested, key + suffix + ".", expanded)


def config_reference(model: type[BaseModel] = Config) -> str:
    """The Markdown table of every key of ``model``."""
    return _table(("key", "type", "default", "meaning"),
                  ((f"`{row.key}`", row.type, row.default, row.description)
                   for row in config_rows(model)))


# Models that a config value stands for as a whole (a path string, `any`), and their words.
_LEAF_MODELS: dict[type[BaseModel], str] = {
    ResolvedPath: "file path",
}
_MODEL_WORDS: dict[type[BaseModel], str] = {
    **_LEAF_MODELS,
    DatasetDriftRule: "`any` or a mapping",
}
_SCALAR_WORDS: dict[object, str] = {bool: "true or false", int: "integer", float: "number", str: "string"}


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """``annotation`` without ``| None`` and ``Annotated``, and all the metadata met on the way."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            for item in extra:
                metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        elif origin in (Union, types.UnionType) and type(None) in get_args(annotation):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return annotation, metadata


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model a key holds (itself, in a list, or as the values of a mapping) and the
    path step to its keys: ``""``, ``"[]"`` or ``".<name>"``."""
    origin = get_origin(annotation)
    if origin is list:
        inner, _ = _unwrap(get_args(annotation)[0], [])
        return (inner, "[]") if _is_model(inner) else (None, "")
    if origin is dict:
        inner, _ = _unwrap(get_args(annotation)[1], [])
        return (inner, ".<name>") if _is_model(inner) else (None, "")
    return (annotation, "") if _is_model(annotation) else (None, "")


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _validators(metadata: list[Any]) -> set[Callable[..., Any]]:
    return {item.func for item in metadata if isinstance(item, BeforeValidator | AfterValidator)}


def _type_words(annotation: Any, metadata: list[Any]) -> str:
    origin = get_origin(annotation)
    checks = _validators(metadata)
    if _coerce_duration in checks:
        words = "duration"
    elif _coerce_slide in checks:
        words = "integer (events) or duration"
    elif _check_test_name in checks:
        words = "test name: " + ", ".join(f"`{name}`" for name in stats.names())
    elif origin is Literal:
        words = "one of " + ", ".join(f"`{choice}`" for choice in get_args(annotation))
    elif origin is list:
        inner, inner_metadata = _unwrap(get_args(annotation)[0], [])
        words = "list of " + ("mappings" if _is_model(inner) else _type_words(inner, inner_metadata))
    elif origin is dict:
        inner, inner_metadata = _unwrap(get_args(annotation)[1], [])
        words = "mapping by name, of " + (
            "mappings" if _is_model(inner) else _type_words(inner, inner_metadata))
    elif _is_model(annotation):
        words = _MODEL_WORDS.get(annotation, "mapping")
    elif annotation in _SCALAR_WORDS:
        words = _SCALAR_WORDS[annotation]
    else:
        words = _plain(annotation)
    return ", ".join([words, *_bounds(metadata)])


def _plain(annotation: Any) -> str:
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType) and args:
        return " or ".join(_type_words(*_unwrap(arg, [])) for arg in args)
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any]) -> list[str]:
    """The constraints in ``metadata`` in words: ``non-empty``, ``1 to 1000``, ``above 0``."""
    words = ["non-empty" for item in metadata if isinstance(item, MinLen) and item.min_length == 1]
    ge = next((_number(item.ge) for item in metadata if isinstance(item, Ge)), None)
    gt = next((_number(item.gt) for item in metadata if isinstance(item, Gt)), None)
    le = next((_number(item.le) for item in metadata if isinstance(item, Le)), None)
    lt = next((_number(item.lt) for item in metadata if isinstance(item, Lt)), None)
    if ge is not None and le is not None:
        return [*words, f"{ge} to {le}"]
    low = f"at least {ge}" if ge is not None else f"above {gt}" if gt is not None else None
    high = f"at most {le}" if le is not None else f"below {lt}" if lt is not None else None
    bounds = " and ".join(part for part in (low, high) if part)
    return [*words, bounds] if bounds else words


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _default(field: FieldInfo, metadata: list[Any]) -> str:
    if field.default_factory is not None:
        value: object = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if _coerce_duration in _validators(metadata) and isinstance(value, int | float):
        return f"`{format_duration(value)}`"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
        if value == {}:
            return "its keys' defaults"
    return f"`{_flow(value)}`"


def _flow(value: object) -> str:
    """``value`` as YAML flow style: ``{size: 1000}``, ``true``, ``bh``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    return _number(value)


# ---- the metrics references ---------------------------------------------------------------


class _Family(Protocol):
    name: str
    type: str
    documentation: str


class _Registry(Protocol):
    def collect(self) -> Iterable[_Family]: ...


@dataclass(frozen=True)
class MetricRow:
    name: str
    type: str
    labels: tuple[str, ...]
    description: str


def metric_rows(registry: _Registry) -> list[MetricRow]:
    """Every family ``registry`` exports, in its order.  Counters are named with their
    ``_total`` sample suffix, as PromQL sees them.  Label names come from the metric
    definitions, so families without series yet are listed with their labels too."""
    wrapper_labels = {
        getattr(collector, "_name", ""): tuple(getattr(collector, "_labelnames", ()))
        for collector in getattr(registry, "_collector_to_names", {})
    }
    rows = []
    for family in registry.collect():
        labels = getattr(family, "_labelnames", None)
        rows.append(MetricRow(
            name=family.name + ("_total" if family.type == "counter" else ""),
            type=family.type,
            labels=tuple(labels) if labels is not None else wrapper_labels.get(family.name, ()),
            description=family.documentation,
        ))
    return rows


def metrics_reference(registry: _Registry) -> str:
    """The Markdown table of ``registry``'s families."""
    return _table(("metric", "type", "labels", "meaning"),
                  ((f"`{row.name}`", row.type, ", ".join(row.labels), row.description)
                   for row in metric_rows(registry)))


def exporter_registries() -> dict[str, _Registry]:
    """A fresh registry of each exporter, by block name."""
    from alerts.metrics import ReceiverMetrics
    from collectors.delivery.metrics import CollectorMetrics
    from monitor.service.export import make_registry
    from monitor.streaming.status import ServiceStatus

    return {
        "metrics-serve": make_registry(ServiceStatus),
        "metrics-remediate": ReceiverMetrics().registry,
        "metrics-collector": CollectorMetrics().registry,
    }


# ---- the README blocks ---------------------------------------------------------------------


def generated_blocks() -> dict[str, str]:
    """Each generated block's Markdown, by name."""
    blocks = {"config-reference": config_reference()}
    blocks.update((name, metrics_reference(registry)) for name, registry in exporter_registries().items())
    return blocks


def _block_re(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- BEGIN generated: {re.escape(name)}\b[^\n]*-->\n)(.*?)"
                      rf"(^<!-- END generated: {re.escape(name)} -->)", re.DOTALL | re.MULTILINE)


def _body(markdown: str) -> str:
    return "\n" + markdown.rstrip("\n") + "\n\n"


def stale_blocks(text: str, blocks: Mapping[str, str]) -> list[str]:
    """The names of ``blocks`` whose copy in ``text`` differs (or is missing)."""
    stale = []
    for name, markdown in blocks.items():
        match = _block_re(name).search(text)
        if match is None or match.group(2) != _body(markdown):
            stale.append(name)
    return stale


def rewrite(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with what lies between each block's markers replaced; every block's markers
    must be there (:class:`~monitor.errors.UsageError` otherwise)."""
    missing = [name for name in blocks if _block_re(name).search(text) is None]
    if missing:
        raise UsageError(f"no generated block markers for {', '.join(missing)}; add "
                         f"'<!-- BEGIN generated: NAME ({COMMAND}) -->' and "
                         f"'<!-- END generated: NAME -->' lines")
    for name, markdown in blocks.items():
        match = _block_re(name).search(text)
        assert match is not None
        text = text[:match.start(2)] + _body(markdown) + text[match.end(2):]
    return text


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.cli.reference",
        description="The README's generated config and metrics references.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 naming the stale blocks")
    mode.add_argument("--write", action="store_true", help="rewrite the blocks between their markers")
    parser.add_argument("readme", nargs="?", default="README.md", help="default: ./README.md")
    args = parser.parse_args(argv)
    blocks = generated_blocks()
    if not (args.check or args.write):
        for name, markdown in blocks.items():
            print(f"<!-- {name} -->\n{markdown}")
        return 0
    path = Path(args.readme)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"driftline: error: {path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = stale_blocks(text, blocks)
        if stale:
            print(f"{path}: stale generated blocks: {', '.join(stale)}; run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    try:
        updated = rewrite(text, blocks)
        if updated != text:
            write_atomically(path, updated)
    except UsageError as exc:
        print(f"driftline: error: {path}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
