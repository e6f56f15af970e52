"""Dataset instances as token sequences to train on, exactly as serving sends them, with the prompt masked.

Completion instances train on their FIM prompt (``fim_segments``: markers tokenized as control tokens, code as
plain text, piece by piece like the llama.cpp backend) followed by the answer and the format's end of text.
Chat instances (tests, docs, commit messages, distilled problems) train on the model's own chat template with the
answer and the end of the assistant turn. Answer tokens carry the loss; a completion prompt's code tokens are kept
apart (``code_labels``) for a run that also trains on them at a smaller weight (``[train] prompt_loss_weight``).

Text that spells a control token (``<|endoftext|>`` in a repository's file) would become one if parsed, and is
only safe as plain text: instances carrying such text are left out and counted rather than trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from forgepilot.backends.fim import FimTemplate
from forgepilot.backends.llamacpp import CHAT_TURN_ENDS
from forgepilot.datagen.types import COMPLETION_KINDS, Instance

IGNORE = -100  # the label torch's cross-entropy skips


@dataclass(frozen=True)
class Example:
    id: str
    kind: str
    input_ids: list[int]
    labels: list[int]
    #: The prompt's code tokens (prefix, suffix, context: repository text) where they are, ``IGNORE`` elsewhere
    #: (the format's markers, the answer, every chat token); empty when none.
    code_labels: list[int] = field(default_factory=list)

    @property
    def answer_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class Encoded:
    examples: list[Example] = field(default_factory=list)
    #: Instances left out, by reason (``control_token_text``, ``too_long``, ``no_fim_prompt``, ``empty_answer``).
    skipped: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)


class Encoder:
    def __init__(self, tokenizer: Any, template: FimTemplate, *, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.max_tokens = max_tokens
        self.end_of_text = self._single_token(template.stop[0]) if template.stop else tokenizer.eos_token_id
        ends = CHAT_TURN_ENDS.get(template.family)
        self.end_of_turn = self._single_token(ends[0]) if ends else tokenizer.eos_token_id

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"{text!r} is not one token of this model's vocabulary (family {self.template.family})")
        return int(ids[0])

    def plain(self, text: str) -> list[int]:
        """``text`` as plain text: a control-token spelling in it is split like any other text."""
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids)

    def control(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids) if text else []

    def _spells_control(self, *texts: str) -> bool:
        return any(self.template.defang(t) != t for t in texts if t)

    def encode(self, inst: Instance) -> Example | str:
        """The example, or why the instance is left out."""
        if inst.kind in COMPLETION_KINDS:
            pieces = _segments(inst, self.template)
            if pieces is None:
                return "no_fim_prompt"
            texts = [t for t, control in pieces if not control]
            texts += [inst.completion, inst.prefix, inst.suffix, *(str(c.get("text", "")) for c in inst.context)]
            if self._spells_control(*texts):
                return "control_token_text"
            prompt, code = [], []
            for text, control in pieces:
                tokens = self.control(text) if control else self.plain(text)
                prompt += tokens
                code += [IGNORE] * len(tokens) if control else tokens
            answer = self.plain(inst.fim_indent + inst.completion) + [self.end_of_text]
        else:
            if self._spells_control(inst.system, inst.prompt, inst.completion):
                return "control_token_text"
            messages = ([{"role": "system", "content": inst.system}] if inst.system else []) + [
                {"role": "user", "content": inst.prompt}
            ]
            rendered = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            prompt = self.control(rendered)
            code = []
            answer = self.plain(inst.completion) + [self.end_of_turn]
        if len(answer) <= 1:
            return "empty_answer"
        if len(prompt) + len(answer) > self.max_tokens:
            return "too_long"
        code_labels = code + [IGNORE] * len(answer) if code else []
        return Example(inst.id, inst.kind, prompt + answer, [IGNORE] * len(prompt) + answer, code_labels)

    def encode_all(self, instances: Iterable[Instance]) -> Encoded:
        out = Encoded()
        for inst in instances:
            got = self.encode(inst)
            if isinstance(got, str):
                out.skipped[got] += 1
            else:
                out.examples.append(got)
                out.by_kind[inst.kind] += 1
        return out


def _segments(inst: Instance, template: FimTemplate) -> Sequence[tuple[str, bool]] | None:
    """The serving prompt in pieces; datasets written before ``fim_segments`` are split at the format's markers."""
    if inst.fim_segments:
        return [(str(t), bool(c)) for t, c in inst.fim_segments]
    if not inst.fim_prompt:
        return None
    pieces: list[tuple[str, bool]] = []
    rest = inst.fim_prompt
    markers = sorted(template.special_tokens, key=len, reverse=True)
    while rest:
        hits = [(rest.find(m), m) for m in markers if m in rest]
        if not hits:
            pieces.append((rest, False))
            break
        at, marker = min(hits)
        if at:
            pieces.append((rest[:at], False))
        pieces.append((marker, True))
        rest = rest[at + len(marker) :]
    return pieces
