"""Secrets and personal data in prompts and answers: found by pattern, masked by placeholders, restored with care.

Serving has a few milliseconds, so this is patterns only (dataset generation adds detect-secrets' plugins on top,
see ``datagen.secrets``): credential-named assignments, well-known key formats (AWS, GitHub, Slack, Stripe, OpenAI,
Google, JWT), PEM private keys, credentials in URLs, e-mail addresses and public IPv4 addresses.

``Vault`` masks every value it finds with a numbered placeholder (``<SECRET_1>``, ``<EMAIL_1>``, ...), the same
value with the same placeholder, so that a model can still refer to "the same key" without ever seeing it. An
answer's placeholders are put back only for values the client itself sent in the text it is working on;
any other placeholder in an answer means the model reached for a secret from elsewhere (another file, the index).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A credential-named variable, key or argument assigned a literal of 8+ characters.
_KEYWORD_ASSIGN = re.compile(
    r"(?i)\b\w*(?:passw(?:or)?d|passwd|pwd|secret|token|api_?key|access_?key|auth_?key|private_?key|credential)\w*"
    r"[\"']?\s*(?::\s*\w+\s*)?(?:=|:|=>)\s*[bru]?([\"'])([^\"'\s]{8,})\1"
)
_KNOWN = re.compile(
    r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|sk-(?:proj-)?[A-Za-z0-9_-]{20,}|[sr]k_live_[A-Za-z0-9]{16,}|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:([^/\s@]{3,})(?=@)")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])"
)
_PLACEHOLDER = re.compile(r"<(SECRET|EMAIL|IP)_(\d+)>")
# Addresses everyone writes in code and docs: not personal data, and masking them would only confuse the model.
_PUBLIC_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "test.com", "localhost")
_PUBLIC_IP_PREFIXES = ("127.", "0.", "10.", "192.168.", "255.", "169.254.")


@dataclass(frozen=True)
class Found:
    kind: str  # SECRET | EMAIL | IP
    value: str


def _private_range(ip: str) -> bool:
    if ip.startswith(_PUBLIC_IP_PREFIXES):
        return True
    first, second = (int(x) for x in ip.split(".")[:2])
    return first == 172 and 16 <= second <= 31


def find_secrets(text: str) -> list[Found]:
    """Every secret and personal datum in ``text``, each value once, longest first (so that replacing one never
    cuts another)."""
    found: dict[str, str] = {}
    for m in _PEM.finditer(text):
        found.setdefault(m.group(0), "SECRET")
    for m in _KEYWORD_ASSIGN.finditer(text):
        value = m.group(2)
        if not _PLACEHOLDER.fullmatch(value) and not value.startswith(("os.environ", "${", "{{")):
            found.setdefault(value, "SECRET")
    for m in _KNOWN.finditer(text):
        found.setdefault(m.group(0), "SECRET")
    for m in _URL_CREDENTIALS.finditer(text):
        found.setdefault(m.group(1), "SECRET")
    for m in _EMAIL.finditer(text):
        if not m.group(0).lower().endswith(_PUBLIC_EMAIL_DOMAINS):
            found.setdefault(m.group(0), "EMAIL")
    for m in _IPV4.finditer(text):
        if not _private_range(m.group(0)):
            found.setdefault(m.group(0), "IP")
    return [Found(kind, value) for value, kind in sorted(found.items(), key=lambda kv: -len(kv[0]))]


@dataclass
class Unmasked:
    text: str
    #: Placeholders the answer held for values the client did not send in its own text: left out.
    withheld: int = 0


@dataclass
class Vault:
    """Placeholders for the secrets of one request (numbered in order of discovery)."""

    by_value: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced by its placeholder."""
        found = find_secrets(text)
        for f in found:
            if f.value not in self.by_value:
                self.counts[f.kind] = self.counts.get(f.kind, 0) + 1
                self.by_value[f.value] = f"<{f.kind}_{self.counts[f.kind]}>"
        for f in found:
            text = text.replace(f.value, self.by_value[f.value])
        return text

    @property
    def masked(self) -> int:
        return len(self.by_value)

    def unmask(self, answer: str, client_text: str, *, withheld_as: str = "") -> Unmasked:
        """Put back the placeholders of values ``client_text`` holds; any other is replaced by ``withheld_as``."""
        values = {p: v for v, p in self.by_value.items()}
        withheld = 0

        def back(m: re.Match[str]) -> str:
            nonlocal withheld
            value = values.get(m.group(0))
            if value is not None and value in client_text:
                return value
            withheld += 1
            return withheld_as

        return Unmasked(_PLACEHOLDER.sub(back, answer), withheld)


def redact_new(answer: str, client_text: str, *, replacement: str = "<REDACTED>") -> tuple[str, int]:
    """``answer`` with the secrets it holds that ``client_text`` does not (the model's own, or remembered ones)
    replaced; returns the text and how many were redacted."""
    count = 0
    for f in find_secrets(answer):
        if f.value not in client_text:
            answer = answer.replace(f.value, replacement)
            count += 1
    return answer, count


class StreamUnmasker:
    """``Vault.unmask`` over a stream of text pieces: a placeholder split across pieces is held back until whole."""

    _LONGEST = len("<SECRET_99999>")

    def __init__(self, vault: Vault, client_text: str, *, withheld_as: str = "") -> None:
        self.vault = vault
        self.client_text = client_text
        self.withheld_as = withheld_as
        self.withheld = 0
        self._held = ""

    def feed(self, piece: str) -> str:
        """What can be sent of everything fed so far."""
        text = self._held + piece
        cut = text.rfind("<")
        # A "<" near the end may open a placeholder still arriving: keep it (and what follows) for later.
        if cut != -1 and ">" not in text[cut:] and len(text) - cut < self._LONGEST:
            text, self._held = text[:cut], text[cut:]
        else:
            self._held = ""
        return self._unmask(text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._unmask(text)

    def _unmask(self, text: str) -> str:
        done = self.vault.unmask(text, self.client_text, withheld_as=self.withheld_as)
        self.withheld += done.withheld
        return done.text
