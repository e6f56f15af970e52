"""Lay chosen snippets out in the prompt format of the serving model's family.

Families with a repository-level format (Qwen2.5-Coder's ``<|repo_name|>`` / ``<|file_sep|>path``, StarCoder2's)
get each snippet as a file of the repository before the current one, which is how they were trained. Every other
family gets the snippets as line comments above the prefix (``# Compare this snippet from path:``), rendered from
the versioned ``complete`` template, and the backend applies its FIM template to prefix and suffix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forgepilot.backends.base import Segment, prompt_text
from forgepilot.backends.fim import FimTemplate, RepoFile
from forgepilot.context.types import Snippet
from forgepilot.prompts import PromptRegistry, builtin_registry

COMPLETE_TEMPLATE = "complete"


@dataclass(frozen=True)
class Rendered:
    prompt: str
    suffix: str | None
    #: The whole model-specific prompt (repository-level format), markers apart from text; None when the backend
    #: applies its own FIM template to ``prompt`` and ``suffix``.
    segments: tuple[Segment, ...] | None
    format: str
    template: dict[str, str]


def render_completion(
    template: FimTemplate,
    *,
    path: str,
    prefix: str,
    suffix: str,
    snippets: Sequence[Snippet],
    comment: str | None,
    repo_name: str | None,
    prompts: PromptRegistry | None = None,
    layout: str = "fim",
    snippet_format: str = "repo-level",
) -> Rendered:
    prompts = prompts or builtin_registry()
    # Nothing after a cursor at the start of a line: fill-in-the-middle has no middle to fill, and code models
    # continue the end of a file better left to right (Qwen2.5-Coder-0.5B: 7/10 vs 4/10 on the first HumanEval
    # problems). Mid-line, FIM stays: a left-to-right prompt ending inside a line splits the tokens the model
    # would write there (it answers " 1" after "x = "). After indentation alone the prompt ends in all of its
    # spaces but the last, which the context builder holds back for the model to write.
    at_line_start = not prefix or prefix.endswith("\n")
    fill: str | None = suffix if suffix.strip() or not at_line_start or not template.supports_fim else None
    # Models attend most to what is nearest the cursor: the best snippet goes last, just before the current file.
    snippets = list(reversed(snippets))
    if layout != "fim":
        # Left to right: the prompt ends at the cursor. Suffix-first shows the text after the cursor just before it.
        fill = None if template.supports_fim else fill
        if layout == "suffix-first" and suffix.strip():
            snippets.append(Snippet("suffix", f"{path} (after the cursor)", 0, 0, suffix, 1.0))
    complete = prompts.get(COMPLETE_TEMPLATE)
    record = {"template_id": complete.name, "template_version": complete.version}
    if _repo_level(template, snippet_format):
        files = [RepoFile(s.path, s.text) for s in snippets]
        if fill is None and not files:
            return Rendered(prefix, None, None, "plain", record)
        segments = template.repo_segments(repo_name or "repository", files, path, prefix, fill)
        return Rendered(prompt_text(segments), None, segments, "repo-level", record)
    if snippets and comment:
        return Rendered(_header(prompts, snippets, comment, path) + prefix, fill, None, "comment-snippets", record)
    return Rendered(prefix, fill, None, "plain", record)


def _repo_level(template: FimTemplate, snippet_format: str) -> bool:
    """Whether snippets go in as files of the model's repository-level format (else as a comment header)."""
    return template.supports_repo_level and template.supports_fim and snippet_format == "repo-level"


def _header(prompts: PromptRegistry, snippets: Sequence[Snippet], comment: str, path: str) -> str:
    """The snippets as a comment header: text (the template's words around them) that reaches the model as such."""
    return prompts.render(COMPLETE_TEMPLATE, {"snippets": snippets, "comment": comment, "path": path}).user


def render_warm(
    template: FimTemplate,
    *,
    path: str,
    window: str,
    snippets: Sequence[Snippet],
    comment: str | None,
    repo_name: str | None,
    prompts: PromptRegistry | None = None,
    snippet_format: str = "repo-level",
) -> tuple[Segment, ...]:
    """The start every fill-in-the-middle prompt in this file's prefix window shares: the context, then the window's
    text up to its end (``window``), as ``render_completion`` lays them out. Evaluated ahead of time (the model's
    cache keeps it), a request anywhere in the window evaluates only the cursor's line and the text after it.
    """
    prompts = prompts or builtin_registry()
    ordered = list(reversed(snippets))  # as render_completion orders them
    if _repo_level(template, snippet_format):
        files = [RepoFile(s.path, s.text) for s in ordered]
        full = template.repo_segments(repo_name or "repository", files, path, window, "")
        # The request's segments end with the window's text, then the markers around the (empty) suffix.
        markers = sum(1 for marker in (template.between, template.close) if marker)
        return full[: len(full) - markers]
    header = _header(prompts, ordered, comment, path) if snippets and comment else ""
    if template.supports_fim:
        return tuple(s for s in (Segment(template.open, control=True), Segment(header + window)) if s.text)
    return (Segment(header + window),)
