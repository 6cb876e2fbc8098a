"""Loading a config file in one pass.

Read the bytes, parse them with positions, validate with the pydantic models,
and map every problem to a :class:`ConfigIssue` with its key path and line:
:func:`validate_file` returns them all, :func:`load_config` raises them in a
:class:`ConfigError`.  Relative paths resolve against the file's directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from monitor.config.errors import ConfigError, ConfigIssue, _describe, format_path
from monitor.config.fields import ResolvedPath
from monitor.config.models import Config
from monitor.config.strict import _MESSAGE_KEY
from monitor.config.yaml_positions import _locate, _PositionLoader, _yaml_issue


def _read(path: Path, file: str, check_paths: bool = False) -> tuple[Config | None, list[ConfigIssue]]:
    def fail(message: str, line: int | None = None) -> tuple[None, list[ConfigIssue]]:
        return None, [ConfigIssue(file, "", line, message)]

    try:
        data_bytes = path.read_bytes()
    except FileNotFoundError:
        return fail("config file not found")
    except IsADirectoryError:
        return fail("is a directory, not a config file")
    except PermissionError:
        return fail("cannot read config file: permission denied")
    except OSError as exc:
        return fail(f"cannot read config file: {exc.strerror or exc}")
    try:
        text = data_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return fail("config file is not UTF-8 text", data_bytes.count(b"\n", 0, exc.start) + 1)
    return _parse(text, path, file, check_paths)


def _parse(text: str, path: Path, file: str, check_paths: bool) -> tuple[Config | None, list[ConfigIssue]]:
    """The config in ``text``, as if read from ``path`` (relative paths resolve against its
    directory), and every issue, named by ``file``."""
    def fail(message: str, line: int | None = None) -> tuple[None, list[ConfigIssue]]:
        return None, [ConfigIssue(file, "", line, message)]

    loader = _PositionLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            loader.walk(node)
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        return None, [_yaml_issue(file, exc, text)]
    finally:
        loader.dispose()

    issues = [
        ConfigIssue(
            file,
            format_path(dup_path),
            line,
            f"duplicate key {dup_path[-1]!r} (first on line {first}); YAML would keep only "
            "the last value",
        )
        for line, (dup_path, first) in loader.duplicates.items()
    ]
    if data is None:
        return fail("config file is empty; expected a mapping with a 'models' list")
    if not isinstance(data, dict):
        return fail(
            f"the top level must be a mapping (kafka, defaults, models); got {_describe(data)}",
            loader.positions.get((), 1),
        )
    loader.positions.setdefault((), 1)

    config: Config | None = None
    try:
        config = Config.model_validate(data, context={"base_dir": path.absolute().parent})
    except ValidationError as exc:
        for error in exc.errors():
            error_path, line = _locate(error["loc"], loader.positions)
            ctx = error.get("ctx") or {}
            message = ctx.get(_MESSAGE_KEY, error["msg"])
            issues.append(ConfigIssue(file, format_path(error_path), line, str(message)))
    if config is not None:
        config._source = path.absolute()
        if check_paths:
            issues.extend(_path_issues(config, file, loader.positions))
    issues.sort(key=lambda issue: (issue.line is not None, issue.line or 0))
    return (None if issues else config), issues


def validate_file(path: str | Path, *, check_paths: bool = False) -> list[ConfigIssue]:
    """Every problem in the config file at ``path``, by line; empty when valid.  With
    ``check_paths``, also every path in it (``reference``, ``job_template``) that does not
    name a readable file, resolved as the config's users resolve it (against the config
    file's directory)."""
    return _read(Path(path), str(path), check_paths)[1]


def validate_text(text: str, path: str | Path, *, check_paths: bool = False) -> list[ConfigIssue]:
    """:func:`validate_file` for a config not written yet: every problem of ``text`` as the
    file ``path`` would hold it (relative paths resolve against ``path``'s directory)."""
    return _parse(text, Path(path), str(path), check_paths)[1]


def _path_issues(config: Config, file: str, positions: Mapping[tuple[object, ...], int]
                 ) -> list[ConfigIssue]:
    issues = []
    for where, value in _resolved_paths(config, ()):
        problem = _unreadable(value.path)
        if problem:
            key_path, line = _locate(where, positions)
            shown = str(value.path) if value.raw == str(value.path) else f"{value.raw!r} ({value.path})"
            issues.append(ConfigIssue(file, format_path(key_path), line, f"{problem}: {shown}"))
    return issues


def _resolved_paths(value: object, where: tuple[object, ...]
                    ) -> Iterator[tuple[tuple[object, ...], ResolvedPath]]:
    """Every :class:`ResolvedPath` in a validated config, with its key path in the YAML."""
    if isinstance(value, ResolvedPath):
        yield where, value
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from _resolved_paths(getattr(value, name), (*where, field.alias or name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _resolved_paths(item, (*where, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _resolved_paths(item, (*where, index))


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None."""
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory, not a file"
    except PermissionError:
        return "cannot read: permission denied"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def load_config(path: str | Path) -> Config:
    """The validated config at ``path``; :class:`ConfigError` listing every problem otherwise."""
    config, issues = _read(Path(path), str(path))
    if config is None:
        raise ConfigError(issues)
    return config
