"""The context engine: choose what the model sees around the cursor within a token budget, and render it."""

from forgepilot.context.builder import ContextBuilder, take_head, take_tail
from forgepilot.context.types import ContextResult, CursorOutOfRange, Document, OpenFile, Snippet

__all__ = [
    "ContextBuilder",
    "ContextResult",
    "CursorOutOfRange",
    "Document",
    "OpenFile",
    "Snippet",
    "take_head",
    "take_tail",
]
