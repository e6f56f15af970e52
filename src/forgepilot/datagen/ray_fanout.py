"""``dataset build --ray`` and ``dataset distill --ray``: the per-file stage (redact, parse, build instances, gates)
and the per-seed stage (teacher, sandbox) on Ray workers.

Each worker is a Ray actor with a builder of its own (the same model's tokenizer and prompt format, the same index),
opened once. The driver indexes, scans and journals as a local build does; files go to the workers in the scan's
order and each result is journaled as it comes back, so an interrupted build resumes with the files it lacks. The
whole-set stages (secret scrub, dedup, decontamination, splits, formats) stay on the driver, with every secret a
worker found, so the dataset is the one a local build makes. A worker killed mid-file is restarted and the file
sent again. Distillation is the same with seeds: each worker asks the teacher and runs the tests in its own sandbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

from forgepilot import cluster
from forgepilot.config import Settings
from forgepilot.datagen.distill import Seed, SeedOutcome
from forgepilot.datagen.hygiene import StageTimer
from forgepilot.datagen.pipeline import FileResult
from forgepilot.datagen.secrets import Redactor
from forgepilot.index.scan import Candidate, scan
from forgepilot.syntax.imports import RepoFiles


class FileWorker(cluster.WorkerProcess):
    """One Ray actor: a dataset builder of its own; builds the files it is sent."""

    def __init__(self, settings: Settings, model: str | None) -> None:
        from forgepilot.datagen.pipeline import open_builder

        self.builder = open_builder(settings, model)
        self.redactor = Redactor()
        self._repos: dict[tuple[str, int | None], RepoFiles] = {}

    def _paths(self, root: Path, max_files: int | None) -> RepoFiles:
        """The repository's file set, as the driver's scan has it (scanned again here: same files, same rules)."""
        key = (str(root), max_files)
        if key not in self._repos:
            found = [e for e in scan(root, self.builder.scan_settings()) if isinstance(e, Candidate)]
            self._repos[key] = RepoFiles(c.path for c in found[:max_files])
        return self._repos[key]

    def file(
        self, root: str, repo_name: str, cand: Candidate, max_files: int | None, kinds: Sequence[str]
    ) -> FileResult:
        known = set(self.redactor.values)
        timer = StageTimer()
        paths = self._paths(Path(root), max_files)
        load = self.builder.loader(Path(root), repo_name, self.redactor)
        result = self.builder.file_result(Path(root), repo_name, cand, paths, load, self.redactor, set(kinds), timer)
        result.secrets = {k: v for k, v in self.redactor.values.items() if k not in known}
        result.seconds = timer.seconds
        return result


class RayFileFanout(cluster.RayWorkers):
    """Files to ``workers`` Ray actors on the cluster at ``address``."""

    def __init__(self, address: str, settings: Settings, model: str | None, *, workers: int | None = None) -> None:
        super().__init__(address, workers)
        self.settings = settings
        self.model = model

    def files(
        self, root: Path, repo_name: str, todo: Sequence[tuple[int, Candidate]], max_files: int | None,
        kinds: Sequence[str],
    ) -> Iterator[tuple[int, Candidate, FileResult]]:  # fmt: skip
        if not todo:
            return
        self.start(FileWorker, self.settings, self.model)
        refs = self.deal(
            "file", [((i, cand), (str(root), repo_name, cand, max_files, list(kinds))) for i, cand in todo]
        )
        for (i, cand), result in self.finished_sync(refs):
            yield i, cand, result


class DistillWorker(cluster.WorkerProcess):
    """One Ray actor for ``dataset distill``: the teacher and a sandbox of its own; distils the seeds it is sent."""

    def __init__(self, settings: Settings, teacher: str, max_tokens: int) -> None:
        from forgepilot.backends.resolve import open_backend
        from forgepilot.datagen.distill import Distiller
        from forgepilot.prompts import builtin_registry
        from forgepilot.sandbox import Sandbox

        backend = open_backend(teacher, settings)
        sandbox = Sandbox(workers=1, limits_only=settings.sandbox.limits_only)
        self.distiller = Distiller(backend, builtin_registry(), sandbox, max_tokens=max_tokens)

    async def seed(self, seed: Seed) -> SeedOutcome:
        return await self.distiller.one(seed)


class RaySeedFanout(cluster.RayWorkers):
    """Seeds to ``workers`` Ray actors on the cluster at ``address``, each with the teacher ``teacher``."""

    def __init__(
        self, address: str, settings: Settings, teacher: str, *, max_tokens: int = 1024, workers: int | None = None
    ) -> None:
        super().__init__(address, workers)
        self.settings = settings
        self.teacher = teacher
        self.max_tokens = max_tokens

    async def seeds(self, seeds: Sequence[Seed]) -> AsyncIterator[tuple[int, SeedOutcome]]:
        if not seeds:
            return
        self.start(DistillWorker, self.settings, self.teacher, self.max_tokens)
        try:
            async for i, outcome in self.finished(self.deal("seed", [(i, (seed,)) for i, seed in enumerate(seeds)])):
                yield i, outcome
        finally:
            self.close()
