"""One thread that runs jobs by priority, then by arrival: the model's queue.

A loaded model is one mutable context, so everything touching it runs on one thread. Plain FIFO would make an
editor's completion wait behind every chat answer and evaluation case queued before it; here the most urgent job
waiting goes next (``PRIORITY_RANK``: interactive, then chat, then batch, then background warming), and a running
generation can hand the thread to a more urgent job between two of its tokens (``pop_more_urgent``).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(order=True)
class Job:
    rank: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    future: Future[Any] = field(compare=False, default_factory=Future)

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(self.fn())
        except BaseException as exc:  # handed to whoever waits on the future
            self.future.set_exception(exc)


class PriorityWorker:
    def __init__(self, name: str) -> None:
        self._heap: list[Job] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any], rank: int = 0) -> Future[Any]:
        """Queue ``fn`` with priority ``rank`` (lower runs first); its result or error comes back in the future."""
        job = Job(rank, next(self._seq), fn)
        with self._cv:
            if self._closed:
                raise RuntimeError("the model's worker has shut down")
            heapq.heappush(self._heap, job)
            self._cv.notify()
        return job.future

    def waiting(self) -> int:
        with self._cv:
            return len(self._heap)

    def has_more_urgent(self, rank: int) -> bool:
        """Whether a job more urgent than ``rank`` waits (a chunked job yields the thread when one does)."""
        with self._cv:
            return bool(self._heap) and self._heap[0].rank < rank

    def pop_more_urgent(self, rank: int) -> Job | None:
        """The most urgent waiting job if it is more urgent than ``rank`` (taken off the queue), else None."""
        with self._cv:
            if self._heap and self._heap[0].rank < rank:
                return heapq.heappop(self._heap)
        return None

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if not self._heap:
                    return
                job = heapq.heappop(self._heap)
            job.run()

    def shutdown(self) -> None:
        """Cancel what waits and stop the thread after the job running now."""
        with self._cv:
            self._closed = True
            for job in self._heap:
                job.future.cancel()
            self._heap.clear()
            self._cv.notify_all()
