"""``eval run --ray auto|ADDRESS``: a run's cases on a Ray cluster instead of this process.

Each worker is a Ray actor holding what a local run holds (the model behind the generation cache, the sandbox, the
repository index), opened once; cases are dealt to the actors in order and every result comes back to the driver,
which writes it to the run's store as it arrives, exactly as a local run does. So progress, Ctrl-C and resume work
as they do locally, and the results are the same. The generation cache is the run's own store, opened by every
actor: a SQLite file when the cluster is this machine, the shared PostgreSQL when it spans several.

A worker killed mid-case is restarted by Ray and its unfinished cases are sent again (``cluster.worker_actor``): a
case that finished was already recorded, and one that did not is simply run again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from forgepilot import cluster
from forgepilot.config import Settings
from forgepilot.evals.runner import CaseResult, RunConfig
from forgepilot.evals.suites import Case, Suite


class CaseWorker(cluster.WorkerProcess):
    """One Ray actor: a runner of its own over the run's store, index and sandbox; judges the cases it is sent."""

    def __init__(
        self, settings: Settings, store_where: Path | str, index_dir: Path | None, suite: Suite, config: RunConfig,
        identity: str,
    ) -> None:  # fmt: skip
        from forgepilot.evals.runner import EvalRunner
        from forgepilot.evals.store import EvalStore
        from forgepilot.index.indexer import Workspace

        workspace = Workspace(index_dir) if index_dir is not None else None
        self.runner = EvalRunner(settings, EvalStore(store_where), workspace=workspace)
        self.suite, self.config, self.identity = suite, config, identity
        self.judge: Any = None

    async def case(self, case: Case) -> CaseResult:
        if self.judge is None:
            self.judge = self.runner.judge(self.suite, self.config, self.identity)
        result: CaseResult = await self.judge.case(case)
        return result


class RayFanout(cluster.RayWorkers):
    """Cases to ``workers`` Ray actors on the cluster at ``address`` (``auto``: the one ``ray start`` runs here)."""

    def __init__(
        self,
        address: str,
        settings: Settings,
        store_where: Path | str,
        *,
        index_dir: Path | None = None,
        workers: int | None = None,
    ) -> None:
        super().__init__(address, workers)
        self.settings = settings
        self.store_where = store_where
        self.index_dir = index_dir

    async def run(
        self, todo: Sequence[tuple[int, Case]], suite: Suite, config: RunConfig, identity: str
    ) -> AsyncIterator[tuple[int, str, CaseResult]]:
        if not todo:
            return
        self.start(CaseWorker, self.settings, self.store_where, self.index_dir, suite, config, identity)
        refs = self.deal("case", [((position, case.id), (case,)) for position, case in todo])
        try:
            async for (position, case_id), result in self.finished(refs):
                yield position, case_id, result
        finally:
            self.close()
