"""Completions while typing: what the user types of a suggestion is answered by the rest of it, at once."""

from __future__ import annotations

from pathlib import Path

from forgepilot.assist import Assistant, CompletionInput
from forgepilot.backends.fake import FakeBackend
from forgepilot.config import load_settings
from forgepilot.context import Document, OpenFile


async def test_typing_a_suggestion_is_answered_by_the_rest_of_it(isolated_state: Path) -> None:
    backend = FakeBackend("fake:coder", replies=lambda prompt: "total = price * quantity\n")
    assistant = Assistant(load_settings(), workspace=None, preset={backend.name: backend})
    head, tail = "def cost(price, quantity):\n    ", "\n    return total\n"

    async def at(typed: str, **kw: object) -> object:
        doc = Document.at("shop.py", head + typed + tail, offset=len(head) + len(typed), language="python")
        return await assistant.completions.complete(CompletionInput(document=doc, model=backend.name, **kw))  # type: ignore[arg-type]

    first = await at("")
    assert first.text == "total = price * quantity" and len(backend.prompts) == 1  # type: ignore[attr-defined]
    ahead = await at("total = pr")
    assert ahead.text == "ice * quantity" and ahead.cached and "typed_ahead" in ahead.steps  # type: ignore[attr-defined]
    assert len(backend.prompts) == 1  # no model call
    further = await at("total = price * ")
    assert further.text == "quantity" and len(backend.prompts) == 1  # type: ignore[attr-defined]
    # A character the suggestion did not have: the model is asked again.
    await at("total = pe")
    assert len(backend.prompts) == 2
    # Other open files are another request, even where the user typed along.
    await at("")
    await at("total = pr", recent=[OpenFile("other.py", "x = 1\n")])
    assert len(backend.prompts) == 3
    # Sampling at a temperature never reuses an answer.
    await at("total = pr", temperature=0.7)
    assert len(backend.prompts) == 4
    await assistant.aclose()
