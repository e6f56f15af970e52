"""Control tokens come only from templates: for every family, a document, snippet, path or chat message holding
every special token of that family reaches the model as plain text (segments in-process, defanged on the wire)."""

from __future__ import annotations

import json

import httpx
import pytest

from forgepilot.backends import ChatMessage, ChatRequest, CompletionRequest, fim_template, known_families
from forgepilot.backends.fim import FimTemplate, RepoFile, defang
from forgepilot.backends.openai_http import OpenAICompatibleBackend
from forgepilot.backends.providers import provider_profile
from forgepilot.context import ContextBuilder, Document, OpenFile
from forgepilot.context.render import render_completion
from forgepilot.context.types import Snippet

FAMILIES = known_families()


def every_token(t: FimTemplate) -> list[str]:
    markers = [m for m in (t.open, t.between, t.close) if m]
    return sorted({*t.special_tokens, *t.stop, *t.control_tokens, *(m.strip() for m in markers)} - {""})


def hostile(t: FimTemplate) -> str:
    """Code that spells every control token of the family, the way this repository's own fim.py does."""
    return "".join(f"x{i} = '{tok}'\n" for i, tok in enumerate(every_token(t)))


def control_text(segments: tuple) -> str:  # type: ignore[type-arg]
    return "".join(s.text for s in segments if s.control)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_context_builder_marks_only_template_markers_as_control(family: str) -> None:
    t = fim_template(family)
    text = hostile(t) + "def total(items):\n    return "
    doc = Document.at("src/app.py", text + "\n" + hostile(t), offset=len(text), language="python")
    recent = [OpenFile("src/other.py", hostile(t) + "def total_of(items):\n    return sum(items)\n")]
    ctx = ContextBuilder(None).build(doc, template=t, count=len, max_context=8192, max_tokens=64, recent=recent)
    segments = ctx.segments if ctx.segments is not None else t.segments(ctx.prompt, ctx.suffix)
    assert any(s.source == "similar" for s in ctx.snippets)
    control = control_text(segments)
    for token in every_token(t):
        # Every spelling in the document and the snippet is inside a text segment...
        assert sum(s.text.count(token) for s in segments if not s.control) >= 2, token
    # ...and the control segments are exactly the template's own markers, nothing of the document.
    expected = t.render("", "") if t.supports_fim and ctx.segments is None else None
    if expected is not None:
        assert control == expected
    for s in segments:
        if s.control:
            assert "x0 =" not in s.text and "total" not in s.text


@pytest.mark.parametrize("family", [f for f in FAMILIES if fim_template(f).supports_repo_level])
def test_repository_level_names_paths_and_files_are_text(family: str) -> None:
    t = fim_template(family)
    evil = hostile(t)
    segments = t.repo_segments(evil, [RepoFile(f"a{evil[:20]}.py", evil)], "b.py", evil, evil)
    assert control_text(segments).count(t.open) == 1 and control_text(segments).count(t.close) == 1
    assert all(evil in s.text or not s.text.startswith("x0") for s in segments)
    for token in every_token(t):
        in_control = control_text(segments).count(token)
        assert in_control == control_text(t.repo_segments("r", [RepoFile("a.py", "")], "b.py", "", "")).count(token)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("provider", ["vllm", "openai"])
async def test_on_the_wire_only_the_templates_markers_are_control_tokens(family: str, provider: str) -> None:
    t = fim_template(family)
    sent: list[dict] = []  # type: ignore[type-arg]

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        if request.url.path.endswith("/chat/completions"):
            return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})
        return httpx.Response(200, json={"choices": [{"text": "ok", "finish_reason": "stop"}]})

    backend = OpenAICompatibleBackend(
        f"{provider}:m",
        profile=provider_profile(provider),
        template=t,
        base_url="http://server/v1",
        api_key="k",
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    evil = hostile(t)
    await backend.complete(CompletionRequest(prompt=evil, suffix=evil))
    snippet = [Snippet("similar", "o.py", 1, 3, evil, 1.0)]
    rendered = render_completion(t, path="a.py", prefix=evil, suffix=evil, snippets=snippet, comment="#", repo_name="r")
    await backend.complete(
        CompletionRequest(prompt=rendered.prompt, suffix=rendered.suffix, segments=rendered.segments)
    )
    await backend.chat(ChatRequest((ChatMessage("system", evil), ChatMessage("user", evil))))
    await backend.aclose()
    clean_fim = sent[0]["prompt"] + sent[0].get("suffix", "")
    markers = t.render("", "") if (t.supports_fim and "suffix" not in sent[0]) else ""
    with_context = sent[1]["prompt"] + sent[1].get("suffix", "")
    if rendered.segments is not None:
        context_markers = control_text(rendered.segments)
    else:
        context_markers = t.render("", "") if (t.supports_fim and "suffix" not in sent[1]) else ""
    for token in every_token(t):
        assert clean_fim.count(token) == markers.count(token), (token, clean_fim[:200])
        assert with_context.count(token) == context_markers.count(token), (token, with_context[:200])
        chat = "".join(m["content"] for m in sent[2]["messages"])
        assert token not in chat, token
    # What the model reads still says the same thing to a person: only invisible joiners were added.
    assert sent[2]["messages"][1]["content"].replace("\u2060", "") == evil


def test_defang_is_idempotent_and_leaves_ordinary_code_alone() -> None:
    code = "if a < b and b > c:\n    x = a<|b|>c\n"
    assert defang(defang(code)) == defang(code)
    assert defang("print(a < b, c > d)") == "print(a < b, c > d)"
