"""Fit a chat task's prompt into the serving model's window, counted with that model's own tokenizer.

A task's prompt is instructions plus material (code, a diff, retrieved sources, related definitions, an example
test) and the answer needs room too. When it all does not fit, the least useful material goes first: lists lose
their last (lowest-ranked) items down to the few the task cannot do without (ask keeps one source), then the
example goes, then the answer's budget shrinks down to a floor, and last the long texts (and the texts of the
remaining list items) keep their head and say how much was cut. A request that still cannot fit is a clear error,
never a 400 from deep inside the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgepilot.context.builder import take_head
from forgepilot.context.types import Snippet
from forgepilot.errors import UserError
from forgepilot.prompts import RenderedPrompt

#: Tokens a chat template adds around a system and a user message (role headers, turn markers).
CHAT_OVERHEAD_TOKENS = 48
#: The answer keeps at least this many tokens (or what was asked, if less) before any material is cut.
MIN_ANSWER_TOKENS = 256
#: Lists shortened from their end (their items are in rank order), down to the items a task needs, and optional
#: texts dropped whole.
LIST_MINIMUM = {"sources": 1, "context": 0}
OPTIONAL_TEXTS = ("example",)
#: Texts cut to their head as the last resort, in this order (the question last: it is what was asked).
CUTTABLE_TEXTS = ("diff", "code", "instruction", "question")


@dataclass
class Fitted:
    prompt: RenderedPrompt
    max_tokens: int
    prompt_tokens: int
    #: The variables as finally rendered (lists shortened, texts cut).
    variables: dict[str, Any]
    #: What was left out to fit, in words (returned to the client, so an answer on cut material says so).
    trimmed: list[str] = field(default_factory=list)


def _cut(text: str, over: int, count: Callable[[str], int]) -> tuple[str, int]:
    """``text`` less about ``over`` tokens: its head in whole lines, and a line saying how much was cut."""
    keep = max(count(text) - over - 16, 0)
    head, _ = take_head(text, keep, count)
    cut = text.count("\n") - head.count("\n")
    return head + f"\n[... {max(cut, 1)} more lines cut to fit the model's context window ...]\n", head.count("\n")


def fit_prompt(
    render: Callable[[dict[str, Any]], RenderedPrompt],
    variables: dict[str, Any],
    *,
    count: Callable[[str], int],
    window: int,
    max_tokens: int,
) -> Fitted:
    """Render ``variables`` and shrink them until prompt + answer fit ``window`` tokens."""
    variables = dict(variables)
    trimmed: list[str] = []

    def size(p: RenderedPrompt) -> int:
        return count(p.system or "") + count(p.user) + CHAT_OVERHEAD_TOKENS

    prompt = render(variables)
    tokens = size(prompt)
    for key, keep_at_least in LIST_MINIMUM.items():
        items = variables.get(key)
        while tokens + max_tokens > window and isinstance(items, list) and len(items) > keep_at_least:
            items = items[:-1]
            variables[key] = items
            prompt = render(variables)
            tokens = size(prompt)
            trimmed.append(f"dropped {key} item {len(items) + 1}")
    for key in OPTIONAL_TEXTS:
        if tokens + max_tokens > window and variables.get(key):
            variables[key] = ""
            prompt = render(variables)
            tokens = size(prompt)
            trimmed.append(f"dropped the {key}")
    floor = min(max_tokens, MIN_ANSWER_TOKENS)
    if tokens + max_tokens > window:
        max_tokens = max(floor, window - tokens)
    # Supporting material (the texts of the list items kept) is cut before the task's own input.
    for key in LIST_MINIMUM:
        items = variables.get(key)
        for i in reversed(range(len(items) if isinstance(items, list) else 0)):
            over = tokens + max_tokens - window
            if over <= 0:
                break
            assert isinstance(items, list)
            item = items[i]
            if isinstance(item, Snippet):
                cut, kept = _cut(item.text, over, count)
                items = [*items[:i], dataclasses.replace(item, text=cut), *items[i + 1 :]]
                variables[key] = items
                prompt = render(variables)
                tokens = size(prompt)
                trimmed.append(f"cut {key} item {i + 1} to its first {kept} lines")
    for key in CUTTABLE_TEXTS:
        over = tokens + max_tokens - window
        text = variables.get(key)
        if over > 0 and isinstance(text, str) and text:
            variables[key], kept = _cut(text, over, count)
            prompt = render(variables)
            tokens = size(prompt)
            trimmed.append(f"cut the {key} to its first {kept} lines")
    if tokens + max_tokens > window:
        raise UserError(
            f"the task's instructions alone need {tokens} tokens and the model's window holds {window}",
            hint="use a model with a larger context window (or raise llama.n_ctx)",
        )
    return Fitted(prompt, max_tokens, tokens, variables, trimmed)
