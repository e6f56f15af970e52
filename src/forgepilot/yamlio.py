"""YAML files people write (evaluation suites, release-gate specs), read safely and with the line of each mapping.

Errors in such files must name the line, so every mapping read here remembers where it started (``line_of``);
``strip_lines`` gives the plain data back.
"""

from __future__ import annotations

from typing import Any

import yaml

LINE_KEY = "__line__"


class LineLoader(yaml.SafeLoader):
    """A safe loader that records the 1-based line each mapping starts on under ``LINE_KEY``."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE_KEY] = node.start_mark.line + 1
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


def strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k != LINE_KEY}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value
