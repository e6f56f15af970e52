"""YAML files people write (evaluation suites, release-gate specs), read safely and with the line of each mapping.

Errors in such files must name the line, so every mapping read here remembers where it started (``line_of``);
``strip_lines`` gives the plain data back.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

LINE_KEY = "__line__"
KEY_LINES = "__key_lines__"


class LineLoader(yaml.SafeLoader):
    """A safe loader that records the 1-based line each mapping starts on under ``LINE_KEY``."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE_KEY] = node.start_mark.line + 1
    # Each key's own line: a bad value on line 7 of a mapping that starts on line 1 is reported on line 7.
    mapping[KEY_LINES] = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return mapping


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class YamlSyntaxError(ValueError):
    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def load_with_lines(text: str) -> Any:
    """Parse ``text``; a syntax error becomes ``YamlSyntaxError`` with its line."""
    try:
        return yaml.load(text, Loader=LineLoader)  # noqa: S506 - LineLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise YamlSyntaxError(mark.line + 1 if mark else None, f"not valid YAML: {exc.problem}") from None


def line_of(value: Any) -> int | None:
    return value.get(LINE_KEY) if isinstance(value, dict) else None


def line_of_key(mapping: Any, key: Any) -> int | None:
    """The line ``key`` of ``mapping`` is written on (None when unknown)."""
    return mapping.get(KEY_LINES, {}).get(key) if isinstance(mapping, dict) else None


def strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k not in (LINE_KEY, KEY_LINES)}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


def line_of_error(raw: Any, loc: tuple[Any, ...] | list[Any]) -> int | None:
    """The line of the value a validation error's ``loc`` points at (the deepest mapping or key with a line)."""
    node: Any = raw
    line = line_of(raw)
    for part in loc:
        line = line_of_key(node, part) or line
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        line = line_of(node) or line
    return line


def read_versioned_mapping(
    path: Path,
    data: bytes,
    *,
    error: Callable[[Path, int | None, str], Exception],
    shape: str,
    schema_version: int,
) -> dict[str, Any]:
    """``data`` (the bytes of ``path``) parsed as a YAML mapping with lines and the expected ``schema_version``;
    every problem is raised as ``error(path, line, problem)``. ``shape`` says what the mapping holds."""
    try:
        raw = load_with_lines(data.decode("utf-8"))
    except YamlSyntaxError as exc:
        raise error(path, exc.line, exc.problem) from None
    except UnicodeDecodeError as exc:
        raise error(path, None, f"not UTF-8 ({exc.reason})") from None
    if not isinstance(raw, dict):
        raise error(path, 1, shape)
    if raw.get("schema_version") != schema_version:
        raise error(path, 1, f"schema_version must be {schema_version} (got {raw.get('schema_version')!r})")
    return raw
