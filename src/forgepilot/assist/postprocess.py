"""Turn a raw model completion into text an editor can insert: the right extent, no repeats, never a parse break.

Modes (SPEC section 1): *inline* completes the rest of the current line; *in-block* the rest of the current block
(a function body); *after-block* writes the next definition. The mode is explicit or inferred from the cursor.
Each step that changes the text is named in ``Processed.steps``; an empty result carries a reason code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from forgepilot.syntax.languages import Language, parse

Mode = Literal["inline", "in-block", "after-block"]
MODES: tuple[Mode, ...] = ("inline", "in-block", "after-block")

_OPENERS = ("{", "(", "[")
_CLOSERS = {"}": "{", ")": "(", "]": "["}
_STRING = re.compile(r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _indent_based(language: Language | None) -> bool:
    return language is not None and language.name == "python"


def _opens_block(line: str, language: Language | None) -> bool:
    stripped = line.rstrip()
    if _indent_based(language):
        return stripped.endswith(":") and not stripped.lstrip().startswith("#")
    return stripped.endswith("{")


def infer_mode(prefix: str, suffix: str, language: Language | None) -> Mode:
    """The mode a cursor implies: text on its line makes it inline, a blank line in a body in-block, else after."""
    line_before = prefix.rpartition("\n")[2]
    line_after = suffix.partition("\n")[0]
    if line_after.strip():
        return "inline"
    if line_before.strip():
        return "in-block" if _opens_block(line_before, language) else "inline"
    previous = next((ln for ln in reversed(prefix.split("\n")[:-1]) if ln.strip()), "")
    if not previous:
        return "after-block"
    if _opens_block(previous, language):
        return "in-block"
    cursor_indent = len(line_before)
    if not _indent_based(language) and previous.strip() in ("}", "};", "},") and cursor_indent <= _indent(previous):
        return "after-block"
    if _indent_based(language) and _indent(previous) > cursor_indent:
        return "after-block"
    return "in-block" if cursor_indent > 0 else "after-block"


@dataclass
class Processed:
    text: str
    steps: list[str] = field(default_factory=list)
    #: Why the text is empty (None when it is not): empty_generation, repeats_suffix, copies_suffix, breaks_parse...
    reason: str | None = None


def _brackets(line: str) -> Iterator[tuple[int, int]]:
    """(column, +1 or -1) for each bracket of ``line`` outside string literals."""
    strings = [m.span() for m in _STRING.finditer(line)]
    for col, ch in enumerate(line):
        if ch in _OPENERS or ch in _CLOSERS:
            if not any(a <= col < b for a, b in strings):
                yield col, 1 if ch in _OPENERS else -1


def _bracket_depths(text: str) -> list[int]:
    """The bracket depth after each line of ``text`` (strings skipped), relative to its start."""
    depth = 0
    out = []
    for line in text.split("\n"):
        depth += sum(step for _, step in _brackets(line))
        out.append(depth)
    return out


def _cut_block_end(text: str, body_indent: int, language: Language | None) -> tuple[str, bool]:
    """Cut where the completion leaves the block it started in (dedent, or the bracket that closes it)."""
    lines = text.split("\n")
    if _indent_based(language):
        for i, line in enumerate(lines):
            if i == 0:
                continue
            if line.strip() and _indent(line) < body_indent:
                return "\n".join(lines[:i]), True
        return text, False
    depth = 0
    for i, line in enumerate(lines):
        for col, step in _brackets(line):
            depth += step
            if depth < 0:
                # The enclosing block closes here: keep what comes before the closing bracket on this line.
                head = line[:col]
                kept = lines[:i] + ([head] if head.strip() else [])
                return "\n".join(kept), True
    return text, False


def _cut_after_first_block(text: str, base_indent: int, language: Language | None) -> tuple[str, bool]:
    """Keep the first complete definition of an after-block completion and drop what follows it."""
    lines = text.split("\n")
    if _indent_based(language):
        seen_body = False
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            if _indent(line) > base_indent:
                seen_body = True
            elif seen_body and not line.lstrip().startswith(("@", ")", "]", "}")):
                return "\n".join(lines[:i]), True
        return text, False
    depths = _bracket_depths(text)
    opened = False
    for i, d in enumerate(depths):
        if d > 0:
            opened = True
        elif opened and d <= 0:
            return "\n".join(lines[: i + 1]), True
    return text, False


def _body_indent(prefix: str, text: str, language: Language | None) -> int:
    """The indentation of the block an in-block completion continues (lines indented less leave it)."""
    line_before = prefix.rpartition("\n")[2]
    if line_before.strip():
        return _indent(line_before) + (1 if _opens_block(line_before, language) else 0)
    previous = next((ln for ln in reversed(prefix.split("\n")[:-1]) if ln.strip()), "")
    if _opens_block(previous, language):
        return max(len(line_before), _indent(previous) + 1)
    # A blank cursor line after a statement (a docstring, an assignment): the block is the one the completion's
    # first line is written in; the cursor's own indentation counts for a first line that continues it.
    for i, line in enumerate(text.split("\n")):
        if line.strip():
            return (len(line_before) if i == 0 else 0) + _indent(line)
    return len(line_before)


def _cut_block(text: str, prefix: str, mode: Mode, language: Language | None) -> tuple[str, bool]:
    """In-block: cut where the completion leaves the cursor's block; after-block: after the first definition."""
    if mode == "in-block":
        # The first completion line continues the cursor's line: later lines are measured against the body.
        return _cut_block_end(text, _body_indent(prefix, text, language), language)
    return _cut_after_first_block(text, len(prefix.rpartition("\n")[2]), language)


def block_complete(text: str, *, prefix: str, mode: Mode, language: Language | None) -> bool:
    """True once the completion so far has left its block (in-block) or finished its definition (after-block):
    the kept text is decided, so generation may stop. Only whole lines are judged (a partial line could still
    turn out to be a decorator or a closing bracket)."""
    if mode == "inline" or "\n" not in text:
        return False
    whole = text[: text.rfind("\n")]
    return _cut_block(whole, prefix, mode, language)[1]


def _drop_suffix_repeat(text: str, suffix: str, mode: Mode, line_before: str = "") -> tuple[str, bool]:
    """Remove the part of the completion that the text after the cursor already holds."""
    if not suffix or not text:
        return text, False
    if mode == "inline":
        rest = suffix.partition("\n")[0]
        # Ends of the completion that the rest of the line starts with: ")" after "foo(x" is dropped.
        repeats = [
            k for k in range(min(len(text), len(rest)), 0, -1) if rest.startswith(text[-k:]) and text[-k:].strip()
        ]
        if not repeats:
            return text, False
        # The longest that leaves the line's brackets balanced: after "append((key, " with "))" to follow, the
        # answer "str(value))" keeps "str(value)"; a plain longest match would drop its own ")" too.
        opened = max(_bracket_depths(line_before)[-1], 0)
        balanced = [k for k in [*repeats, 0] if opened + _bracket_depths(text[: len(text) - k] + rest)[-1] == 0]
        k = balanced[0] if balanced else repeats[0]
        return (text[:-k], True) if k else (text, False)
    following = [ln.strip() for ln in suffix.split("\n") if ln.strip()][:1]
    if not following or len(following[0]) < 4:
        return text, False
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if i > 0 and line.strip() == following[0]:
            return "\n".join(lines[:i]), True
    return text, False


#: How far after the cursor a copied line is looked for (the next definition or two), and what makes a line
#: distinctive enough that writing it again is copying, not coincidence (``return x`` or ``}`` are not).
NEARBY_SUFFIX_LINES = 40
_DISTINCTIVE_CHARS = 12
_DISTINCTIVE_WORDS = 4
_WORD = re.compile(r"\w+")
#: Words a line may use without anything before the cursor defining them (the parsed languages' keywords).
_KEYWORDS = frozenset(
    "and as assert async await break case catch class const continue def default del do elif else except export "
    "extends false finally for from func function global go if import in is lambda let match new nil none not null "
    "or pass raise return self static super switch this throw true try type var while with yield".split()
)


def _normal(line: str) -> str:
    return " ".join(line.split())


def _distinctive(line: str) -> bool:
    return len(line) >= _DISTINCTIVE_CHARS and len(_WORD.findall(line)) >= _DISTINCTIVE_WORDS


#: A line that opens a definition (or a decorator above one), in the languages we parse.
_DEFINITION = re.compile(
    r"^\s*(?:@|(?:(?:export|default|public|private|protected|internal|static|final|abstract|override|async|suspend"
    r"|inline|open|pub(?:\([^)]*\))?|unsafe|extern|virtual)\s+)*"
    r"(?:def|class|function|func|fn|fun|interface|struct|enum|trait|impl|object|module|type)\b)"
)


def _after_enclosing_definition(prefix: str, suffix_lines: list[str]) -> int:
    """The index of the first suffix line outside the definition the cursor is in (``len`` when there is none).

    The enclosing definition is the nearest line above the cursor that opens one at a shallower indentation; it
    ends at the first later line indented no deeper than it. At the top level of a file, the next definition
    starts what is outside. Code repeats itself inside a function (the same call in two branches): only a copy of
    another definition's code is a copy.
    """
    lines = prefix.split("\n")
    cursor = lines[-1]
    level = _indent(cursor)
    header: int | None = None
    for line in reversed(lines[:-1]):
        if not line.strip():
            continue
        indent = _indent(line)
        if indent < level:
            if _DEFINITION.match(line):
                header = indent
                break
            level = indent
            if indent == 0:
                break
    for i, line in enumerate(suffix_lines):
        if i == 0 or not line.strip():
            continue
        if (header is not None and _indent(line) <= header) or (header is None and _DEFINITION.match(line)):
            return i
    return len(suffix_lines)


#: The names an assignment line binds (``us, them = ...``, ``const x = ...``, ``self.n += 1``): text before one ``=``
#: that is not part of ``==``, ``<=``, ``>=``, ``!=`` or a call's keyword argument (no bracket before it).
_ASSIGNED = re.compile(r"^\s*(?:(?:const|let|var)\s+)?([\w.,\s\[\]*]+?)\s*(?://|\*\*|<<|>>|[-+*/%&|^@:])?=(?!=)")


def _read_names(line: str) -> list[str]:
    """The names ``line`` reads: a name it assigns is one it introduces, not one it needs from elsewhere."""
    assigned = _ASSIGNED.match(line)
    return _WORD.findall(line[assigned.end() :] if assigned else line)


def _without_open_block(lines: list[str], language: Language | None) -> list[str]:
    """``lines`` less a trailing block opener: cutting a copied body never leaves ``if r:`` with nothing under it."""
    kept = list(lines)
    while kept and (not kept[-1].strip() or _opens_block(kept[-1], language)):
        kept.pop()
    return kept


def _copies_nearby(
    text: str, prefix: str, suffix: str, mode: Mode, language: Language | None = None
) -> tuple[str, bool]:
    """Cut the completion at the first line it copies from the code after the cursor's definition (a small model
    fills an empty body with the next function's ``return math.pi * r * r``); the text before it is kept.

    The line right after the cursor is ``_drop_suffix_repeat``'s; here any distinctive line of the next
    ``NEARBY_SUFFIX_LINES`` outside the enclosing definition counts, the first completion line included (judged
    with what the cursor's line already holds before it), when it reads a name the code before the cursor never
    mentions (``r``, the other function's parameter): the same ``return Lines([self.copy()])`` in two methods, or
    attrs' ``us, them = self._ensure_tuple(other)`` in ``__eq__`` and ``__lt__`` (``us`` and ``them`` are names the
    line binds), is how code looks, not a copy. A block the completion opened just before the copy goes with it.
    """
    following = suffix.split("\n")[: NEARBY_SUFFIX_LINES + 1]
    outside = following[_after_enclosing_definition(prefix, following) :]
    nearby = {ln for ln in map(_normal, outside) if _distinctive(ln)}
    if not nearby or not text:
        return text, False
    line_before = prefix.rpartition("\n")[2]
    known: set[str] | None = None
    lines = text.split("\n")
    for i, line in enumerate(lines):
        whole = _normal(line_before + line) if i == 0 else _normal(line)
        if whole in nearby:
            known = set(_WORD.findall(prefix)) if known is None else known
            if any(name not in known and name not in _KEYWORDS for name in _read_names(line)):
                return "\n".join(_without_open_block(lines[:i], language)), True
        if mode == "inline":
            break
    return text, False


def _parses(text: str, language: Language) -> bool:
    assert language.grammar is not None
    return not parse(text.encode("utf-8", "replace"), language.grammar).root_node.has_error


#: The node an indentation grammar gives a header's body. tree-sitter-python accepts ``def f(x):`` with nothing
#: under it as a definition whose ``block`` is empty (zero bytes wide), not as an error.
_BODY_NODE = "block"


def _empty_body_in(root: Any, start: int, end: int) -> bool:
    """Whether a header between bytes ``start`` and ``end`` (inclusive) has an empty body."""
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.children:
            if child.end_byte < start or child.start_byte > end:
                continue
            if child.type == _BODY_NODE and child.start_byte == child.end_byte and start <= child.start_byte:
                return True
            stack.append(child)
    return False


def _insertion_parses(prefix: str, text: str, suffix: str, mode: Mode, language: Language) -> bool:
    """Whether the document parses with ``text`` at the cursor. In the block modes a header the completion writes
    without a body under it (``def f(x):`` cut before its first line) breaks the document too: Python rejects it
    though tree-sitter does not. Only bodies from the cursor on count: one the prefix left empty is the user's."""
    assert language.grammar is not None
    head = prefix.encode("utf-8", "replace")
    body = text.encode("utf-8", "replace")
    root = parse(head + body + suffix.encode("utf-8", "replace"), language.grammar).root_node
    if root.has_error:
        return False
    return mode == "inline" or not _empty_body_in(root, len(head), len(head) + len(body))


def postprocess(
    raw: str,
    *,
    prefix: str,
    suffix: str,
    mode: Mode,
    language: Language | None,
    max_lines: int,
    check_parse: bool = True,
) -> Processed:
    """Make ``raw`` insertable at the cursor between ``prefix`` and ``suffix`` in ``mode``."""
    out = Processed(raw)
    text = raw.replace("\r\n", "\n")
    if not text.strip():
        out.text, out.reason = "", "empty_generation"
        return out
    line_before = prefix.rpartition("\n")[2]
    if mode == "inline":
        if "\n" in text:
            # One line, never its line break (the cursor's line already ends with one).
            first = text.lstrip("\n") if not line_before.strip() else text
            line, _, rest = first.partition("\n")
            if len(first) < len(text) or rest.strip():
                out.steps.append("inline_one_line")
            text = line
    else:
        text, cut = _cut_block(text, prefix, mode, language)
        if cut:
            out.steps.append("block_end" if mode == "in-block" else "first_block")
        lines = text.split("\n")
        if len(lines) > max_lines:
            text = "\n".join(lines[:max_lines])
            out.steps.append("max_lines")
    text, cut = _drop_suffix_repeat(text, suffix, mode, line_before)
    if cut:
        out.steps.append("suffix_repeat")
        if not text.strip():
            out.text, out.reason = "", "repeats_suffix"
            return out
    text, cut = _copies_nearby(text, prefix, suffix, mode, language)
    if cut:
        out.steps.append("copies_suffix")
        if not text.strip():
            out.text, out.reason = "", "copies_suffix"
            return out
    if mode != "inline":
        text = text.rstrip()  # the cursor's own line break follows the insertion
    if not text.strip():
        out.text, out.reason = "", "block_closed"
        return out
    if check_parse and language is not None and language.grammar is not None and _parses(prefix + suffix, language):
        if not _insertion_parses(prefix, text, suffix, mode, language):
            # Keep the longest run of whole lines that still parses, else nothing.
            lines = text.split("\n")
            for n in range(len(lines) - 1, 0, -1):
                candidate = "\n".join(lines[:n])
                if candidate.strip() and _insertion_parses(prefix, candidate, suffix, mode, language):
                    text = candidate
                    out.steps.append("parse_trim")
                    break
            else:
                out.text, out.reason = "", "breaks_parse"
                return out
    out.text = text
    return out
