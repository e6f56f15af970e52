"""Completions while typing: what the user types of a suggestion is answered by the rest of it, at once."""

from __future__ import annotations

import os
from pathlib import Path

from forgepilot.assist import Assistant, CompletionInput
from forgepilot.backends.fake import FakeBackend, fake_tokens
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


LONG = "".join(f"def step_{i}(value):\n    return value * {i} + {i}\n\n\n" for i in range(60))


def _warm_assistant(layout: str = "fim", **assist: object) -> tuple[Assistant, FakeBackend]:
    backend = FakeBackend("fake:coder", replies=lambda prompt: "value + 1\n", warmable=True)
    settings = load_settings()
    settings.assist = settings.assist.model_copy(update=assist)
    # With fill-in-the-middle every keystroke evaluates the text after the cursor again: two lines of it keep a
    # keystroke under the limit.
    settings.context = settings.context.model_copy(update={"suffix_max_lines": 2, "layout": layout})
    return Assistant(settings, workspace=None, preset={backend.name: backend}), backend


def _typing_step_40(extra: str) -> Document:
    """LONG with ``def step_40(value):`` being typed again, the cursor after ``extra`` in its body's first line."""
    spot = LONG.index("def step_40")
    typed = "def step_40(value):\n    return "
    text = LONG[:spot] + typed + extra + LONG[spot + len(typed) :]
    return Document.at("steps.py", text, offset=spot + len(typed) + len(extra), language="python")


async def _settle(assistant: Assistant) -> None:
    """Wait for the background warms the requests started."""
    import asyncio

    for _ in range(200):
        if not any(not t.done() for _, t in assistant.completions.warmer._running.values()):
            return
        await asyncio.sleep(0.01)


async def test_a_cold_spot_is_answered_from_a_short_prompt_while_the_full_one_warms(isolated_state: Path) -> None:
    assistant, backend = _warm_assistant(cold_prompt_tokens=64)
    first = await assistant.completions.complete(CompletionInput(document=_typing_step_40(""), model=backend.name))
    assert "cold_start" in first.steps
    assert len(fake_tokens(backend.prompts[-1])) <= 64 + 8  # the short in-file prompt, not the full one
    await _settle(assistant)
    assert backend.warmed, "the full prompt's start was warmed in the background"
    # The next keystroke finds the full prompt's start cached: it gets the whole window.
    second = await assistant.completions.complete(CompletionInput(document=_typing_step_40("v"), model=backend.name))
    assert "cold_start" not in second.steps
    assert len(fake_tokens(backend.prompts[-1])) > 200
    assert backend.prompts[-1].startswith(backend.warmed[0][: len(backend.warmed[0]) // 2])
    await assistant.aclose()


async def test_suffix_first_warms_the_whole_prompt_that_typing_then_appends_to(isolated_state: Path) -> None:
    assistant, backend = _warm_assistant("suffix-first", cold_prompt_tokens=64)
    first = await assistant.completions.complete(CompletionInput(document=_typing_step_40(""), model=backend.name))
    assert "cold_start" in first.steps
    await _settle(assistant)
    (warmed,) = backend.warmed
    # The warm is the full prompt at the spot: the text after the cursor first, the file down to the cursor last.
    assert "<|file_sep|>steps.py (after the cursor)\n" in warmed and warmed.endswith("def step_40(value):\n    return")
    # Typing appends to it: the next keystrokes' prompts start with all of it.
    for extra in ("v", "val", "value "):
        answer = await assistant.completions.complete(
            CompletionInput(document=_typing_step_40(extra), model=backend.name)
        )
        assert "cold_start" not in answer.steps
        assert backend.prompts[-1].startswith(warmed), extra
    await assistant.aclose()


async def test_prepare_warms_what_every_prompt_in_the_window_starts_with(isolated_state: Path) -> None:
    assistant, backend = _warm_assistant(cold_prompt_tokens=None)
    opened = Document.at("steps.py", LONG, offset=0, language="python")
    assert await assistant.completions.prepare(CompletionInput(document=opened, model=backend.name))
    assert not await assistant.completions.prepare(CompletionInput(document=opened, model=backend.name))  # recent
    warmed = backend.warmed[-1]
    for line in (3, 40, 90):
        cursor = sum(len(x) + 1 for x in LONG.split("\n")[:line]) + 4
        doc = Document.at("steps.py", LONG, offset=cursor, language="python")
        await assistant.completions.complete(CompletionInput(document=doc, model=backend.name, use_cache=False))
        prompt = backend.prompts[-1]
        head = prompt[: prompt.index("<|fim_suffix|>")]
        # Everything before the cursor's line is what was warmed.
        shared = len(os.path.commonprefix([head, warmed]))
        assert shared >= len(head) - 40, (line, shared, len(head))
    await assistant.aclose()


async def test_evaluations_neither_cold_start_nor_warm(isolated_state: Path) -> None:
    assistant, backend = _warm_assistant(cold_prompt_tokens=16)
    doc = Document.at("steps.py", LONG, offset=LONG.index("def step_30"), language="python")
    batch = await assistant.completions.complete(
        CompletionInput(document=doc, model=backend.name, priority="batch", use_cache=False)
    )
    await _settle(assistant)
    assert "cold_start" not in batch.steps and not backend.warmed
    await assistant.aclose()


async def test_the_editor_engine_warms_an_opened_file(isolated_state: Path) -> None:
    from forgepilot.lsp.engine import InProcessEngine

    assistant, backend = _warm_assistant()
    assistant.models.settings.default_model = backend.name  # the engine asks for the default model
    engine = InProcessEngine(assistant, monitoring=None)
    opened = Document.at("steps.py", LONG, offset=0, language="python")
    assert await engine.prepare(opened, [])
    await _settle(assistant)
    assert len(backend.warmed) == 1 and "<|file_sep|>steps.py\n<|fim_prefix|>def step_0(value):" in backend.warmed[0]
    await engine.aclose()


async def test_a_warm_for_another_part_of_the_file_replaces_the_running_one() -> None:
    import asyncio

    from forgepilot.assist.warming import Warmer

    warmer = Warmer(interval_s=20.0)
    ran: list[str] = []

    async def slow(name: str) -> None:
        await asyncio.sleep(0.2)
        ran.append(name)

    assert warmer.start("a.py", 0, lambda: slow("top"))
    assert not warmer.start("a.py", 0, lambda: slow("top again"))  # the same region: already warming
    assert warmer.start("a.py", 5, lambda: slow("line 250"))  # the cursor moved far: that one is cancelled
    assert warmer.start("b.py", 0, lambda: slow("other file"))
    await asyncio.sleep(0.4)
    assert sorted(ran) == ["line 250", "other file"]
    assert not warmer.running("a.py") and warmer.finished == 2
    await warmer.aclose()
