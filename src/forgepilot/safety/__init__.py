"""Guards at the model boundary: secrets and personal data masked, planted instructions neutralised."""

from forgepilot.safety.guard import GuardCounts, PromptGuard
from forgepilot.safety.injection import NOTE, neutralise_instructions
from forgepilot.safety.secrets import Found, StreamUnmasker, Unmasked, Vault, find_secrets, redact_new

__all__ = [
    "NOTE",
    "Found",
    "GuardCounts",
    "PromptGuard",
    "StreamUnmasker",
    "Unmasked",
    "Vault",
    "find_secrets",
    "neutralise_instructions",
    "redact_new",
]
