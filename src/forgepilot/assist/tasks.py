"""Chat tasks: explain, generate tests, review, commit message, refactor, document, ask-the-codebase, and the
repository's own actions (template files in ``.forgepilot/actions/``).

Each task renders a versioned template from ``prompts/`` and runs on its tier's model; the result carries the
template id and version, usage, timings and, for ask-the-codebase, the ``path:line`` citations checked against the
sources it was given.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from forgepilot.assist.citations import attach_sources, check_citations
from forgepilot.assist.fitting import Fitted, fit_prompt
from forgepilot.assist.guarding import guard_for
from forgepilot.assist.models import ModelPool
from forgepilot.backends.base import CancelToken, ChatMessage, ChatRequest, Priority, Usage, check_max_tokens
from forgepilot.config import GuardSettings
from forgepilot.context import ContextBuilder, Document, Snippet
from forgepilot.context.frameworks import detect_framework, import_path_for
from forgepilot.context.locate import Located
from forgepilot.errors import Cancelled, ForgePilotError, UserError
from forgepilot.index.search import Filters
from forgepilot.prompts import PromptRegistry, RenderedPrompt, Template, builtin_registry
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
ACTIONS_DIR = ".forgepilot/actions"
# The file an unsaved buffer would be, for naming its test and its import.
_EXTENSIONS = {"python": "py", "javascript": "js", "typescript": "ts", "tsx": "tsx", "go": "go", "java": "java"}
T = TypeVar("T")


class UnknownRepository(UserError):
    """A request names a repository that is not indexed."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no indexed repository named {name!r}",
            hint=f"indexed: {', '.join(known) or 'none'} (index it with `forgepilot index PATH`)",
        )
        self.name = name


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
    priority: Priority = "chat"
    #: Wall-clock seconds the task may take, queue included (None: no limit).
    deadline_s: float | None = None


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
    #: What was left out of the prompt to fit the model's window (empty when everything fit).
    trimmed: list[str] = field(default_factory=list)


def _source(s: Snippet) -> dict[str, Any]:
    return {"source": s.source, "path": s.path, "start_line": s.start_line, "end_line": s.end_line, "score": s.score}


def shown_path(inp_path: str, located: Located | None) -> str:
    """The path a prompt shows: repository-relative when the file is indexed, else the file's name alone (an
    absolute path means nothing to the model, is copied into imports, and tells it the user's home folder)."""
    if located is not None:
        return located.path
    if not inp_path:
        return "(unsaved)"
    return posixpath.basename(inp_path) if posixpath.isabs(inp_path) else inp_path


class ChatTasks:
    def __init__(
        self,
        models: ModelPool,
        builder: ContextBuilder | None,
        prompts: PromptRegistry | None = None,
        guards: GuardSettings | None = None,
    ) -> None:
        self.models = models
        self.builder = builder
        self.guards = guards or GuardSettings()
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
        """Templates in ``.forgepilot/actions/`` of the indexed repositories (or of the one named, by name or root).

        Only indexed repositories count: a client names one, never a directory of its choosing.
        """
        roots: list[str] = []
        if self.builder is not None and self.builder.workspace is not None:
            repos = self.builder.workspace.store.repositories()
            roots = [r.root for r in repos if repository is None or repository in (r.name, r.root)]
            if repository is not None and not roots:
                raise UnknownRepository(repository, [r.name for r in repos])
        elif repository is not None:
            raise UnknownRepository(repository, [])
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
            "path": shown_path(inp.path, located),
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
        rel = v["path"] if inp.path else f"module.{_EXTENSIONS.get(v['language'], 'txt')}"
        framework = detect_framework(v["language"], rel, root)
        v["framework"] = framework.name
        v["test_path"] = framework.test_path
        # How the new test names the code under test, from where it will live (never an absolute path).
        v["module"] = import_path_for(rel, framework.test_path, v["language"])
        v["example"] = ""
        if located is not None and self.builder is not None and self.builder.workspace is not None:
            example = self.builder.workspace.store.example_test(located.repository.id, v["language"])
            if example is not None and root is not None:
                lines = self.builder.files.get(root / example)
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

    def _prepare(self, task: str, inp: TaskInput) -> tuple[dict[str, Any], dict[str, str] | None, list[Snippet]]:
        """The template variables of ``task`` (index lookups, retrieval: run on the builder's thread)."""
        located = self._locate(inp)
        variables = self._variables(task, inp, located)
        framework = None
        sources: list[Snippet] = []
        if task == "tests":
            framework = self._tests_variables(variables, inp, located)
        elif task == "ask":
            sources = self._ask_sources(inp)
            variables["sources"] = sources
        return variables, framework, sources

    async def _offload(self, fn: Callable[..., T], /, *args: Any) -> T:
        if self.builder is not None:
            return await self.builder.offload(fn, *args)
        return await asyncio.to_thread(fn, *args)

    async def run(self, task: str, inp: TaskInput, cancel: CancelToken | None = None) -> TaskResult:
        if task not in TASKS:
            raise UserError(f"unknown task {task!r}", hint=f"one of: {', '.join(TASKS)}, or actions/NAME")
        needed = _REQUIRED[task]
        if not str(getattr(inp, needed)).strip():
            raise MissingField(task, needed)
        variables, framework, sources = await self._offload(self._prepare, task, inp)
        model = self.models.route(inp.model or self.models.task_model(task))
        template = self.prompts.get(task)
        fitted = await self._offload(self._fit, task, self.prompts, variables, model, inp, template)
        result = await self.chat(task, fitted.prompt, model, replace(inp, max_tokens=fitted.max_tokens), cancel)
        result.framework = framework
        result.trimmed = fitted.trimmed
        if task == "ask":
            # The sources the model saw (some may have been dropped to fit), numbered as the prompt numbered them.
            shown: list[Snippet] = fitted.variables.get("sources", sources)
            result.sources = [_source(s) for s in shown]
            citations = check_citations(result.text, shown)
            if not any(c.valid for c in citations):
                result.text, attached = attach_sources(result.text, shown)
                citations += attached
            result.citations = [c.record() for c in citations]
        return result

    def _fit(
        self,
        name: str,
        registry: PromptRegistry,
        variables: dict[str, Any],
        model: str,
        inp: TaskInput,
        template: Template,
    ) -> Fitted:
        """The rendered prompt and answer budget that fit ``model``'s window (counted by its own tokenizer)."""
        backend = self.models.get(model)
        default_max = int(template.meta.get("max_tokens", 768))
        max_tokens = check_max_tokens(backend, inp.max_tokens or default_max)
        return fit_prompt(
            lambda v: registry.render(name, v),
            variables,
            count=backend.token_counter(),
            window=backend.max_context,
            max_tokens=max_tokens,
        )

    async def action(self, name: str, inp: TaskInput, cancel: CancelToken | None = None) -> TaskResult:
        registry = await self._offload(self.action_registry, inp.repository)
        template = registry.get(f"actions/{name}")
        located = await self._offload(self._locate, inp)
        variables = {**self._variables("action", inp, located), **dict(inp.variables)}
        tier = template.tier if template.tier in ("large", "fast") else "large"
        model = self.models.route(inp.model or self.models.tier_model(tier))  # type: ignore[arg-type]
        fitted = await self._offload(self._fit, template.name, registry, variables, model, inp, template)
        result = await self.chat(
            template.name, fitted.prompt, model, replace(inp, max_tokens=fitted.max_tokens), cancel
        )
        result.trimmed = fitted.trimmed
        return result

    async def chat(
        self, task: str, prompt: RenderedPrompt, model: str, inp: TaskInput, cancel: CancelToken | None = None
    ) -> TaskResult:
        """Run a rendered prompt on ``model`` as a chat (tasks, actions and prompt evaluations all end here)."""
        backend = self.models.get(model)
        # The template's own instructions are ours; everything it carries from the client and the repository is
        # data: secrets masked, planted instructions neutralised (the system text is the template's alone).
        guard = guard_for(backend, self.guards)
        messages = []
        if prompt.system:
            messages.append(ChatMessage("system", prompt.system))
        messages.append(ChatMessage("user", guard.prompt_text(prompt.user)))
        template = self.prompts.get(task) if task in TASKS else None
        default_max = int(template.meta.get("max_tokens", 768)) if template else 768
        t = time.perf_counter()
        request = ChatRequest(
            tuple(messages),
            max_tokens=check_max_tokens(backend, inp.max_tokens or default_max),
            temperature=inp.temperature,
            seed=inp.seed,
            priority=inp.priority,
            deadline_s=inp.deadline_s,
            cancel=cancel,
        )
        with self.models.watched(model):
            completion = await backend.chat(request)
        if completion.finish_reason == "cancelled":
            raise Cancelled(f"task {task} cancelled")
        client_text = "\n".join((inp.code, inp.diff, inp.question, inp.instruction, *map(str, inp.variables.values())))
        text = guard.answer(completion.text, client_text, withheld_as="[secret withheld]")
        block = _CODE_BLOCK.search(text)
        return TaskResult(
            task=task,
            text=text,
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
