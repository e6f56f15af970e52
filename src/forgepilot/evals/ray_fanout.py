"""``eval run --ray auto|ADDRESS``: a run's cases on a Ray cluster instead of this process.

Each worker is a Ray actor holding what a local run holds (the model behind the generation cache, the sandbox, the
repository index), opened once; cases are dealt to the actors in order and every result comes back to the driver,
which writes it to the run's store as it arrives, exactly as a local run does. So progress, Ctrl-C and resume work
as they do locally, and the results are the same. The generation cache is the run's own store, opened by every
actor: a SQLite file when the cluster is this machine, the shared PostgreSQL when it spans several.

A worker killed mid-case is restarted by Ray and its unfinished cases are sent again (``max_restarts`` and
``max_task_retries``): a case that finished was already recorded, and one that did not is simply run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from forgepilot.config import Settings
from forgepilot.errors import MissingExtra, UserError
from forgepilot.evals.runner import CaseResult, RunConfig
from forgepilot.evals.suites import Case, Suite

#: How often Ray restarts a dead worker, and resends a case whose worker died under it.
RESTARTS = 3


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray", "ray") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address`` (Ray itself waits and retries)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"bad Ray address {address!r}", hint="use 'auto' or HOST:PORT (the head's GCS port, 6379)")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise UserError(
            f"no Ray cluster at {address}: {exc.strerror or exc}",
            hint="start one with `ray start --head`, or pass its address (HOST:6379)",
        ) from None


class CaseWorker:
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

    def pid(self) -> int:
        import os

        return os.getpid()


class RayFanout:
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
        self.ray = _ray()
        self.address = address
        self.settings = settings
        self.store_where = store_where
        self.index_dir = index_dir
        self.workers = workers
        self.actors: list[Any] = []

    def _connect(self) -> None:
        if self.ray.is_initialized():
            return
        if self.address != "auto":
            _check_reachable(self.address)
        try:
            self.ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"cannot join the Ray cluster at {self.address!r}: {first}",
                hint="start one with `ray start --head`, or pass its address (HOST:6379)",
            ) from None

    def _start(self, suite: Suite, config: RunConfig, identity: str) -> list[Any]:
        self._connect()
        count = self.workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        remote = self.ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS, max_concurrency=1)(
            CaseWorker
        )
        self.actors = [
            remote.remote(self.settings, self.store_where, self.index_dir, suite, config, identity)
            for _ in range(count)
        ]
        return self.actors

    async def run(
        self, todo: Sequence[tuple[int, Case]], suite: Suite, config: RunConfig, identity: str
    ) -> AsyncIterator[tuple[int, str, CaseResult]]:
        if not todo:
            return
        actors = self._start(suite, config, identity)
        futures: dict[asyncio.Future[Any], tuple[int, str]] = {}
        refs = []
        for n, (position, case) in enumerate(todo):
            ref = actors[n % len(actors)].case.remote(case)
            refs.append(ref)
            futures[asyncio.wrap_future(ref.future())] = (position, case.id)
        try:
            pending = set(futures)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    position, case_id = futures[future]
                    yield position, case_id, future.result()
        finally:
            for ref in refs:  # interrupted: nothing more is computed for this run
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref)
            self.close()

    def worker_pids(self) -> list[int]:
        """The process id of each worker (tests kill one to show a run survives it)."""
        return [int(p) for p in self.ray.get([a.pid.remote() for a in self.actors])]

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors = []
