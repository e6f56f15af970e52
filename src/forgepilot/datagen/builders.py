"""Instance builders for one file: completion holes (inline, in-block, after-block) and documentation pairs.

A completion instance is rendered exactly as the serving path renders a request at the same cursor: the file
without the hole is a ``Document`` with the cursor where the hole was, ``ContextBuilder.build`` fills the serving
model's token budget with related, similar and retrieved snippets, and the model family's FIM template makes the
final text (``fim_prompt``). The chat form (``fill`` template) shows the same snippets, prefix and suffix.
Documentation pairs render the ``document`` template (code -> documented code, the chat task's own template) and the
``implement`` template (signature and documentation -> code).
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from forgepilot.backends.base import prompt_text
from forgepilot.backends.fim import FimTemplate
from forgepilot.config import AssistSettings, DatasetSettings
from forgepilot.context import ContextBuilder, Document
from forgepilot.context.builder import CachedCounter, take_head, take_tail
from forgepilot.datagen.source import SourceFile
from forgepilot.datagen.types import LINE_KINDS, Instance, Rejections
from forgepilot.prompts import PromptRegistry
from forgepilot.syntax.symbols import Symbol

# Where an inline hole may start: after an assignment, an opening bracket, a keyword that takes an expression, a
# comma or a dot; or at the line's first token. The hole always runs to the end of the line.
_CUTS = re.compile(r"(?:=\s*|\(\s*|\breturn\s+|\byield\s+|\bawait\s+|,\s*|\.)(?=\S)")
_COMMENT_PREFIXES = ("#", "//", "/*", "*", "*/", "--")
_SNIPPET_CHARS = 2000  # a snippet's text kept in the record (the rendered prompt holds what the model saw)


def stable_rank(*parts: object) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class RenderKit:
    """What every instance is rendered with: the serving context builder, FIM template, tokenizer and prompts."""

    builder: ContextBuilder
    template: FimTemplate
    count: Callable[[str], int]
    max_context: int
    prompts: PromptRegistry
    assist: AssistSettings
    settings: DatasetSettings

    def __post_init__(self) -> None:
        self.count = CachedCounter(self.count) if not isinstance(self.count, CachedCounter) else self.count

    def completion(self, sf: SourceFile, start: int, end: int, kind: str, unit: str) -> Instance:
        text = sf.text
        prefix, target, suffix = text[:start], text[start:end], text[end:]
        doc = Document(
            path=sf.abspath,
            text=prefix + suffix,
            offset=len(prefix),
            language=sf.language,
            repository=str(sf.root),
        )
        max_tokens = self.assist.inline_max_tokens if kind in LINE_KINDS else self.assist.block_max_tokens
        ctx = self.builder.build(
            doc, template=self.template, count=self.count, max_context=self.max_context, max_tokens=max_tokens
        )
        segments = ctx.segments if ctx.segments is not None else self.template.segments(ctx.prompt, ctx.suffix)
        fim_prompt = prompt_text(segments)
        kept_prefix, _ = take_tail(prefix, ctx.tokens.get("prefix", 0), self.count)
        kept_suffix, _ = (
            take_head(suffix, ctx.tokens.get("suffix", 0), self.count) if self.template.supports_fim else ("", 0)
        )
        chat = self.prompts.render(
            "fill",
            {
                "language": sf.language.name,
                "path": sf.path,
                "snippets": ctx.snippets,
                "prefix": kept_prefix,
                "suffix": kept_suffix,
            },
        )
        first_line = text.count("\n", 0, start) + 1
        tokens = sum(ctx.tokens.values()) + self.count(target)
        return Instance(
            kind=kind,
            language=sf.language.name,
            repository=sf.repository,
            path=sf.path,
            start_line=first_line,
            end_line=first_line + target.count("\n"),
            system=chat.system or "",
            prompt=chat.user,
            completion=target,
            template={**ctx.template, "chat_template_id": chat.template_id, "chat_template_version": chat.version},
            prefix=kept_prefix,
            suffix=kept_suffix,
            fim_prompt=fim_prompt,
            fim_segments=[[s.text, s.control] for s in segments],
            fim_indent=ctx.indent,
            format=ctx.format,
            context=[
                {
                    "source": s.source,
                    "path": s.path,
                    "start_line": s.start_line,
                    "end_line": s.end_line,
                    "score": s.score,
                    "text": s.text[:_SNIPPET_CHARS],
                }
                for s in ctx.snippets
            ],
            source_sha256=sf.sha256,
            tokens=tokens,
            unit=unit,
            meta={"family": self.template.family, "budget": ctx.budget},
        ).finish()

    def chat(self, sf: SourceFile, kind: str, template: str, variables: dict[str, object], target: str) -> Instance:
        rendered = self.prompts.render(template, {"language": sf.language.name, "path": sf.path, **variables})
        return Instance(
            kind=kind,
            language=sf.language.name,
            repository=sf.repository,
            path=sf.path,
            start_line=0,
            end_line=0,
            system=rendered.system or "",
            prompt=rendered.user,
            completion=target,
            template=rendered.record(),
            source_sha256=sf.sha256,
            tokens=self.count(rendered.system or "") + self.count(rendered.user) + self.count(target),
        )


def _body_start(sf: SourceFile, sym: Symbol) -> int | None:
    """Character offset where a function's body code starts (after a Python docstring, after a brace's line)."""
    node = sf.node(sym)
    body = node.child_by_field_name("body") if node is not None else None
    if body is None or body.start_byte >= body.end_byte:
        return None
    if sf.language.name == "python":
        stmts = [c for c in body.named_children if c.type != "comment"]
        if stmts and _is_docstring(stmts[0]):
            stmts = stmts[1:]
        return sf.char(stmts[0].start_byte) if stmts else None
    # Brace languages: the body's first line after the opening brace's line.
    open_end = sf.char(body.start_byte) + 1
    nl = sf.text.find("\n", open_end)
    if nl < 0:
        return None
    start = nl + 1
    stripped = len(sf.text[start:]) - len(sf.text[start:].lstrip(" \t"))
    return start + stripped


def _is_docstring(node: Any) -> bool:
    # Grammar versions differ: a bare string node, or an expression statement holding one.
    if node.type == "string":
        return True
    return node.type == "expression_statement" and bool(node.named_children) and node.named_children[0].type == "string"


def _end_of(sf: SourceFile, sym: Symbol) -> int:
    return sf.char(sym.end_byte)


def _brace_body_end(sf: SourceFile, sym: Symbol) -> int:
    """For brace languages: the start of the line holding the closing brace (the hole stops before it)."""
    end = _end_of(sf, sym)
    return sf.line_start(end - 1) if sf.language.name != "python" else end


def _gate(sf: SourceFile, sym: Symbol, kind: str, s: DatasetSettings, rejected: Rejections) -> bool:
    reason = sf.unit_gates(sym, s)
    if reason:
        rejected.add(reason, kind)
        return False
    return True


def in_block(sf: SourceFile, kit: RenderKit, rejected: Rejections) -> Iterator[Instance]:
    s = kit.settings
    made = 0
    for sym in sorted(sf.functions, key=lambda x: stable_rank(sf.path, x.start_line)):
        if made >= s.per_file:
            break
        start = _body_start(sf, sym)
        if start is None:
            continue
        end = _brace_body_end(sf, sym)
        if sf.language.name != "python":
            end = max(start, end - 1) if sf.text[end - 1 : end] == "\n" else end
        target = sf.text[start:end]
        lines = target.count("\n") + 1
        if not target.strip() or lines < s.block_min_lines:
            continue
        if lines > s.block_max_lines:
            rejected.add("size:block_lines", "in_block")
            continue
        if not _gate(sf, sym, "in_block", s, rejected):
            continue
        made += 1
        yield kit.completion(sf, start, end, "in_block", sf.symbol_text(sym))


def after_block(sf: SourceFile, kit: RenderKit, rejected: Rejections) -> Iterator[Instance]:
    s = kit.settings
    made = 0
    funcs = sf.functions
    # A function right after a sibling definition: the model sees the block before and writes the next one.
    pairs = [(a, b) for a, b in zip(funcs, funcs[1:], strict=False) if a.end_line < b.start_line]
    for _prev, sym in sorted(pairs, key=lambda p: stable_rank(sf.path, p[1].start_line)):
        if made >= s.per_file:
            break
        line_start = sf.line_start(sf.char(sym.start_byte))
        start = line_start + len(sf.text[line_start:]) - len(sf.text[line_start:].lstrip(" \t"))
        # Decorators and annotations on the lines above belong to the definition.
        above = sf.text[:line_start].rstrip("\n").rpartition("\n")[2].strip()
        if above.startswith("@"):
            continue
        end = _end_of(sf, sym)
        target = sf.text[start:end]
        lines = target.count("\n") + 1
        if lines > s.block_max_lines:
            rejected.add("size:block_lines", "after_block")
            continue
        if lines < s.block_min_lines or not _gate(sf, sym, "after_block", s, rejected):
            continue
        made += 1
        yield kit.completion(sf, start, end, "after_block", sf.symbol_text(sym))


def inline(sf: SourceFile, kit: RenderKit, rejected: Rejections) -> Iterator[Instance]:
    s = kit.settings
    candidates: list[tuple[str, int, int, Symbol]] = []
    seen_rows: set[int] = set()  # a line of a nested function belongs to the innermost one listed first
    lines = sf.text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    for sym in sf.functions:
        body = _body_start(sf, sym)
        if body is None:
            continue
        first = sf.text.count("\n", 0, body)
        last = min(sym.end_line - 1, len(lines) - 1)
        for row in range(first, last + 1):
            if row in seen_rows:
                continue
            seen_rows.add(row)
            line = lines[row]
            code = line.strip()
            if len(code) < s.inline_min_chars or code.startswith(_COMMENT_PREFIXES) or code.startswith(("'", '"')):
                continue
            indent = len(line) - len(line.lstrip())
            cuts = [indent] + [m.end() for m in _CUTS.finditer(line, indent)]
            cuts = [c for c in cuts if len(line) - c >= s.inline_min_chars and re.search(r"\w", line[c:])]
            if not cuts:
                continue
            rank = stable_rank(sf.path, row)
            cut = cuts[int(rank[:8], 16) % len(cuts)]
            candidates.append((rank, starts[row] + cut, starts[row] + len(line.rstrip()), sym))
    made = 0
    gated: dict[int, bool] = {}
    for _rank, start, end, sym in sorted(candidates, key=lambda c: c[0]):
        if made >= s.per_file:
            break
        if sym.start_byte not in gated:
            gated[sym.start_byte] = _gate(sf, sym, "inline", s, rejected)
        if not gated[sym.start_byte]:
            continue
        made += 1
        yield kit.completion(sf, start, end, "inline", sf.text[sf.line_start(start) : end])


def _comment_above(sf: SourceFile, sym: Symbol) -> tuple[int, str]:
    """The doc comment lines right above a definition (brace languages): their start offset and text."""
    start = sf.line_start(sf.char(sym.start_byte))
    pos = start
    while pos > 0:
        prev = sf.line_start(pos - 1)
        line = sf.text[prev : pos - 1].strip()
        if not line or not (line.startswith(_COMMENT_PREFIXES) or line.startswith("@")):
            break
        pos = prev
    return pos, sf.text[pos:start]


def documentation(sf: SourceFile, kit: RenderKit, rejected: Rejections, kinds: set[str]) -> Iterator[Instance]:
    """code_to_doc (the ``document`` chat task) and doc_to_code (``implement``) for documented functions."""
    s = kit.settings
    made = 0
    lang = sf.language.name
    for sym in sorted(sf.functions, key=lambda x: stable_rank(sf.path, "doc", x.start_line)):
        if made >= s.per_file:
            break
        if not sym.doc or len(sym.doc) < s.doc_min_chars:
            continue
        code = sf.symbol_text(sym)
        def_start = sf.char(sym.start_byte)
        indent = sf.text[sf.line_start(def_start) : def_start]
        indent = indent if not indent.strip() else ""

        def norm(text: str, indent: str = indent) -> str:
            return textwrap.dedent(indent + text).strip("\n")

        if lang == "python":
            node = sf.node(sym)
            body = node.child_by_field_name("body") if node is not None else None
            first = body.named_children[0] if body is not None and body.named_children else None
            if first is None or not _is_docstring(first):
                continue
            doc_line = sf.line_start(sf.char(first.start_byte))
            doc_start = doc_line - def_start
            doc_end = sf.text.find("\n", sf.char(first.end_byte)) + 1 - def_start
            if doc_start <= 0 or doc_end <= doc_start:
                continue
            body_indent = sf.text[doc_line : sf.char(first.start_byte)]
            undocumented = norm(code[:doc_start] + code[doc_end:])
            documented = norm(code)
            stub = norm(code[:doc_end].rstrip() + "\n" + body_indent + "...")
        else:
            _, comment = _comment_above(sf, sym)
            if not comment.strip():
                continue
            undocumented = norm(code)
            documented = textwrap.dedent(comment + indent + code).strip("\n")
            stub = textwrap.dedent(comment + indent + code.split("{", 1)[0].rstrip()).strip("\n")
        if not _gate(sf, sym, "code_to_doc" if "code_to_doc" in kinds else "doc_to_code", s, rejected):
            continue
        lines = documented.count("\n") + 1
        if lines > s.block_max_lines * 2:
            rejected.add("size:block_lines", "code_to_doc")
            continue
        made += 1
        target = f"```{lang}\n{documented}\n```"
        for kind, template, given in (
            ("code_to_doc", "document", undocumented),
            ("doc_to_code", "implement", stub),
        ):
            if kind not in kinds:
                continue
            inst = kit.chat(sf, kind, template, {"code": given}, target)
            inst.start_line, inst.end_line = sym.start_line, sym.end_line
            inst.unit = code
            yield inst.finish()
