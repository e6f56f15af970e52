"""One request's guard: what goes to the model is masked and neutralised, what comes back is unmasked and checked."""

from __future__ import annotations

from dataclasses import dataclass, field

from forgepilot.safety.injection import neutralise_instructions
from forgepilot.safety.secrets import Vault, redact_new


@dataclass
class GuardCounts:
    #: Distinct secrets and personal data masked in the prompt.
    masked: int = 0
    #: Lines of planted instructions neutralised in the prompt.
    instructions: int = 0
    #: Placeholders in the answer for values the client did not send (left out of the answer).
    withheld: int = 0
    #: Secrets in the answer that were in none of the client's text (redacted).
    redacted: int = 0

    def steps(self) -> list[str]:
        """The post-processing steps a response reports (only those that happened)."""
        names = ("masked", "instructions", "withheld", "redacted")
        return [f"guard_{n}" for n in names if getattr(self, n)]


@dataclass
class PromptGuard:
    """Built per request: ``mask_secrets`` (by policy, always for a remote model), ``neutralise`` planted
    instructions, ``redact_output`` secrets the client never sent."""

    mask_secrets: bool = True
    neutralise: bool = True
    redact_output: bool = True
    vault: Vault = field(default_factory=Vault)
    counts: GuardCounts = field(default_factory=GuardCounts)

    def prompt_text(self, text: str) -> str:
        """Text on its way to the model (a document, a snippet, a chat message)."""
        if self.neutralise:
            text, n = neutralise_instructions(text)
            self.counts.instructions += n
        if self.mask_secrets:
            text = self.vault.mask(text)
            self.counts.masked = self.vault.masked
        return text

    def answer(self, text: str, client_text: str, *, withheld_as: str = "", redacted_as: str = "<REDACTED>") -> str:
        """The model's answer for a client that sent ``client_text``: its own secrets back where the model kept
        their placeholders, anything else it should not have left out."""
        if self.mask_secrets and self.vault.masked:
            unmasked = self.vault.unmask(text, client_text, withheld_as=withheld_as)
            text = unmasked.text
            self.counts.withheld += unmasked.withheld
        if self.redact_output:
            text, n = redact_new(text, client_text, replacement=redacted_as)
            self.counts.redacted += n
        return text
