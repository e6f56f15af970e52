"""Joining a Ray cluster for the fan-outs (``eval run --ray``, ``dataset build --ray``): the extra's import, a
reachability check that fails in seconds (Ray itself waits minutes for a head that is not there), and the actor
options every ForgePilot worker shares.

Workers read what the driver reads at the same paths (the state directory's index, the repositories): on one
machine that is a given; across machines, mount them on a shared filesystem, and put the stores on PostgreSQL.
"""

from __future__ import annotations

import socket
from typing import Any

from forgepilot.errors import MissingExtra, UserError

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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot join the Ray cluster at {address!r}: {first}",
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

    def worker_pids(self) -> list[int]:
        return [int(p) for p in self.ray.get([a.pid.remote() for a in self.actors])]

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone: nothing to stop
                continue
        self.actors = []
