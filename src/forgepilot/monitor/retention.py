"""Retention: is accepted text still in the document some time after the accept?

Copilot's published method: at fixed times after an accept (30 s, 2 min, 5 min, 10 min) look for the accepted text
near where it was inserted, allowing edits (fuzzy matching), and report how much of it survives. The share is the
best alignment score of the accepted text against the document around the insertion point (rapidfuzz's
``partial_ratio_alignment``), searched in a window that allows for lines added or removed above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

from forgepilot.monitor.types import Event

_log = logging.getLogger("forgepilot.monitor")
#: Accepts tracked at once; past it the oldest are dropped (an editor session never needs more).
MAX_TRACKED = 10_000


def retained_share(accepted: str, document: str, offset: int, window_chars: int = 4000) -> float:
    """How much of ``accepted`` (0..1) is still in ``document`` near ``offset``, where it was inserted."""
    needle = accepted.strip()
    if not needle:
        return 1.0
    start = max(0, offset - window_chars)
    haystack = document[start : offset + len(accepted) + window_chars]
    if needle in haystack:  # the common case, and exact
        return 1.0
    if not haystack.strip():
        return 0.0
    alignment = fuzz.partial_ratio_alignment(needle, haystack, processor=None)
    return round(alignment.score / 100.0, 4) if alignment is not None else 0.0


@dataclass(frozen=True)
class Accepted:
    """An accept to follow: the text the client inserted at ``offset`` of ``uri``, with the completion's fields."""

    completion_id: str
    uri: str
    text: str
    offset: int
    accepted_at: float
    model: str | None = None
    mode: str | None = None
    language: str | None = None
    template_id: str | None = None
    template_version: str | None = None


#: Reads a document's current text: the open buffer, else the file on disk, else None (closed and gone).
DocumentReader = Callable[[str], str | None]
EventSink = Callable[[Event], Awaitable[None]]


class RetentionTracker:
    """Schedules the checks of each accept on the running event loop and reports ``retained`` events."""

    def __init__(
        self,
        read: DocumentReader,
        emit: EventSink,
        *,
        checkpoints_s: Sequence[float] = (30.0, 120.0, 600.0),
        window_chars: int = 4000,
    ) -> None:
        self.read = read
        self.emit = emit
        self.checkpoints_s = tuple(sorted(checkpoints_s))
        self.window_chars = window_chars
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.checks_done = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def track(self, accepted: Accepted) -> None:
        """Start the checks for ``accepted`` (a second accept of the same completion replaces the first)."""
        old = self._tasks.pop(accepted.completion_id, None)
        if old is not None:
            old.cancel()
        while len(self._tasks) >= MAX_TRACKED:
            oldest = self._tasks.pop(next(iter(self._tasks)))  # dicts keep insertion order: the first is oldest
            oldest.cancel()
        task = asyncio.get_running_loop().create_task(self._follow(accepted))
        self._tasks[accepted.completion_id] = task
        task.add_done_callback(lambda t: self._forget(accepted.completion_id, t))

    def _forget(self, completion_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(completion_id) is task:
            del self._tasks[completion_id]

    async def _follow(self, accepted: Accepted) -> None:
        for after in self.checkpoints_s:
            await asyncio.sleep(max(0.0, accepted.accepted_at + after - time.monotonic()))
            event = self.check(accepted, after)
            self.checks_done += 1
            try:
                await self.emit(event)
            except Exception as exc:  # telemetry must never break editing
                _log.warning("could not record a retention event: %s", exc)

    def check(self, accepted: Accepted, after_s: float) -> Event:
        text = self.read(accepted.uri)
        share = reason = None
        if text is None:
            reason = "document_closed"
        else:
            share = retained_share(accepted.text, text, accepted.offset, self.window_chars)
        return Event(
            type="retained",
            completion_id=accepted.completion_id,
            model=accepted.model,
            mode=accepted.mode,
            language=accepted.language,
            template_id=accepted.template_id,
            template_version=accepted.template_version,
            accepted_chars=len(accepted.text),
            after_s=after_s,
            retained_share=share,
            reason=reason,
            client_time=time.time(),
        )

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
