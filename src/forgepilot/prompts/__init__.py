"""Versioned prompt templates: every prompt ForgePilot sends is a named Jinja2 file, versioned by content hash.

Serving, data generation and evaluation all render through ``PromptRegistry``, so a record anywhere can say
exactly which template text (``template_id`` + ``version``) produced its prompt.
"""

from forgepilot.prompts.registry import (
    PromptRegistry,
    RenderedPrompt,
    Template,
    UnknownTemplate,
    UnsafeTemplate,
    builtin_registry,
    is_builtin,
)

__all__ = [
    "PromptRegistry",
    "RenderedPrompt",
    "Template",
    "UnknownTemplate",
    "UnsafeTemplate",
    "builtin_registry",
    "is_builtin",
]
