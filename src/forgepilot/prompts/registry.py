"""The one registry of prompt templates: load by name, version by content hash, render to text or chat messages.

A template file may define ``{% block system %}`` and ``{% block user %}``; rendered as chat it becomes a system
and a user message. A template without blocks renders to one user message (or plain text for completion). A
leading ``{# key: value #}`` comment block declares metadata (``tier``, ``description``, ``max_tokens``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from forgepilot.errors import ConfigError, UserError

BUILTIN_DIR = Path(__file__).parent / "templates"
SUFFIXES = (".j2", ".jinja", ".md")
_META = re.compile(r"^\s*\{#(.*?)#\}", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class UnknownTemplate(UserError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no prompt template named {name!r}", hint=f"known templates: {', '.join(known) or 'none'}")
        self.name = name


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt and the identity of the template that produced it."""

    template_id: str
    version: str
    system: str | None
    user: str

    @property
    def text(self) -> str:
        return f"{self.system}\n\n{self.user}" if self.system else self.user

    def record(self) -> dict[str, str]:
        """What responses, telemetry events, dataset instances and eval records carry about their prompt."""
        return {"template_id": self.template_id, "template_version": self.version}


@dataclass(frozen=True)
class Template:
    name: str
    source: str
    path: Path
    #: The first 16 hex digits of the sha256 of the file's bytes: any edit is a new version.
    version: str
    meta: dict[str, str] = field(default_factory=dict)
    variables: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tier(self) -> str | None:
        return self.meta.get("tier")

    @property
    def description(self) -> str:
        return self.meta.get("description", "")


def _environment() -> jinja2.Environment:
    # Prompts are text, not HTML: no autoescaping. Undefined variables are errors, never silent blanks.
    env = jinja2.Environment(
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["numbered"] = _numbered
    env.filters["commented"] = _commented
    return env


def _commented(text: str, marker: str) -> str:
    """Each line behind a line-comment marker (``# x``), the way snippets are shown to left-to-right models."""
    return "\n".join(f"{marker} {line}".rstrip() for line in text.splitlines())


def _numbered(text: str, start: int = 1) -> str:
    """Prefix each line with its 1-based line number, so the model can cite ``path:line``."""
    return "\n".join(f"{start + i:>5} | {line}" for i, line in enumerate(text.splitlines()))


def _parse_meta(source: str) -> dict[str, str]:
    match = _META.match(source)
    if not match:
        return {}
    meta = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().isidentifier():
            meta[key.strip()] = value.strip()
    return meta


class PromptRegistry:
    """Templates by name from an ordered list of directories; a later directory overrides an earlier one.

    ``namespace`` prefixes every name (``actions/explain-sql``) so user-defined templates never shadow built-ins.
    """

    def __init__(self, directories: Iterable[Path] = (BUILTIN_DIR,), *, namespace: str = "") -> None:
        self.directories = list(directories)
        self.namespace = namespace
        self._env = _environment()
        self._templates: dict[str, Template] = {}
        self._compiled: dict[str, jinja2.Template] = {}
        for directory in self.directories:
            self._load_dir(directory)

    def _load_dir(self, directory: Path) -> None:
        if not directory.is_dir():
            return
        for path in sorted(directory.iterdir()):
            if path.suffix not in SUFFIXES or not path.is_file():
                continue
            name = path.name.removesuffix(path.suffix)
            if not _NAME.match(name):
                continue
            self.add(f"{self.namespace}/{name}" if self.namespace else name, path)

    def add(self, name: str, path: Path) -> Template:
        raw = path.read_bytes()
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"prompt template {path} is not UTF-8: {exc}", hint="save it as UTF-8") from exc
        try:
            ast = self._env.parse(source)
            compiled = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"prompt template {path}:{exc.lineno}: {exc.message}", hint="fix the Jinja2 syntax"
            ) from exc
        template = Template(
            name=name,
            source=source,
            path=path,
            version=hashlib.sha256(raw).hexdigest()[:16],
            meta=_parse_meta(source),
            variables=frozenset(jinja2.meta.find_undeclared_variables(ast)),
        )
        self._templates[name] = template
        self._compiled[name] = compiled
        return template

    def names(self) -> list[str]:
        return sorted(self._templates)

    def get(self, name: str) -> Template:
        try:
            return self._templates[name]
        except KeyError:
            raise UnknownTemplate(name, self.names()) from None

    def render(self, name: str, variables: Mapping[str, Any]) -> RenderedPrompt:
        """Render a template; a template with a ``system`` block yields a system and a user part."""
        template = self.get(name)
        compiled = self._compiled[name]
        try:
            if "user" in compiled.blocks:
                context = compiled.new_context(dict(variables))
                system = "".join(compiled.blocks["system"](context)).strip() if "system" in compiled.blocks else None
                user = "".join(compiled.blocks["user"](context)).strip()
            else:
                system, user = None, compiled.render(**variables)
        except jinja2.UndefinedError as exc:
            raise UserError(
                f"prompt template {name!r} needs a value that was not given: {exc.message}",
                hint=f"it uses: {', '.join(sorted(template.variables))}",
            ) from exc
        return RenderedPrompt(template.name, template.version, system or None, user)


@functools.cache
def builtin_registry() -> PromptRegistry:
    return PromptRegistry()
