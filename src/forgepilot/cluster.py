"""Joining a Ray cluster for the fan-outs (``eval run --ray``, ``dataset build --ray``): the extra's import, a
reachability check that fails in seconds (Ray itself waits minutes for a head that is not there), and the actor
options every ForgePilot worker shares.

Workers read what the driver reads at the same paths (the state directory's index, the repositories): on one
machine that is a given; across machines, mount them on a shared filesystem, and put the stores on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, TypeVar

from forgepilot.errors import MissingExtra, UserError, first_line

K = TypeVar("K")
#: How often Ray restarts a dead worker, and resends the work it died holding.
RESTARTS = 3


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray", "ray") from None
    return ray


def check_reachable(address: str) -> None:
    """A clear error now when nothing listens at ``address`` (HOST:PORT)."""
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


def connect(address: str) -> Any:
    """The ``ray`` module, joined to the cluster at ``address`` (``auto``: the one ``ray start`` runs here)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    if address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(
            f"cannot join the Ray cluster at {address!r}: {first_line(exc)}",
            hint="start one with `ray start --head`, or pass its address (HOST:6379)",
        ) from None
    return ray


def worker_actor(ray: Any, cls: type) -> Any:
    """``cls`` as a Ray actor class: one CPU, one call at a time, restarted and its calls resent if it dies."""
    return ray.remote(num_cpus=1, max_restarts=RESTARTS, max_task_retries=RESTARTS, max_concurrency=1)(cls)


def worker_count(ray: Any, wanted: int | None) -> int:
    return wanted or max(1, int(ray.cluster_resources().get("CPU", 1)))


class WorkerProcess:
    """What every worker actor answers besides its work: its process id (tests kill one to show a run survives)."""

    def pid(self) -> int:
        import os

        return os.getpid()


class RayWorkers:
    """The actors of one worker class on the cluster at ``address``: started on first use, one per CPU of the
    cluster unless ``workers`` says, killed by ``close``."""

    def __init__(self, address: str, workers: int | None = None) -> None:
        self.ray = ray_module()
        self.address = address
        self.workers = workers
        self.actors: list[Any] = []

    def start(self, cls: type[WorkerProcess], *args: Any) -> list[Any]:
        if not self.actors:
            self.ray = connect(self.address)
            remote = worker_actor(self.ray, cls)
            self.actors = [remote.remote(*args) for _ in range(worker_count(self.ray, self.workers))]
        return self.actors

    def deal(self, method: str, jobs: Iterable[tuple[K, tuple[Any, ...]]]) -> dict[Any, K]:
        """Each job's arguments sent to ``method`` of the started actors in turn; the calls' refs, by job key."""
        return {
            getattr(self.actors[n % len(self.actors)], method).remote(*args): key for n, (key, args) in enumerate(jobs)
        }

    async def finished(self, refs: dict[Any, K]) -> AsyncIterator[tuple[K, Any]]:
        """Each call's key and result as it finishes; calls still running when the caller stops are cancelled."""
        futures = {asyncio.wrap_future(ref.future()): ref for ref in refs}
        pending = set(futures)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    yield refs[futures[future]], future.result()
        finally:
            self._cancel(futures[f] for f in pending)

    def finished_sync(self, refs: dict[Any, K]) -> Iterator[tuple[K, Any]]:
        """``finished`` for a caller without an event loop."""
        pending = list(refs)
        try:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                for ref in done:
                    yield refs[ref], self.ray.get(ref)
        finally:
            self._cancel(pending)

    def _cancel(self, refs: Iterable[Any]) -> None:
        for ref in refs:  # interrupted: nothing more is computed for this run
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)

    def worker_pids(self) -> list[int]:
        return [int(p) for p in self.ray.get([a.pid.remote() for a in self.actors])]

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone: nothing to stop
                continue
        self.actors = []
