"""Background warming of the model's cache for the files an editor works in.

A completion prompt is the file's context block, then its prefix window, then the cursor's line and the text after
it. Evaluating the first two takes seconds on a CPU (~100 prompt tokens a second on 2 cores); a request that finds
them in the model's cache evaluates only the rest. So the assistant evaluates them ahead of time, when the model has
nothing else to do: when an editor opens a file, and after a completion at a spot (the window's text below the
cursor is what the next spot in the window needs). These jobs run behind every request (``BACKGROUND_RANK``) and
yield to one between chunks.

``Warmer`` only keeps the bookkeeping: one warm at a time per file (a warm for another part of the file replaces
it: the cursor is where the next request comes from), each window warmed at most once per ``interval_s`` (a typist
changes the file at every keystroke; the cache of the newest request covers the spot being typed at), and every
task cancelled on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from forgepilot.errors import ForgePilotError

_log = logging.getLogger("forgepilot.warming")
_REMEMBERED = 1024


class Warmer:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._running: dict[str, tuple[int, asyncio.Task[None]]] = {}
        self._done_at: OrderedDict[str, float] = OrderedDict()
        #: Warms started and finished (tests and ``/metrics`` read them).
        self.started = 0
        self.finished = 0

    def recently(self, window: str) -> bool:
        """Whether ``window`` was warmed less than ``interval_s`` ago."""
        at = self._done_at.get(window)
        return at is not None and time.monotonic() - at < self.interval_s

    def mark(self, window: str) -> None:
        self._done_at[window] = time.monotonic()
        self._done_at.move_to_end(window)
        while len(self._done_at) > _REMEMBERED:
            self._done_at.popitem(last=False)

    def running(self, file: str) -> bool:
        found = self._running.get(file)
        return found is not None and not found[1].done()

    def start(self, file: str, region: int, work: Callable[[], Awaitable[object]]) -> bool:
        """Run ``work`` in the background unless a warm of the same ``region`` of ``file`` is still running (one of
        another region is cancelled: its progress so far stays cached); whether it started."""
        found = self._running.get(file)
        if found is not None and not found[1].done():
            if found[0] == region:
                return False
            found[1].cancel()
        self.started += 1

        async def run() -> None:
            try:
                await work()
                self.finished += 1
            except ForgePilotError as exc:  # a warm is an optimisation: its failure must not reach anyone
                _log.info("warming %s failed: %s", file, exc.one_line())
            finally:
                if self._running.get(file, (0, None))[1] is task:
                    del self._running[file]

        task = asyncio.ensure_future(run())
        self._running[file] = (region, task)
        return True

    async def aclose(self) -> None:
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._running.clear()
