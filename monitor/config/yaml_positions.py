"""YAML with positions: the line of every key, and every duplicate key.

The YAML is composed into a node tree by a ``SafeLoader`` whose nodes carry
``start_mark``; walking that tree before construction records the 1-based
line of every mapping key and sequence item by key path, and any duplicate
key, which PyYAML would otherwise silently collapse.  :func:`_locate` maps a
pydantic error ``loc`` back to a line through those positions;
:func:`_yaml_issue` words a YAML syntax error as a :class:`ConfigIssue`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import yaml

from monitor.config.errors import ConfigIssue

_MERGE_TAG = "tag:yaml.org,2002:merge"
Position = tuple[object, ...]


class _PositionLoader(yaml.SafeLoader):
    """A SafeLoader that records, before construction, the 1-based line of
    every mapping key and sequence item by path, and every duplicate key."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.positions: dict[Position, int] = {}
        self.duplicates: dict[int, tuple[Position, int]] = {}  # line -> (path, first line)
        self._open: set[int] = set()

    def walk(self, node: yaml.Node, path: Position = (), explicit: bool = True) -> None:
        if id(node) in self._open:  # a recursive alias
            return
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                self._walk_mapping(node, path, explicit)
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    self._record(path + (i,), item.start_mark.line + 1, explicit)
                    self.walk(item, path + (i,), explicit)
        finally:
            self._open.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: Position, explicit: bool) -> None:
        seen: dict[object, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # unhashable key: construction reports it
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.setdefault(line, (path + (key,), seen[key]))
            else:
                seen[key] = line
            self._record(path + (key,), line, explicit)
            self.walk(value_node, path + (key,), explicit)
        for source in merged:  # `<<: *anchor`: explicit keys win, as in construction
            self.walk(source, path, explicit=False)

    def _record(self, path: Position, line: int, explicit: bool) -> None:
        if explicit:
            self.positions[path] = line
        else:
            self.positions.setdefault(path, line)


def _yaml_issue(file: str, exc: yaml.YAMLError, text: str) -> ConfigIssue:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "could not parse"
        line = None if mark is None else mark.line + 1
        context = ""
        if exc.context:
            context_mark = exc.context_mark
            started = context_mark.line + 1 if context_mark is not None else None
            at = f" on line {started}" if started is not None and started != line else ""
            context = f" ({exc.context}{at})"
        return ConfigIssue(file, "", line, f"invalid YAML: {problem}{context}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return ConfigIssue(file, "", line, f"invalid YAML: {exc.reason}")
    return ConfigIssue(file, "", None, f"invalid YAML: {exc}")


def _locate(
    loc: Sequence[object], positions: Mapping[Position, int]
) -> tuple[Position, int | None]:
    """Map a pydantic error ``loc`` to (data path, line of the deepest known key)."""
    path: list[object] = []
    line = positions.get(())
    known = True
    for part in loc:
        if part == "[key]":  # the error is about a mapping key itself
            continue
        path.append(part)
        if known and tuple(path) in positions:
            line = positions[tuple(path)]
        else:
            known = False
    return tuple(path), line
