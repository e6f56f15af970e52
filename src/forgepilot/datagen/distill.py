"""Distillation, OSS-Instruct style: a teacher model turns seed snippets into problems with tested solutions.

Seeds are 1-15 line pieces of a repository's functions (the stable first lines of each function body). The teacher
(any configured backend) answers the ``distill`` template with a problem, a solution and tests; the solution and
its tests run in the sandbox (separate process, limits, no network), and only instances that pass are kept.
Python is executed; other languages are recorded as ``distill:not_executable`` and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from forgepilot.backends.base import Backend, ChatMessage, ChatRequest
from forgepilot.config import DatasetSettings
from forgepilot.datagen.builders import stable_rank
from forgepilot.datagen.hygiene import clean
from forgepilot.datagen.source import SourceFile
from forgepilot.datagen.types import Instance, Rejections
from forgepilot.errors import ForgePilotError
from forgepilot.index.scan import Candidate, scan
from forgepilot.prompts import PromptRegistry
from forgepilot.sandbox import Limits, Sandbox, python_program

# Teachers mark sections as asked ("[Problem]") or in their own habit ("### Problem", "**Tests:**").
_HEADER = r"^[ \t]*(?:\[|#+[ \t]*|\*\*)?(Problem|Solution|Tests?)(?:\]|\*\*|:|:\*\*)*[ \t]*$"
_SECTION = re.compile(
    _HEADER + r"\n(.*?)(?=" + _HEADER.replace("(Problem|Solution|Tests?)", "(?:Problem|Solution|Tests?)") + r"|\Z)",
    re.S | re.M,
)
# Tests written as test_* functions that the answer never calls are called after it.
_RUN_TESTS = """

for _name, _fn in list(globals().items()):
    if _name.startswith("test") and callable(_fn) and getattr(_fn, "__module__", None) == "__main__":
        _fn()
"""
_FENCE = re.compile(r"```[\w+#.-]*\n(.*?)```", re.S)
SEED_MIN_LINES, SEED_MAX_LINES = 1, 15
_log = logging.getLogger("forgepilot.distill")


@dataclass(frozen=True)
class Seed:
    repository: str
    path: str
    language: str
    start_line: int
    text: str


def seeds_from(root: Path, limit: int, *, languages: Sequence[str] = ("python",)) -> list[Seed]:
    """Up to ``limit`` seed snippets from a repository's functions, spread over files by a stable hash."""
    found: list[tuple[str, Seed]] = []
    for entry in scan(root):
        if not isinstance(entry, Candidate) or entry.language.name not in languages:
            continue
        try:
            text = (root / entry.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        sf = SourceFile.read(root.name, root, entry.path, text, entry.language)
        for sym in sf.functions:
            block = sf.block_text(sym).split("\n")[:SEED_MAX_LINES]
            if len(block) < SEED_MIN_LINES or not any(line.strip() for line in block[1:]):
                continue
            seed = Seed(root.name, entry.path, entry.language.name, sym.start_line, "\n".join(block))
            found.append((stable_rank(entry.path, sym.start_line), seed))
    return [seed for _, seed in sorted(found, key=lambda x: x[0])[:limit]]


def parse_answer(text: str) -> tuple[str, str, str] | None:
    """(problem, solution code, test code) from a teacher's answer, or None when a section is missing."""
    sections = {
        m.group(1).rstrip("s") + ("s" if m.group(1).startswith("Test") else ""): m.group(2).strip()
        for m in _SECTION.finditer(text)
    }
    if not {"Problem", "Solution", "Tests"} <= sections.keys():
        return None
    code = _FENCE.search(sections["Solution"])
    tests = _FENCE.search(sections["Tests"])
    if not code or not tests or not sections["Problem"]:
        return None
    return sections["Problem"], code.group(1).strip("\n"), tests.group(1).strip("\n")


@dataclass
class SeedOutcome:
    instance: Instance | None
    rejected: Rejections


class SeedFanout(Protocol):
    """Distils seeds elsewhere (a Ray cluster) and yields ``(seed index, outcome)`` as each one finishes."""

    def seeds(self, seeds: Sequence[Seed]) -> AsyncIterator[tuple[int, SeedOutcome]]: ...


class Distiller:
    def __init__(
        self,
        teacher: Backend,
        prompts: PromptRegistry,
        sandbox: Sandbox,
        *,
        limits: Limits | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> None:
        self.teacher = teacher
        self.prompts = prompts
        self.sandbox = sandbox
        self.limits = limits or Limits(wall_s=10, cpu_s=10, memory_mib=512)
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def _ask(self, seed: Seed) -> tuple[str, dict[str, str]]:
        rendered = self.prompts.render("distill", {"language": seed.language, "seed": seed.text})
        messages = [ChatMessage("user", rendered.user)]
        if rendered.system:
            messages.insert(0, ChatMessage("system", rendered.system))
        done = await self.teacher.chat(
            ChatRequest(tuple(messages), max_tokens=self.max_tokens, temperature=self.temperature, priority="batch")
        )
        return done.text, rendered.record()

    async def run(
        self,
        seeds: Sequence[Seed],
        rejected: Rejections,
        progress: Callable[[int, int], None] | None = None,
        fanout: SeedFanout | None = None,
    ) -> list[Instance]:
        """The instances whose solutions pass their tests, in seed order (one event loop for the whole run: an
        HTTP teacher's connection pool lives as long as the loop that opened it). ``fanout`` distils the seeds
        elsewhere (a Ray cluster); the instances and rejections are the same."""
        found: dict[int, Instance | None] = {}
        if progress:
            progress(0, len(seeds))
        outcomes = fanout.seeds(seeds) if fanout is not None else self._here(seeds)
        async for i, outcome in outcomes:
            found[i] = outcome.instance
            rejected.merge(outcome.rejected)
            if progress:
                progress(len(found), len(seeds))
        return [inst for _, inst in sorted(found.items()) if inst is not None]

    async def _here(self, seeds: Sequence[Seed]) -> AsyncIterator[tuple[int, SeedOutcome]]:
        for i, seed in enumerate(seeds):
            yield i, await self.one(seed)

    async def one(self, seed: Seed) -> SeedOutcome:
        """One seed: the teacher's answer, kept as an instance when its tests pass; else why not."""
        rejected = Rejections()
        try:
            answer, template = await self._ask(seed)
        except ForgePilotError as exc:  # a teacher failure on one seed is counted; the run goes on
            _log.warning("teacher failed on %s:%s: %s", seed.path, seed.start_line, exc.one_line())
            rejected.add(f"distill:teacher_error:{type(exc).__name__}", "distilled")
            return SeedOutcome(None, rejected)
        return SeedOutcome(await self._check(seed, answer, template, rejected), rejected)

    async def _check(self, seed: Seed, answer: str, template: dict[str, str], rejected: Rejections) -> Instance | None:
        parsed = parse_answer(answer)
        if parsed is None:
            rejected.add("distill:unparsable", "distilled")
            return None
        problem, solution, tests = parsed
        if seed.language != "python":
            rejected.add("distill:not_executable", "distilled")
            return None
        program = python_program(
            f"{solution}\n\n\n{tests}\n{_RUN_TESTS}", key=f"{seed.path}:{seed.start_line}", limits=self.limits
        )
        outcome = await asyncio.to_thread(self.sandbox.run, program)
        if not outcome.passed:
            rejected.add(f"distill:{outcome.status}", "distilled")
            return None
        return Instance(
            kind="distilled",
            language=seed.language,
            repository=seed.repository,
            path=seed.path,
            start_line=seed.start_line,
            end_line=seed.start_line + seed.text.count("\n"),
            system="",
            prompt=problem,
            completion=f"```{seed.language}\n{solution}\n```",
            template=template,
            unit=solution,
            meta={"tests": tests, "teacher": self.teacher.name, "sandbox_s": round(outcome.wall_s, 3)},
        ).finish()


def distil_dataset(
    distiller: Distiller,
    seeds: Sequence[Seed],
    ds: DatasetSettings,
    rejected: Rejections,
    *,
    suites: Sequence[Path] = (),
    progress: Callable[[int, int], None] | None = None,
    fanout: SeedFanout | None = None,
) -> list[Instance]:
    """Distil ``seeds`` and put what passed through the same hygiene as a built dataset (secrets, dedup,
    decontamination, splits): a teacher's text is no cleaner than a repository's."""

    async def main() -> list[Instance]:
        try:
            return await distiller.run(seeds, rejected, progress, fanout)
        finally:
            await distiller.teacher.aclose()

    return clean(asyncio.run(main()), ds, rejected, suites=suites)
