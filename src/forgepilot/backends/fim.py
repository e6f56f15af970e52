"""Fill-in-the-middle templates per model family, selected by the family a model *declares*.

Guessing a template from a substring of the model's name is how other tools leak FIM tokens into completions
silently; here an unknown family is an error. Every FIM family we know is prefix-suffix-middle (PSM): the prompt
is ``open + prefix + between + suffix + close``, built as ``Segment``s rather than formatted, so that the markers
are the only control tokens: code containing ``<|fim_middle|>`` or braces is text and renders verbatim.

For servers that tokenize a prompt string with its special tokens parsed (vLLM, TGI, llama.cpp servers), text
segments go out ``defang``ed: every control-token spelling of the family in them is broken by a word joiner (U+2060),
so the server reads it as ordinary text too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from forgepilot.backends.base import Segment, prompt_text
from forgepilot.errors import UnknownModelFamily, UserError

#: Put inside a control-token spelling found in text (after its first character): no tokenizer matches it then.
_BREAK = "\u2060"
# Spellings shaped like control tokens in every family we know: <|name|> (Qwen, CodeGemma, GPT), <｜name｜>
# (DeepSeek), <name> and </name> of the StarCoder / CodeLlama / Gemma families are listed per family.
_GENERIC_CONTROL = re.compile(r"<\|[^\s<>|]{1,64}\|>|<｜[^\s<>｜]{1,64}｜>")


def defang(text: str, tokens: Sequence[str] = ()) -> str:
    """``text`` with every control-token spelling (generic shapes and ``tokens``) broken so no tokenizer parses it."""
    text = _GENERIC_CONTROL.sub(lambda m: m.group(0)[0] + _BREAK + m.group(0)[1:], text)
    for token in tokens:
        if token in text:
            text = text.replace(token, token[0] + _BREAK + token[1:])
    return text


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
    #: Every spelling the family's tokenizers read as a control token beyond the ``<|x|>`` / ``<｜x｜>`` shapes
    #: (chat turns, end of text): what ``defang`` breaks in text sent to a server as a string.
    control_tokens: tuple[str, ...] = ()

    def segments(self, prefix: str, suffix: str | None = None) -> tuple[Segment, ...]:
        """The prompt for completing at the point between ``prefix`` and ``suffix``, markers apart from text."""
        if not self.supports_fim:
            return (Segment(prefix),)
        return (
            Segment(self.open, control=True),
            Segment(prefix),
            Segment(self.between, control=True),
            Segment(suffix or ""),
            Segment(self.close, control=True),
        )

    def render(self, prefix: str, suffix: str | None = None) -> str:
        """The prompt as one string (datasets and logs; models get ``segments``)."""
        return prompt_text(self.segments(prefix, suffix))

    @property
    def supports_repo_level(self) -> bool:
        return self.repo is not None

    def repo_segments(
        self, repo_name: str, files: Sequence[RepoFile], path: str, prefix: str, suffix: str | None = None
    ) -> tuple[Segment, ...]:
        """A repository-level prompt: other files first, then the current file with the FIM hole (or, with no
        ``suffix``, the current file's text to continue left to right). Names, paths and contents are text."""
        if self.repo is None:
            raise UserError(
                f"model family {self.family!r} has no repository-level format",
                hint="render context as comment-prefixed snippets instead",
            )
        fmt = self.repo
        parts = _substitute(fmt.repo_open, "{repo}", repo_name)
        for f in files:
            parts += _substitute(fmt.file_open, "{path}", f.path)
            parts += (Segment(f.content), Segment(fmt.file_close, control=True))
        parts += _substitute(fmt.file_open, "{path}", path)
        parts += self.segments(prefix, suffix) if suffix is not None else (Segment(prefix),)
        return tuple(s for s in parts if s.text)

    def render_repo(
        self, repo_name: str, files: Sequence[RepoFile], path: str, prefix: str, suffix: str | None = None
    ) -> str:
        return prompt_text(self.repo_segments(repo_name, files, path, prefix, suffix))

    def wire_text(self, segments: Sequence[Segment]) -> str:
        """The prompt as a string for a server that parses special tokens in it: markers kept, text defanged."""
        return "".join(s.text if s.control else self.defang(s.text) for s in segments)

    def defang(self, text: str) -> str:
        return defang(text, (*self.special_tokens, *self.control_tokens))


def _substitute(pattern: str, key: str, value: str) -> tuple[Segment, ...]:
    """A format piece (control) with ``key`` replaced by ``value`` (text: a repository name or a file path)."""
    head, found, tail = pattern.partition(key)
    if not found:
        return (Segment(pattern, control=True),)
    return (Segment(head, control=True), Segment(value), Segment(tail, control=True))


_GEMMA_CONTROL = ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>")

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
    control_tokens=("<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"),
)

_DEEPSEEK_CODER = FimTemplate(
    family="deepseek-coder",
    supports_fim=True,
    open="<｜fim▁begin｜>",
    between="<｜fim▁hole｜>",
    close="<｜fim▁end｜>",
    stop=("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    special_tokens=("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>"),
    control_tokens=("<｜begin▁of▁sentence｜>", "<|EOT|>"),
)

_STARCODER = FimTemplate(
    family="starcoder",
    supports_fim=True,
    open="<fim_prefix>",
    between="<fim_suffix>",
    close="<fim_middle>",
    stop=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<filename>"),
    special_tokens=("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<|endoftext|>"),
    control_tokens=(
        "<filename>",
        "<gh_stars>",
        "<issue_start>",
        "<issue_comment>",
        "<issue_closed>",
        "<jupyter_start>",
    ),
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
    control_tokens=("<|endoftext|>", "<filename>", "<gh_stars>", "<issue_start>", "<pr>", "<jupyter_start>"),
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
    control_tokens=("<s>", "</s>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"),
)

_CODEGEMMA = FimTemplate(
    family="codegemma",
    supports_fim=True,
    open="<|fim_prefix|>",
    between="<|fim_suffix|>",
    close="<|fim_middle|>",
    stop=("<|file_separator|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<eos>", "<end_of_turn>"),
    special_tokens=("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"),
    control_tokens=_GEMMA_CONTROL,
)

_LEFT_TO_RIGHT_CONTROL: dict[str, tuple[str, ...]] = {
    "gemma3": _GEMMA_CONTROL,
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "qwen2.5": ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    "gpt": ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
}


def _left_to_right(family: str) -> FimTemplate:
    return FimTemplate(family=family, supports_fim=False, control_tokens=_LEFT_TO_RIGHT_CONTROL.get(family, ()))


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
