"""The records data generation writes: one ``Instance`` per training example, schema-versioned JSONL."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

SCHEMA_VERSION = 1
Kind = Literal[
    "inline",
    "in_block",
    "after_block",
    "crossfile_line",
    "crossfile_api",
    "tests",
    "code_to_doc",
    "doc_to_code",
    "commit",
    "distilled",
]
#: Every kind ``dataset build`` can make (the default set is ``[dataset] kinds``; the cross-file holes are asked
#: for by name: they make evaluation suites of repository context). Distilled instances come from a teacher.
KINDS: tuple[Kind, ...] = tuple(k for k in get_args(Kind) if k != "distilled")
#: What a build makes unless told otherwise (the training kinds; ``[dataset] kinds`` for the CLI).
DEFAULT_KINDS: tuple[Kind, ...] = ("inline", "in_block", "after_block", "tests", "code_to_doc", "doc_to_code", "commit")
COMPLETION_KINDS: frozenset[str] = frozenset({"inline", "in_block", "after_block", "crossfile_line", "crossfile_api"})
#: Completion kinds whose hole ends with its line (served in inline mode).
LINE_KINDS: frozenset[str] = frozenset({"inline", "crossfile_line", "crossfile_api"})


@dataclass
class Instance:
    """One example: what the model is shown (``system``/``prompt``) and what it should answer (``completion``).

    Completion kinds (inline, in-block, after-block) keep the serving path's FIM pieces too: ``fim_prompt`` is the
    exact text the serving backend sends for the configured model family (context snippets included), and
    ``prefix``/``suffix`` the file around the hole. Chat kinds have a system and a user message rendered from the
    same templates as the chat tasks.
    """

    kind: str
    language: str
    repository: str
    path: str
    start_line: int  # 1-based span of the target in the source file
    end_line: int
    system: str
    prompt: str
    completion: str
    template: dict[str, str]
    prefix: str = ""
    suffix: str = ""
    fim_prompt: str = ""
    #: ``fim_prompt`` as the serving backend tokenizes it: ``[text, is_control]`` pieces (markers apart from code),
    #: so training tokenizes exactly what serving sends.
    fim_segments: list[list[Any]] = field(default_factory=list)
    #: Whitespace the serving prompt holds back (``ContextResult.indent``): the FIM target starts with it.
    fim_indent: str = ""
    format: str = "chat"  # repo-level, comment-snippets, plain (completion kinds) or chat
    context: list[dict[str, Any]] = field(default_factory=list)
    #: Files the instance draws on besides ``path`` (a test file, the files of a commit): splits keep them together.
    related_paths: list[str] = field(default_factory=list)
    source_commit: str | None = None
    source_sha256: str = ""
    tokens: int = 0
    split: str = ""
    #: The code unit the instance was cut from (a function, a test, a diff): what dedup compares.
    unit: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    id: str = ""

    def finish(self) -> Instance:
        """Give the instance its content id (same source, same cut, same text: same id)."""
        h = hashlib.sha256()
        for part in (self.kind, self.repository, self.path, str(self.start_line), self.prompt, self.completion):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        self.id = h.hexdigest()[:20]
        return self

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("unit")
        return out

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Instance:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"instance schema {data.get('schema_version')} is not {SCHEMA_VERSION}")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Rejections:
    """Counts of what the gates and hygiene removed, by reason (``gate:detail``) and by kind."""

    by_reason: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, reason: str, kind: str = "file", n: int = 1) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + n
        per = self.by_kind.setdefault(kind, {})
        per[reason] = per.get(reason, 0) + n

    def merge(self, other: Rejections) -> None:
        for kind, reasons in other.by_kind.items():
            for reason, n in reasons.items():
                self.add(reason, kind, n)

    def total(self) -> int:
        return sum(self.by_reason.values())
