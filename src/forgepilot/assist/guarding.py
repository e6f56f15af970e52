"""Which guard a request gets: secrets masked by policy (always for a remote model), instructions neutralised."""

from __future__ import annotations

from forgepilot.backends.base import Backend, Segment
from forgepilot.config import GuardSettings
from forgepilot.safety import PromptGuard


def guard_for(backend: Backend, settings: GuardSettings) -> PromptGuard:
    masked = settings.secrets == "always" or backend.remote or (settings.secrets == "remote" and backend.remote)
    return PromptGuard(mask_secrets=masked, neutralise=settings.instructions, redact_output=settings.redact_output)


def guard_segments(guard: PromptGuard, segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """A rendered prompt with its text guarded and the template's own markers untouched."""
    return tuple(s if s.control else Segment(guard.prompt_text(s.text)) for s in segments)
