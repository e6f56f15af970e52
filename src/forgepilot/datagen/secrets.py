"""Secrets and PII out of training data: found with the detect-secrets engine plus patterns, replaced by placeholders.

detect-secrets runs every plugin (AWS, GitHub, Slack, Stripe, JWT, private keys, keyword assignments, high-entropy
strings, ...) on a line, at about half a millisecond per line; a cheap prefilter sends it only the lines that could
hold a secret (a credential word, a known key prefix, or a long unbroken token), which is a small share of code.
E-mail addresses, IPv4 addresses, URL credentials and PEM private keys are replaced by our own patterns.

Every secret value found is remembered (``Redactor.values``) so the final texts of a dataset, which also hold
context snippets read from other files, can be scrubbed of them too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from forgepilot.errors import MissingExtra

PLACEHOLDERS = ("<KEY>", "<PASSWORD>", "<EMAIL>", "<IP>")
_CANDIDATE = re.compile(
    r"(?i)(key|secret|token|passw|pwd|auth|credential|api|bearer|private)"
    r"|AKIA|ghp_|gho_|xox[abpr]-|sk-|sk_live|rk_live|AIza|-----BEGIN|eyJ"
    r"|[A-Za-z0-9+/_\-]{20,}"
)
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])"
)
_URL_CREDENTIALS = re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
# A credential-named variable assigned a literal (the keyword plugin's filters skip some of these).
_KEYWORD_ASSIGN = re.compile(
    r"(?i)\b\w*(?:passw(?:or)?d|pwd|secret|token|api_?key|access_?key|auth_?key|private_?key)\w*\s*(?::\s*\w+\s*)?"
    r"[:=]\s*[bru]?([\"'])([^\"'\s]{8,})\1"
)
_KEEP_IPS = frozenset({"127.0.0.1", "0.0.0.0", "255.255.255.255"})
_LINE_CACHE = 200_000  # remembered line scans (a few tens of MB at most)
_MIN_SECRET = 6  # shorter "secrets" are plugin artefacts (a matched prefix), not values worth scrubbing


@dataclass
class Redaction:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


class Redactor:
    def __init__(self) -> None:
        # The line-based engine of `detect-secrets scan` with its filters (heuristics against false positives such
        # as words, ids and templated values). Its public `scan_line` is the ad-hoc mode that reports every word
        # of a line as a "high entropy string"; `scan_file` needs a file on disk, and our texts are not files.
        try:
            from detect_secrets.core.scan import _process_line_based_plugins
            from detect_secrets.settings import default_settings
        except ImportError as exc:
            raise MissingExtra("detect-secrets", "datagen") from exc

        self._scan_lines = _process_line_based_plugins
        self._settings = default_settings
        #: Every secret value found so far, with its placeholder.
        self.values: dict[str, str] = {}
        self._values_re: re.Pattern[str] | None = None
        self._lines: dict[tuple[str, str], dict[str, str]] = {}

    def _detect(self, lines: Iterable[str], filename: str) -> dict[str, str]:
        found: dict[str, str] = {}
        picked = [(i, line) for i, line in enumerate(lines, 1) if len(line) <= 2000 and _CANDIDATE.search(line)]
        if not picked:
            return found
        for _, line in picked:
            for m in _KEYWORD_ASSIGN.finditer(line):
                value = m.group(2)
                if (
                    not value.startswith(("<", "{", "$"))
                    and not value.isidentifier()
                    or any(c.isdigit() for c in value)
                ):
                    found.setdefault(value, "<PASSWORD>")
        # A dataset scans the same lines many times (a file, then every instance's prefix and prompt cut from
        # it): each line is scanned once per file type and its findings remembered.
        kind = filename.rpartition(".")[2]
        # Numbered by their place in the scanned list: detect-secrets reads a line's context by that number.
        todo = list(enumerate(dict.fromkeys(line for _, line in picked if (line, kind) not in self._lines), 1))
        if todo:
            per_line: dict[int, dict[str, str]] = {i: {} for i, _ in todo}
            with self._settings():
                for secret in self._scan_lines(todo, filename):
                    value = secret.secret_value
                    if not value or len(value) < _MIN_SECRET or value in PLACEHOLDERS:
                        continue
                    per_line[secret.line_number][value] = "<PASSWORD>" if secret.type == "Secret Keyword" else "<KEY>"
            if len(self._lines) > _LINE_CACHE:
                self._lines.clear()
            for i, line in todo:
                self._lines[(line, kind)] = per_line[i]
        for _, line in picked:
            found.update(self._lines[(line, kind)])
        return found

    def redact(self, text: str, filename: str = "snippet.py") -> Redaction:
        """``text`` with secrets and PII replaced, and how many of each placeholder went in."""
        counts: dict[str, int] = {}

        def sub(pattern: re.Pattern[str], repl: str, s: str) -> str:
            out, n = pattern.subn(repl, s)
            if n:
                counts[repl] = counts.get(repl, 0) + n
            return out

        text = sub(_PEM, "<KEY>", text)
        found = self._detect(text.splitlines(), filename)
        if found:
            self.values.update(found)
            self._values_re = None
            # Longest first: a value inside a longer one must not leave the rest of the longer one behind.
            for value in sorted(found, key=len, reverse=True):
                n = text.count(value)
                if n:
                    text = text.replace(value, found[value])
                    counts[found[value]] = counts.get(found[value], 0) + n
        text = self.scrub(text, counts)
        return Redaction(text, counts)

    def learn(self, values: dict[str, str]) -> None:
        """Know secret values another redactor found (a worker's), so that ``scrub`` replaces them here too."""
        new = {k: v for k, v in values.items() if k not in self.values}
        if new:
            self.values.update(new)
            self._values_re = None

    def scrub(self, text: str, counts: dict[str, int] | None = None) -> str:
        """Replace known secret values and the PII patterns (no detection: for texts already built)."""
        counts = counts if counts is not None else {}
        if self.values:
            if self._values_re is None:
                alternatives = sorted(self.values, key=len, reverse=True)
                self._values_re = re.compile("|".join(re.escape(v) for v in alternatives))
            text, n = self._values_re.subn(lambda m: self.values[m.group(0)], text)
            if n:
                counts["<KEY>"] = counts.get("<KEY>", 0) + n
        text, n = _URL_CREDENTIALS.subn(r"\1:<PASSWORD>@", text)
        if n:
            counts["<PASSWORD>"] = counts.get("<PASSWORD>", 0) + n
        text, n = _EMAIL.subn("<EMAIL>", text)
        if n:
            counts["<EMAIL>"] = counts.get("<EMAIL>", 0) + n
        replaced = 0

        def ip(m: re.Match[str]) -> str:
            nonlocal replaced
            if m.group(0) in _KEEP_IPS:
                return m.group(0)
            replaced += 1
            return "<IP>"

        text = _IPV4.sub(ip, text)
        if replaced:
            counts["<IP>"] = counts.get("<IP>", 0) + replaced
        return text
