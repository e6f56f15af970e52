"""Chat tasks: explain, generate tests, review, commit message, refactor, document, ask-the-codebase, and the
repository's own actions (template files in ``.forgepilot/actions/``).

Each task renders a versioned template from ``prompts/`` and runs on its tier's model; the result carries the
template id and version, usage, timings and, for ask-the-codebase, the ``path:line`` citations checked against the
sources it was given.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgepilot.assist.models import ModelPool
from forgepilot.backends.base import CancelToken, ChatMessage, ChatRequest, Usage
from forgepilot.context import ContextBuilder, Document, Snippet
from forgepilot.context.frameworks import detect_framework
from forgepilot.context.locate import Located
from forgepilot.errors import Cancelled, ForgePilotError, UserError
from forgepilot.index.search import Filters
from forgepilot.prompts import PromptRegistry, RenderedPrompt, builtin_registry
from forgepilot.syntax.languages import LANGUAGES, detect_language

TASKS = ("explain", "tests", "review", "commit", "refactor", "document", "ask")
_REQUIRED = {
    "explain": "code",
    "tests": "code",
    "refactor": "code",
    "document": "code",
    "review": "diff",
    "commit": "diff",
    "ask": "question",
}
_CODE_BLOCK = re.compile(r"```[\w+#.-]*\n(.*?)```", re.DOTALL)
_CITATION = re.compile(r"([A-Za-z0-9_][\w./-]*\.[A-Za-z0-9]+):(\d+)(?:-(\d+))?")
ACTIONS_DIR = ".forgepilot/actions"


class MissingField(UserError):
    """A task request lacks a field the task needs; ``field`` names it."""

    def __init__(self, task: str, field_name: str) -> None:
        super().__init__(f"task {task!r} needs a non-empty {field_name!r}", hint=f"send {field_name} in the request")
        self.field = field_name


@dataclass(frozen=True)
class TaskInput:
    code: str = ""
    path: str = ""
    language: str | None = None
    diff: str = ""
    question: str = ""
    instruction: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)
    repository: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    temperature: float = 0.0
    seed: int | None = None


@dataclass
class TaskResult:
    task: str
    text: str
    model: str
    template: dict[str, str]
    usage: Usage
    timings: dict[str, float]
    finish_reason: str = "stop"
    #: The first fenced code block of the answer (tests, refactor, document), else None.
    code: str | None = None
    #: ask: every ``path:line`` the answer cites, and whether it points into a source it was given.
    citations: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    framework: dict[str, str] | None = None
    cost_usd: float | None = None


def _source(s: Snippet) -> dict[str, Any]:
    return {"source": s.source, "path": s.path, "start_line": s.start_line, "end_line": s.end_line, "score": s.score}


def check_citations(text: str, sources: list[Snippet]) -> list[dict[str, Any]]:
    """Each distinct ``path:line`` in ``text``, marked valid when a source covers that line of that path."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    for m in _CITATION.finditer(text):
        path, line = m.group(1), int(m.group(2))
        if (path, line) in seen:
            continue
        seen.add((path, line))
        valid = any(
            (s.path == path or s.path.endswith("/" + path)) and s.start_line <= line <= s.end_line for s in sources
        )
        out.append({"path": path, "line": line, "valid": valid})
    return out


class ChatTasks:
    def __init__(
        self, models: ModelPool, builder: ContextBuilder | None, prompts: PromptRegistry | None = None
    ) -> None:
        self.models = models
        self.builder = builder
        self.prompts = prompts or builtin_registry()
        self._actions: dict[tuple[str, ...], tuple[float, PromptRegistry]] = {}

    # -- locating the code in the index -------------------------------------------------------------------
    def _locate(self, inp: TaskInput) -> Located | None:
        if self.builder is None or not inp.path:
            return None
        return self.builder.locate(Document(path=inp.path, text=inp.code, offset=len(inp.code)))

    def _language(self, inp: TaskInput) -> str:
        if inp.language:
            if inp.language not in LANGUAGES:
                raise UserError(f"unknown language {inp.language!r}", hint=f"one of: {', '.join(sorted(LANGUAGES))}")
            return inp.language
        lang = detect_language(inp.path) if inp.path else None
        return lang.name if lang else "text"

    def _related(self, inp: TaskInput, located: Located | None) -> list[Snippet]:
        if self.builder is None or self.builder.related is None or located is None or not inp.code:
            return []
        lang = LANGUAGES.get(self._language(inp))
        doc = Document(path=inp.path, text=inp.code, offset=len(inp.code), language=lang)
        return self.builder.related.collect(doc, located, 4)

    # -- actions ------------------------------------------------------------------------------------------
    def action_registry(self, repository: str | None = None) -> PromptRegistry:
        """Templates in ``.forgepilot/actions/`` of the indexed repositories (or of the one named)."""
        roots: list[str] = []
        if self.builder is not None and self.builder.workspace is not None:
            roots = [
                r.root
                for r in self.builder.workspace.store.repositories()
                if repository is None or repository in (r.name, r.root)
            ]
        if repository and not roots and Path(repository).is_dir():
            roots = [repository]
        dirs = tuple(str(Path(root) / ACTIONS_DIR) for root in roots)
        stamp = max((Path(d).stat().st_mtime for d in dirs if Path(d).is_dir()), default=0.0)
        cached = self._actions.get(dirs)
        if cached is None or cached[0] != stamp:
            cached = (stamp, PromptRegistry([Path(d) for d in dirs], namespace="actions"))
            self._actions[dirs] = cached
        return cached[1]

    # -- running ------------------------------------------------------------------------------------------
    def _variables(self, task: str, inp: TaskInput, located: Located | None) -> dict[str, Any]:
        language = self._language(inp)
        v: dict[str, Any] = {
            "code": inp.code,
            "path": inp.path or "(unsaved)",
            "language": language,
            "diff": inp.diff,
            "question": inp.question,
            "instruction": inp.instruction,
            "context": [],
        }
        if task == "explain":
            v["context"] = self._related(inp, located)
        return v

    def _tests_variables(self, v: dict[str, Any], inp: TaskInput, located: Located | None) -> dict[str, str]:
        root = Path(located.repository.root) if located else None
        rel = located.path if located else inp.path
        framework = detect_framework(v["language"], rel, root)
        v["framework"] = framework.name
        stem = posixpath.splitext(rel)[0]
        v["module"] = ".".join(p for p in stem.removeprefix("src/").split("/") if p) or stem
        v["example"] = ""
        if located is not None and self.builder is not None and self.builder.workspace is not None:
            row = self.builder.workspace.store.conn.execute(
                "SELECT path FROM files WHERE repo_id = ? AND status = 'indexed' AND language = ? "
                "AND (path LIKE '%test%' OR path LIKE '%spec%') ORDER BY length(path) LIMIT 1",
                (located.repository.id, v["language"]),
            ).fetchone()
            if row is not None:
                lines = self.builder.files.get(root / row[0]) if root else None
                v["example"] = "\n".join((lines or [])[:40])
        return {"name": framework.name, "evidence": framework.evidence, "test_path": framework.test_path}

    def _ask_sources(self, inp: TaskInput) -> list[Snippet]:
        if self.builder is None or self.builder.searcher is None:
            raise UserError("ask-the-codebase needs an index", hint="run `forgepilot index PATH` first")
        filters = Filters(repos=(inp.repository,) if inp.repository else ())
        try:
            hits = self.builder.searcher.search(inp.question, limit=6, filters=filters, vectors=True)
        except ForgePilotError:  # no embeddings extra or model: lexical and symbol search still answer
            hits = self.builder.searcher.search(inp.question, limit=6, filters=filters, vectors=False)
        return [
            Snippet("retrieved", h.path, h.start_line, h.end_line, h.text, round(h.score, 5), label=h.repository)
            for h in hits
        ]

    async def run(self, task: str, inp: TaskInput, cancel: CancelToken | None = None) -> TaskResult:
        if task not in TASKS:
            raise UserError(f"unknown task {task!r}", hint=f"one of: {', '.join(TASKS)}, or actions/NAME")
        needed = _REQUIRED[task]
        if not str(getattr(inp, needed)).strip():
            raise MissingField(task, needed)
        located = self._locate(inp)
        variables = self._variables(task, inp, located)
        framework = None
        sources: list[Snippet] = []
        if task == "tests":
            framework = self._tests_variables(variables, inp, located)
        elif task == "ask":
            sources = self._ask_sources(inp)
            variables["sources"] = sources
        prompt = self.prompts.render(task, variables)
        model = inp.model or self.models.task_model(task)
        result = await self.chat(task, prompt, model, inp, cancel)
        result.framework = framework
        if task == "ask":
            result.sources = [_source(s) for s in sources]
            result.citations = check_citations(result.text, sources)
        return result

    async def action(self, name: str, inp: TaskInput, cancel: CancelToken | None = None) -> TaskResult:
        registry = self.action_registry(inp.repository)
        template = registry.get(f"actions/{name}")
        located = self._locate(inp)
        variables = {**self._variables("action", inp, located), **dict(inp.variables)}
        prompt = registry.render(template.name, variables)
        tier = template.tier if template.tier in ("large", "fast") else "large"
        model = inp.model or self.models.tier_model(tier)  # type: ignore[arg-type]
        return await self.chat(template.name, prompt, model, inp, cancel)

    async def chat(
        self, task: str, prompt: RenderedPrompt, model: str, inp: TaskInput, cancel: CancelToken | None = None
    ) -> TaskResult:
        """Run a rendered prompt on ``model`` as a chat (tasks, actions and prompt evaluations all end here)."""
        backend = self.models.get(model)
        messages = []
        if prompt.system:
            messages.append(ChatMessage("system", prompt.system))
        messages.append(ChatMessage("user", prompt.user))
        template = self.prompts.get(task) if task in TASKS else None
        default_max = int(template.meta.get("max_tokens", 768)) if template else 768
        t = time.perf_counter()
        completion = await backend.chat(
            ChatRequest(
                tuple(messages),
                max_tokens=inp.max_tokens or default_max,
                temperature=inp.temperature,
                seed=inp.seed,
                cancel=cancel,
            )
        )
        if completion.finish_reason == "cancelled":
            raise Cancelled(f"task {task} cancelled")
        block = _CODE_BLOCK.search(completion.text)
        return TaskResult(
            task=task,
            text=completion.text,
            model=backend.name,
            template=prompt.record(),
            usage=completion.usage,
            timings={
                "first_token": completion.timings.first_token_s or 0.0,
                "total": time.perf_counter() - t,
            },
            finish_reason=completion.finish_reason,
            code=block.group(1) if block else None,
            cost_usd=completion.cost.usd if completion.cost else None,
        )
