"""Fill-in-the-middle templates per model family, selected by the family a model *declares*.

Guessing a template from a substring of the model's name is how other tools leak FIM tokens into completions
silently; here an unknown family is an error. Every FIM family we know is prefix-suffix-middle (PSM): the prompt
is ``open + prefix + between + suffix + close``, split into pieces rather than formatted so code containing
braces or placeholder-like text renders verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from forgepilot.errors import UnknownModelFamily, UserError


@dataclass(frozen=True)
class RepoFile:
    """Another file of the repository shown to the model before the current one (repo-level prompts)."""

    path: str
    content: str


@dataclass(frozen=True)
class RepoFormat:
    """How a family lays out several files of one repository: ``repo_open``, then per file ``file_open``..."""

    repo_open: str  # with "{repo}" replaced by the repository name
    file_open: str  # with "{path}" replaced by the file path
    file_close: str


@dataclass(frozen=True)
class FimTemplate:
    family: str
    #: ``False`` for left-to-right models: the suffix is dropped and the prompt is the prefix alone.
    supports_fim: bool
    open: str = ""
    between: str = ""
    close: str = ""
    #: Text that ends a completion in this format (end-of-text and any control token the model may emit).
    stop: tuple[str, ...] = ()
    #: Control tokens the format relies on; each must be a single token of the model's vocabulary.
    special_tokens: tuple[str, ...] = ()
    repo: RepoFormat | None = None

    def render(self, prefix: str, suffix: str | None = None) -> str:
        """The prompt for completing at the point between ``prefix`` and ``suffix``."""
        if not self.supports_fim:
            return prefix
        return f"{self.open}{prefix}{self.between}{suffix or ''}{self.close}"

    @property
    def supports_repo_level(self) -> bool:
        return self.repo is not None

    def render_repo(
        self, repo_name: str, files: Sequence[RepoFile], path: str, prefix: str, suffix: str | None = None
    ) -> str:
        """A repository-level prompt: other files first, then the current file with the FIM hole (or, with no
        ``suffix``, the current file's text to continue left to right)."""
        if self.repo is None:
            raise UserError(
                f"model family {self.family!r} has no repository-level format",
                hint="render context as comment-prefixed snippets instead",
            )
        fmt = self.repo
        parts = [_substitute(fmt.repo_open, "{repo}", repo_name)]
        for f in files:
            parts.append(_substitute(fmt.file_open, "{path}", f.path))
            parts.append(f.content)
            parts.append(fmt.file_close)
        parts.append(_substitute(fmt.file_open, "{path}", path))
        parts.append(self.render(prefix, suffix) if suffix is not None else prefix)
        return "".join(parts)


def _substitute(pattern: str, key: str, value: str) -> str:
    head, _, tail = pattern.partition(key)
    return head + value + tail if _ else pattern


_QWEN_CODER = FimTemplate(
    family="qwen2.5-coder",
    supports_fim=True,
    open="<|fim_prefix|>",
    between="<|fim_suffix|>",
    close="<|fim_middle|>",
    stop=(
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|im_end|>",
    ),
    special_tokens=(
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|endoftext|>",
    ),
    repo=RepoFormat(repo_open="<|repo_name|>{repo}\n", file_open="<|file_sep|>{path}\n", file_close="\n"),
)

_DEEPSEEK_CODER = FimTemplate(
    family="deepseek-coder",
    supports_fim=True,
    open="<｜fim▁begin｜>",
    between="<｜fim▁hole｜>",
    close="<｜fim▁end｜>",
    stop=("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    special_tokens=("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>"),
)

_STARCODER = FimTemplate(
    family="starcoder",
    supports_fim=True,
    open="<fim_prefix>",
    between="<fim_suffix>",
    close="<fim_middle>",
    stop=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<filename>"),
    special_tokens=("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<|endoftext|>"),
)

_STARCODER2 = FimTemplate(
    family="starcoder2",
    supports_fim=True,
    open="<fim_prefix>",
    between="<fim_suffix>",
    close="<fim_middle>",
    stop=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<file_sep>", "<repo_name>"),
    special_tokens=("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<file_sep>", "<repo_name>"),
    repo=RepoFormat(repo_open="<repo_name>{repo}", file_open="<file_sep>{path}\n", file_close=""),
)

_CODELLAMA = FimTemplate(
    family="codellama",
    supports_fim=True,
    # The spaces are part of the format the model was trained on (model card: "<PRE> {pre} <SUF>{suf} <MID>").
    open="<PRE> ",
    between=" <SUF>",
    close=" <MID>",
    stop=("<EOT>", "</s>", "<PRE>", "<SUF>", "<MID>"),
    special_tokens=("<PRE>", "<SUF>", "<MID>", "<EOT>"),
)

_CODEGEMMA = FimTemplate(
    family="codegemma",
    supports_fim=True,
    open="<|fim_prefix|>",
    between="<|fim_suffix|>",
    close="<|fim_middle|>",
    stop=("<|file_separator|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<eos>", "<end_of_turn>"),
    special_tokens=("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"),
)


def _left_to_right(family: str) -> FimTemplate:
    return FimTemplate(family=family, supports_fim=False)


_TEMPLATES: dict[str, FimTemplate] = {
    t.family: t for t in (_QWEN_CODER, _DEEPSEEK_CODER, _STARCODER, _STARCODER2, _CODELLAMA, _CODEGEMMA)
}
# Families known to have no FIM training: completion is plain left-to-right continuation of the prefix.
for _family in ("plain", "gemma3", "llama3", "qwen2.5", "gpt"):
    _TEMPLATES[_family] = _left_to_right(_family)


def known_families() -> list[str]:
    return sorted(_TEMPLATES)


def fim_template(family: str) -> FimTemplate:
    """The template for a declared family; an unknown family is an error, never a silent default."""
    try:
        return _TEMPLATES[family]
    except KeyError:
        raise UnknownModelFamily(family, known_families()) from None
