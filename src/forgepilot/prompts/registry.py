"""The one registry of prompt templates: load by name, version by content hash, render to text or chat messages.

A template file may define ``{% block system %}`` and ``{% block user %}``; rendered as chat it becomes a system
and a user message. A template without blocks renders to one user message (or plain text for completion). A
leading ``{# key: value #}`` comment block declares metadata (``tier``, ``description``, ``max_tokens``).

Only the templates shipped inside the package are trusted. Every other one (a repository's actions, a prompt
suite's variants) is someone else's code: it renders in Jinja2's immutable sandbox (no private attributes, no
``__globals__``, no mutation of what it is given), with repetition and power operators bounded and a wall-clock
budget, so the worst a hostile template gets is ``UnsafeTemplate`` naming it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import jinja2
import jinja2.exceptions
import jinja2.meta
import jinja2.sandbox

from forgepilot.errors import ConfigError, UserError

BUILTIN_DIR = Path(__file__).parent / "templates"
SUFFIXES = (".j2", ".jinja", ".md")
_META = re.compile(r"^\s*\{#(.*?)#\}", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


#: What an untrusted template may build with ``*`` / ``**`` / ``+`` and how long it may render.
MAX_UNTRUSTED_SEQUENCE = 200_000
MAX_UNTRUSTED_EXPONENT = 64
UNTRUSTED_RENDER_S = 2.0
T = TypeVar("T")


class UnknownTemplate(UserError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no prompt template named {name!r}", hint=f"known templates: {', '.join(known) or 'none'}")
        self.name = name


class UnsafeTemplate(UserError):
    """An untrusted template tried what the sandbox forbids (or ran past its budget); nothing of it ran."""

    def __init__(self, name: str, path: Path, problem: str) -> None:
        super().__init__(
            f"prompt template {name!r} ({path.name}) was stopped: {problem}",
            hint="templates outside the package render sandboxed: use only the variables and filters they are given",
        )
        self.name = name
        self.path = path


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
    #: Shipped with the package; every other template renders sandboxed.
    trusted: bool = True

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tier(self) -> str | None:
        return self.meta.get("tier")

    @property
    def description(self) -> str:
        return self.meta.get("description", "")


class _BoundedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the operators that allocate without bound (``'x' * 10**12``) checked."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_UNTRUSTED_EXPONENT:
            raise jinja2.exceptions.SecurityError(f"an exponent of {right} (at most {MAX_UNTRUSTED_EXPONENT})")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > MAX_UNTRUSTED_SEQUENCE:
                        raise jinja2.exceptions.SecurityError(f"a repetition of {len(seq) * times} items")
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            if len(left) + len(right) > MAX_UNTRUSTED_SEQUENCE * 10:
                raise jinja2.exceptions.SecurityError("a concatenation past the size limit")
        return super().call_binop(context, operator, left, right)


def _environment(*, trusted: bool) -> jinja2.Environment:
    # Prompts are text, not HTML: no autoescaping. Undefined variables are errors, never silent blanks.
    options: dict[str, Any] = {
        "autoescape": False,
        "undefined": jinja2.StrictUndefined,
        "keep_trailing_newline": True,
        "trim_blocks": True,
        "lstrip_blocks": True,
    }
    env = jinja2.Environment(**options) if trusted else _BoundedSandbox(**options)
    env.filters["numbered"] = _numbered
    env.filters["commented"] = _commented
    return env


def is_builtin(path: Path) -> bool:
    """True for a template file shipped inside the package (the only trusted ones)."""
    try:
        return path.resolve().is_relative_to(BUILTIN_DIR.resolve())
    except OSError:
        return False


class _RenderBudget(Exception):
    pass


def _with_budget(seconds: float, work: Callable[[], T]) -> T:
    """Run ``work`` (an untrusted template's render) and stop it once it runs past ``seconds``.

    Jinja2 compiles a template to Python, so a trace function sees each line it runs and can raise in it: a loop
    of loops that would hold the thread for hours stops here instead. Only untrusted renders pay for the trace.
    """
    deadline = time.monotonic() + seconds
    previous = sys.gettrace()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _RenderBudget
        return trace

    sys.settrace(trace)
    try:
        return work()
    finally:
        sys.settrace(previous)


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
        self._trusted_env = _environment(trusted=True)
        self._sandbox_env = _environment(trusted=False)
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
        env = self._trusted_env if is_builtin(path) else self._sandbox_env
        try:
            ast = env.parse(source)
            compiled = env.from_string(source)
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
            trusted=env is self._trusted_env,
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

        def run() -> tuple[str | None, str]:
            if "user" in compiled.blocks:
                context = compiled.new_context(dict(variables))
                system = "".join(compiled.blocks["system"](context)).strip() if "system" in compiled.blocks else None
                return system, "".join(compiled.blocks["user"](context)).strip()
            return None, compiled.render(**variables)

        try:
            system, user = run() if template.trusted else _with_budget(UNTRUSTED_RENDER_S, run)
        except jinja2.UndefinedError as exc:
            raise UserError(
                f"prompt template {name!r} needs a value that was not given: {exc.message}",
                hint=f"it uses: {', '.join(sorted(template.variables))}",
            ) from exc
        except jinja2.exceptions.SecurityError as exc:
            raise UnsafeTemplate(name, template.path, str(exc)) from None
        except _RenderBudget:
            raise UnsafeTemplate(name, template.path, f"it ran past {UNTRUSTED_RENDER_S:g} s") from None
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            if template.trusted:
                raise
            raise UnsafeTemplate(name, template.path, f"{type(exc).__name__}: {exc}") from None
        return RenderedPrompt(template.name, template.version, system or None, user)


@functools.cache
def builtin_registry() -> PromptRegistry:
    return PromptRegistry()
