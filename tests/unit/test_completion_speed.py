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


async def test_an_editor_typing_at_one_spot_keeps_its_snippets_and_evaluations_do_not(isolated_state: Path) -> None:
    backend = FakeBackend("fake:coder", replies=lambda prompt: "x\n")
    assistant = Assistant(load_settings(), workspace=None, preset={backend.name: backend})
    helper = OpenFile(
        "rates.py", "def shipping_rate(zone):\n    return RATES[zone]\n\n\ndef handling_fee(weight):\n    return 2\n"
    )
    lines = "def cost(weight, zone):\n    rate = shipping_rate(zone)\n    fee = handling_fee(weight)\n    return "

    async def at(typed: str, recent: list[OpenFile], **kw: object) -> object:
        text = lines + typed
        doc = Document.at("shop.py", text, offset=len(text), language="python")
        request = CompletionInput(document=doc, model=backend.name, recent=recent, use_cache=False, **kw)  # type: ignore[arg-type]
        return await assistant.completions.complete(request)

    first = await at("rate", [helper])
    assert first.snippets  # type: ignore[attr-defined]
    typing = await at("rate * weight + f", [helper])
    assert typing.snippets == first.snippets and "context.pinned" in typing.timings  # type: ignore[attr-defined]
    # The open file changed: its snippets are chosen again.
    edited = OpenFile("rates.py", helper.text.replace("return 2", "return 3"))
    again = await at("rate * weight + fe", [edited])
    assert "context.pinned" not in again.timings and "return 3" in again.snippets[0].text  # type: ignore[attr-defined]
    # Evaluation runs (batch) never pin: a case's context does not depend on the case before it.
    batch = await at("rate * weight + fee", [edited], priority="batch")
    assert "context.pinned" not in batch.timings  # type: ignore[attr-defined]
    await assistant.aclose()


async def test_suffix_first_layout_ends_the_prompt_at_the_cursor(isolated_state: Path) -> None:
    from forgepilot.config import ContextSettings

    backend = FakeBackend("fake:coder", replies=lambda prompt: " shipping_cost(w)\n")
    settings = load_settings()
    settings.context = ContextSettings(layout="suffix-first")
    assistant = Assistant(settings, workspace=None, preset={backend.name: backend})
    head, tail = "def cost(w):\n    total = ", "\n    return total\n"
    recent = [OpenFile("rates.py", "def shipping_cost(w):\n    return w * 2\n")]
    doc = Document.at("shop.py", head + tail, offset=len(head), language="python")
    result = await assistant.completions.complete(CompletionInput(document=doc, model=backend.name, recent=recent))
    prompt = backend.prompts[-1]
    # The text after the cursor comes first (as a file of its own), and the prompt ends where the user types: typing
    # only appends to it. The trailing space is held back for the model to write (" shipping_cost").
    assert "<|file_sep|>shop.py (after the cursor)\n\n    return total\n" in prompt
    assert prompt.endswith("<|file_sep|>shop.py\ndef cost(w):\n    total =") and "<|fim_middle|>" not in prompt
    assert result.text == "shipping_cost(w)"
    await assistant.aclose()
