"""Which guard a request gets: secrets masked by policy (always for a remote model), instructions neutralised."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from forgepilot.backends.base import Backend, CompletionChunk, Segment
from forgepilot.config import GuardSettings
from forgepilot.safety import PromptGuard, StreamUnmasker


def guard_for(backend: Backend, settings: GuardSettings) -> PromptGuard:
    masked = settings.secrets == "always" or backend.remote  # "remote" and "off" differ for local models only
    return PromptGuard(mask_secrets=masked, neutralise=settings.instructions, redact_output=settings.redact_output)


def guard_segments(guard: PromptGuard, segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """A rendered prompt with its text guarded and the template's own markers untouched."""
    return tuple(s if s.control else Segment(guard.prompt_text(s.text)) for s in segments)


def raw_guard(backend: Backend) -> PromptGuard:
    """The guard of the raw OpenAI endpoints, where the client wrote the whole prompt: nothing to keep from the
    client itself, so only a remote model server has secrets masked from it (and restored in the answer)."""
    return PromptGuard(mask_secrets=backend.remote, neutralise=False, redact_output=False)


async def unmask_stream(
    chunks: AsyncIterator[CompletionChunk], guard: PromptGuard, client_text: str
) -> AsyncIterator[CompletionChunk]:
    """``chunks`` with the client's own values back in place of their placeholders, across chunk boundaries."""
    try:
        if not guard.vault.masked:
            async for chunk in chunks:
                yield chunk
            return
        unmasker = StreamUnmasker(guard.vault, client_text)
        async for chunk in chunks:
            text = unmasker.feed(chunk.text)
            if chunk.finish_reason is not None:
                text += unmasker.flush()
            yield replace(chunk, text=text)
        if rest := unmasker.flush():
            yield CompletionChunk(rest)
    finally:
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()
