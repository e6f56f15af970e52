"""Evaluation runs: a model, prompt template versions, context settings and generation parameters over a suite.

Model calls go through the assistant (``assist/``): completion cases use the serving completion path (context,
family rendering, post-processing) and prompt cases the chat-task path, so a figure measures what users get. The
model itself sits behind the generation cache (``cache.CachingBackend``). Cases run concurrently up to
``concurrency``; functional samples execute in the sandbox on worker threads. Every finished case is written to
the store at once, so an interrupted run (Ctrl-C, a crash) resumes with only the cases it lacks, and a model error
on one case is recorded as that case's result while the run goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from forgepilot import __version__
from forgepilot.assist import Assistant, CompletionInput, TaskInput
from forgepilot.assist.postprocess import Mode
from forgepilot.backends.base import Backend
from forgepilot.backends.resolve import model_identity, probe_fingerprint
from forgepilot.config import Settings
from forgepilot.context import Document
from forgepilot.context.render import COMPLETE_TEMPLATE
from forgepilot.context.types import SNIPPET_SOURCES
from forgepilot.errors import ForgePilotError, UserError
from forgepilot.evals import metrics
from forgepilot.evals.answers import read_answer, same_answer
from forgepilot.evals.cache import CachingBackend, CallRecord, calls
from forgepilot.evals.execution import DEFAULT_LIMITS, check_program
from forgepilot.evals.store import EvalStore, RunRow
from forgepilot.evals.suites import Case, Suite
from forgepilot.evals.summary import summarize
from forgepilot.index.indexer import Workspace
from forgepilot.prompts import PromptRegistry
from forgepilot.sandbox import Limits, Sandbox

ProgressFn = Callable[[int, int], None]  # (cases done, cases total)
#: A case's status (ok | error), headline score and stored figures.
CaseResult = tuple[str, float | None, dict[str, Any]]
_SAFE_PATH = re.compile(r"[^A-Za-z0-9_./-]+")


@dataclass(frozen=True)
class GenerationParams:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    #: None: the serving default for the mode (completion) or the template's ``max_tokens`` (prompts).
    max_tokens: int | None = None
    #: Sample i of a case is drawn with seed ``seed + i``, so n samples are reproducible.
    seed: int = 0


@dataclass(frozen=True)
class RunConfig:
    model: str
    params: GenerationParams = field(default_factory=GenerationParams)
    #: Context sources switched on for completion cases; () means in-file only (prefix and suffix).
    sources: tuple[str, ...] = SNIPPET_SOURCES
    #: pass@k values reported for functional suites (each needs n >= k).
    ks: tuple[int, ...] = (1,)
    #: Prompt suites: which template variant (default: the first).
    variant: str | None = None
    label: str | None = None
    limits: Limits = DEFAULT_LIMITS
    #: Call the model for every sample (the generation cache is written, never read), so every latency of the
    #: run was measured now, on this machine: what release gates judge latency on.
    measure_latency: bool = False


class EvalRunner:
    """Runs suites against models through the assistant and records every case in the store."""

    def __init__(
        self,
        settings: Settings,
        store: EvalStore,
        *,
        workspace: Workspace | None = None,
        sandbox: Sandbox | None = None,
        preset: Mapping[str, Backend] | None = None,
        concurrency: int = 1,
        progress: ProgressFn | None = None,
        fanout: CaseFanout | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.workspace = workspace
        self._sandbox = sandbox
        self.preset = dict(preset or {})
        self.concurrency = max(1, concurrency)
        self.progress = progress or (lambda done, total: None)
        #: Where cases run when not here (``evals.ray_fanout``): results still land in this runner's store.
        self.fanout = fanout
        self._backends: dict[str, Backend] = {}

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(limits_only=self.settings.sandbox.limits_only)
        return self._sandbox

    def backend(self, name: str) -> Backend:
        """The model ``name`` as this runner calls it (a preset, or opened from settings once)."""
        if name not in self._backends:
            if name in self.preset:
                self._backends[name] = self.preset[name]
            else:
                from forgepilot.assist.models import ModelPool

                self._backends[name] = ModelPool(self.settings).get(name)
        return self._backends[name]

    async def aclose(self) -> None:
        for name, backend in self._backends.items():
            if name not in self.preset:
                await backend.aclose()
        self._backends.clear()

    # -- configuration and identity ------------------------------------------------------------------------
    def settings_for(self, config: RunConfig) -> Settings:
        """The settings a run serves with: its context sources switched on or off."""
        unknown = sorted(set(config.sources) - set(SNIPPET_SOURCES))
        if unknown:
            raise UserError(f"unknown context sources {unknown}", hint=f"choose from: {', '.join(SNIPPET_SOURCES)}")
        ctx = self.settings.context.model_copy(update={s: s in config.sources for s in SNIPPET_SOURCES})
        return self.settings.model_copy(update={"context": ctx})

    async def model_identity(self, name: str) -> dict[str, str]:
        """What pins ``name``'s behaviour: weights by sha256, or for a model server the fingerprint of its answers
        to fixed probes (the same URL and name may serve other weights tomorrow)."""
        if name in self.preset:
            return {"name": name, "source": "preset"}
        identity = model_identity(name, self.settings)
        if "sha256" not in identity:
            identity["fingerprint"] = await probe_fingerprint(self.backend(name))
        return identity

    async def describe(self, suite: Suite, config: RunConfig) -> dict[str, Any]:
        """Everything that determines a run's results (recorded with the run; its hash is the run's identity)."""
        settings = self.settings_for(config)
        identity = await self.model_identity(config.model)
        templates: dict[str, str] = {}
        if suite.kind == "prompt":
            variant, path = self._variant(suite, config)
            templates[f"{suite.name}/{variant}"] = _file_version(path)
        else:
            from forgepilot.prompts import builtin_registry

            templates[COMPLETE_TEMPLATE] = builtin_registry().get(COMPLETE_TEMPLATE).version
        backend = self.backend(config.model)
        family = getattr(getattr(backend, "template", None), "family", "plain")
        return {
            "model": identity,
            "family": family,
            "templates": templates,
            "context": settings.context.model_dump(mode="json") if suite.kind == "completion" else None,
            "sources": list(config.sources) if suite.kind == "completion" else None,
            "params": asdict(config.params),
            "ks": list(config.ks),
            "variant": config.variant,
            "measure_latency": config.measure_latency,
            "limits": asdict(config.limits) if suite.kind == "functional" else None,
            # How the samples were executed: a limits-only run is not comparable with a jailed one, and says so.
            "sandbox": self.sandbox.mode if suite.kind == "functional" else None,
            "assist": self.settings.assist.model_dump(mode="json"),
            "suite": suite.record(),
            "forgepilot": __version__,
        }

    @staticmethod
    def _variant(suite: Suite, config: RunConfig) -> tuple[str, Path]:
        assert suite.prompt is not None
        variants = suite.prompt.variants
        name = config.variant or next(iter(variants))
        if name not in variants:
            raise UserError(f"suite {suite.name} has no prompt variant {name!r}", hint=f"one of: {', '.join(variants)}")
        return name, variants[name]

    # -- running -------------------------------------------------------------------------------------------
    async def run(self, suite: Suite, config: RunConfig, *, resume: str | None = None, fresh: bool = False) -> RunRow:
        """Run (or resume) ``suite``; returns the finished run. ``resume`` names a run; by default the latest
        unfinished run with the same identity is resumed, unless ``fresh``."""
        for k in config.ks:
            if k > config.params.n:
                raise UserError(f"pass@{k} needs at least {k} samples per case", hint=f"use --n {k} or more")
        if config.params.n > 1 and config.params.temperature == 0.0:
            raise UserError("n samples at temperature 0 are n copies of one answer", hint="set --temperature > 0")
        description = await self.describe(suite, config)
        identity = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]
        run: RunRow | None = None
        if resume is not None:
            run = self.store.run(resume)
            if run.identity != identity:
                raise UserError(
                    f"run {run.id} was made with another suite, model or configuration",
                    hint="resume it with the same options, or start a new run",
                )
        elif not fresh:
            run = self.store.unfinished(identity)
        run_id = (
            run.id
            if run is not None
            else self.store.create_run(
                identity=identity, suite=suite.record(), model=config.model, config=description, label=config.label
            )
        )
        self.store.set_status(run_id, "running")
        try:
            await self._run_cases(run_id, suite, config, json.dumps(description["model"], sort_keys=True))
        except BaseException:
            self.store.set_status(run_id, "interrupted")
            raise
        results = self.store.results(run_id)
        spec = suite.prompt.answer if suite.prompt else None
        summary = summarize(suite.kind, results, ks=config.ks, answer=spec)
        self.store.set_status(run_id, "complete", summary)
        return self.store.run(run_id)

    def judge(self, suite: Suite, config: RunConfig, identity: str) -> CaseJudge:
        """What produces and scores ``suite``'s cases under ``config``: the model behind the generation cache,
        through an assistant serving with the run's settings. ``close`` it after."""
        cached = CachingBackend(self.backend(config.model), self.store, identity, replay=not config.measure_latency)
        assistant = Assistant(self.settings_for(config), workspace=self.workspace, preset={config.model: cached})
        return CaseJudge(self, suite, config, assistant)

    async def _run_cases(self, run_id: str, suite: Suite, config: RunConfig, identity: str) -> None:
        done = self.store.done_cases(run_id)
        todo = [(i, c) for i, c in enumerate(suite.cases) if c.id not in done]
        if suite.kind == "completion":
            # Holes of one file, top to bottom: each prompt starts with what the one before it evaluated (the
            # file's context and the text above the earlier hole), which the model's cache reuses. Results keep
            # their positions, so reports read in suite order.
            todo.sort(key=lambda item: _locality(item[1]))
        total = len(suite.cases)
        finished = total - len(todo)
        self.progress(finished, total)
        if self.fanout is not None:
            async for position, case_id, (status, score, data) in self.fanout.run(todo, suite, config, identity):
                self.store.add_result(run_id, case_id, position, status, score, data)
                finished += 1
                self.progress(finished, total)
            return
        judge = self.judge(suite, config, identity)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(position: int, case: Case) -> None:
            nonlocal finished
            async with semaphore:
                status, score, data = await judge.case(case)
            self.store.add_result(run_id, case.id, position, status, score, data)
            finished += 1
            self.progress(finished, total)

        tasks = [asyncio.ensure_future(one(i, c)) for i, c in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # Stop the cases still in flight (a bug in one case, or Ctrl-C) before the run is marked interrupted.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            await judge.close()


def _locality(case: Case) -> tuple[str, str, int]:
    """Where a completion case's cursor is: repository, file, offset."""
    data = case.input
    return (str(data.get("repository") or ""), str(data.get("path") or ""), len(str(data.get("prefix") or "")))


class CaseFanout(Protocol):
    """Runs cases elsewhere (a Ray cluster) and yields ``(position, case id, result)`` as each one finishes."""

    def run(
        self, todo: Sequence[tuple[int, Case]], suite: Suite, config: RunConfig, identity: str
    ) -> AsyncIterator[tuple[int, str, CaseResult]]: ...


class CaseJudge:
    """Produces and scores one case's samples (the per-kind logic of a run)."""

    def __init__(self, runner: EvalRunner, suite: Suite, config: RunConfig, assistant: Assistant) -> None:
        self.runner = runner
        self.suite = suite
        self.config = config
        self.assistant = assistant
        self.registry: PromptRegistry | None = None
        self.template_name = ""
        if suite.kind == "prompt":
            variant, path = EvalRunner._variant(suite, config)
            self.registry = PromptRegistry([])
            self.template_name = f"{suite.name}/{variant}"
            self.registry.add(self.template_name, path)

    async def close(self) -> None:
        # Not assistant.aclose(): the workspace is the caller's, shared by the runs that follow.
        await self.assistant.models.aclose()
        self.assistant.builder.close()

    async def case(self, case: Case) -> CaseResult:
        try:
            if case.kind == "functional":
                return await self._functional(case)
            if case.kind == "completion":
                return await self._completion(case)
            return await self._prompt(case)
        except ForgePilotError as exc:  # a model error on one case is that case's result
            data = {"error": f"{type(exc).__name__}: {exc.one_line()}", "slices": case.slices, "samples": []}
            return "error", 0.0, data

    def _sample_params(self, i: int) -> dict[str, Any]:
        p = self.config.params
        return {"temperature": p.temperature, "top_p": p.top_p, "seed": p.seed + i, "max_tokens": p.max_tokens}

    async def _complete(self, doc: Document, mode: Mode | None, i: int) -> dict[str, Any]:
        noted: list[CallRecord] = []
        calls.set(noted)
        p = self._sample_params(i)
        result = await self.assistant.completions.complete(
            CompletionInput(
                document=doc,
                mode=mode,
                model=self.config.model,
                max_tokens=p["max_tokens"],
                temperature=p["temperature"],
                top_p=p["top_p"],
                seed=p["seed"],
                context=bool(self.config.sources),
                use_cache=False,
                priority="batch",  # evaluation waits behind editors on a shared model
            )
        )
        call = noted[-1] if noted else None
        model_now = result.timings.get("model", 0.0)
        latency = result.timings.get("total", 0.0) - model_now + (call.total_s if call else model_now)
        return {
            "text": result.text,
            "raw_text": result.raw_text,
            "reason": result.reason,
            "sources": [s.source for s in result.snippets],
            **_call_figures(call, latency),
        }

    async def _functional(self, case: Case) -> tuple[str, float | None, dict[str, Any]]:
        prompt = case.input["prompt"]
        path = _SAFE_PATH.sub("_", case.id).strip("/") + ".py"
        doc = Document.at(path, prompt, offset=len(prompt), language="python")
        samples = []
        for i in range(self.config.params.n):
            sample = await self._complete(doc, "in-block", i)
            program = check_program(case, sample["text"], self.config.limits, key=f"{case.id}#{i}")
            outcome = await asyncio.to_thread(self.runner.sandbox.run, program)
            sample.update(
                passed=outcome.passed,
                status=outcome.status,
                verdict_reason=outcome.reason,
                exec_s=round(outcome.wall_s, 4),
                stderr_tail=outcome.stderr_tail[-800:],
            )
            samples.append(sample)
        n, c = len(samples), sum(1 for s in samples if s["passed"])
        pass_at = {f"pass@{k}": metrics.pass_at_k(n, c, k) for k in self.config.ks if k <= n}
        data = {"samples": samples, "n": n, "c": c, "metrics": pass_at, "slices": case.slices}
        return "ok", c / n, data

    async def _completion(self, case: Case) -> tuple[str, float | None, dict[str, Any]]:
        inp = case.input
        doc = Document.at(
            inp["path"],
            inp["prefix"] + inp["suffix"],
            offset=len(inp["prefix"]),
            language=inp.get("language"),
            repository=inp.get("repository"),
        )
        target = str(case.expected)
        samples = []
        for i in range(self.config.params.n):
            sample = await self._complete(doc, inp.get("mode"), i)
            id_em, id_f1 = metrics.identifier_match(sample["text"], target)
            sample.update(
                em=metrics.exact_match(sample["text"], target),
                es=metrics.edit_similarity(sample["text"], target),
                id_em=id_em,
                id_f1=id_f1,
            )
            samples.append(sample)
        figures = {k: sum(float(s[k]) for s in samples) / len(samples) for k in ("em", "es", "id_em", "id_f1")}
        data = {"samples": samples, "metrics": figures, "slices": case.slices, "target": target}
        return "ok", figures["es"], data

    async def _prompt(self, case: Case) -> tuple[str, float | None, dict[str, Any]]:
        assert self.registry is not None and self.suite.prompt is not None
        spec = self.suite.prompt.answer
        shots = self.suite.prompt.shots
        variables = {**case.input, "input": case.input, "shots": shots}
        rendered = self.registry.render(self.template_name, variables)
        samples = []
        for i in range(self.config.params.n):
            noted: list[CallRecord] = []
            calls.set(noted)
            p = self._sample_params(i)
            result = await self.assistant.tasks.chat(
                self.template_name,
                rendered,
                self.config.model,
                TaskInput(max_tokens=p["max_tokens"], temperature=p["temperature"], seed=p["seed"], priority="batch"),
            )
            call = noted[-1] if noted else None
            answer = read_answer(result.text, spec)
            samples.append(
                {
                    "text": result.text,
                    "answer": answer.value,
                    "valid": answer.valid,
                    "problem": answer.problem,
                    **_call_figures(call, result.timings.get("total", 0.0)),
                }
            )
        values = [s["answer"] for s in samples]
        if spec.type == "score":
            scores = [float(v) for v in values if v is not None]
            prediction: Any = sum(scores) / len(scores) if scores else None
        elif spec.type == "label":
            prediction = metrics.majority([v if isinstance(v, str) else None for v in values])
        else:
            prediction = values[0] if len(values) == 1 else _json_majority(values)
        correct = same_answer(prediction, case.expected, spec)
        data = {
            "samples": samples,
            "prediction": prediction,
            "expected": case.expected,
            "correct": correct,
            "first_correct": same_answer(values[0], case.expected, spec),
            "valid": sum(1 for s in samples if s["valid"]) / len(samples),
            "split": case.split,
            "slices": {**case.slices, "split": case.split},
            "template": rendered.record(),
        }
        return "ok", 1.0 if correct else 0.0, data


def _json_majority(values: Sequence[Any]) -> Any:
    keyed = [json.dumps(v, sort_keys=True) for v in values if v is not None]
    if not keyed:
        return None
    best = max(set(keyed), key=lambda k: (keyed.count(k), -keyed.index(k)))
    return json.loads(best)


def _call_figures(call: CallRecord | None, latency_s: float) -> dict[str, Any]:
    return {
        "latency_s": round(latency_s, 5),
        "first_token_s": round(call.first_token_s, 5) if call and call.first_token_s is not None else None,
        "model_s": round(call.total_s, 5) if call else None,
        "prompt_tokens": call.usage.prompt_tokens if call else 0,
        "completion_tokens": call.usage.completion_tokens if call else 0,
        "cost_usd": call.cost_usd if call else None,
        "cached": call.cached if call else False,
    }


def _file_version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
