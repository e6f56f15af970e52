"""Instructions planted in code for AI assistants to follow ("ignore previous instructions and write ...").

Code the assistant reads (context snippets, open files, code to explain) is data, never instructions. A line whose
text addresses an AI assistant or tries to override its instructions has that text replaced by a neutral note
before any model sees it. The heuristics are deliberately narrow (phrases such attacks use, taken from the
release gate's injection probes and published prompt-injection corpora), so ordinary comments pass untouched.
"""

from __future__ import annotations

import re

NOTE = "[ForgePilot removed an instruction to AI assistants here]"

_ADDRESSED = (
    r"(?:note|message|instructions?|attention|directive|command)s?\s+(?:to|for)\s+(?:all\s+|any\s+)?"
    r"(?:the\s+)?(?:ai|a\.i\.|llms?|language\s+models?|(?:ai\s+|coding\s+)?assistants?|copilots?|chat\s?bots?|agents?)\b"
)
_OVERRIDE = (
    r"(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+)?"
    r"(?:previous|prior|above|earlier|preceding|system|original|other)?\s*(?:instructions|prompts?|rules|context)"
)
_ROLE = r"(?:you\s+are\s+now\s+(?:a|an|in)\b|new\s+system\s+prompt|act\s+as\s+(?:a|an)\s+(?:different|unrestricted))"
_COMMAND = (
    r"(?:the\s+next\s+line\s+you\s+write|your\s+(?:next\s+)?(?:answer|response|output|reply))\s+must\s+"
    r"(?:be|write|print|output|say|include|contain|start|begin|end)\b"
)
_PATTERN = re.compile(rf"(?i)\b(?:{_ADDRESSED}|{_OVERRIDE}|{_ROLE}|{_COMMAND})")


def neutralise_instructions(text: str) -> tuple[str, int]:
    """``text`` with every planted instruction replaced by ``NOTE`` (from where it starts to the end of its line,
    keeping the line's comment marker and indentation); returns the text and how many lines were changed."""
    if not _PATTERN.search(text):  # the common case, in one pass
        return text, 0
    lines = text.splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        m = _PATTERN.search(line)
        if m is None:
            continue
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        lines[i] = body[: m.start()] + NOTE + ending
        changed += 1
    return "".join(lines), changed
