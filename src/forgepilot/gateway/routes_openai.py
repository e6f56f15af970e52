"""The OpenAI protocol: models, completions (``suffix`` = fill-in-the-middle), chat completions, embeddings."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from forgepilot.assist.guarding import raw_guard, unmask_stream
from forgepilot.backends.base import (
    CancelToken,
    ChatMessage,
    ChatRequest,
    CompletionChunk,
    CompletionRequest,
    check_max_tokens,
)
from forgepilot.gateway.errors import HTTPError
from forgepilot.gateway.schemas import ChatBody, CompletionBody, EmbeddingBody
from forgepilot.gateway.state import (
    GatewayState,
    finish_reason,
    gateway_state,
    new_id,
    single_choice,
    usage_record,
)

router = APIRouter()
State = Annotated[GatewayState, Depends(gateway_state)]
Authorization = Annotated[str | None, Header()]


@router.get("/v1/models")
async def models(request: Request, st: State, authorization: Authorization = None) -> dict[str, Any]:
    st.caller(request, authorization)
    now = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": n, "object": "model", "created": now, "owned_by": "forgepilot"} for n in st.assistant.models.names()
        ],
        "deployments": st.deployments_record(),
    }


@router.post("/v1/completions", response_model=None)
async def completions(
    body: CompletionBody, request: Request, st: State, authorization: Authorization = None
) -> Response | dict[str, Any]:
    st.caller(request, authorization)
    single_choice(body)
    if body.echo or body.logprobs:
        raise HTTPError(400, "echo and logprobs are not supported", param="echo" if body.echo else "logprobs")
    try:
        prompt = body.prompt_text()
    except ValueError:
        raise HTTPError(400, "prompt must be one string (batches are not supported)", param="prompt") from None
    backend = st.assistant.models.get(st.model_or_404(body.model))
    max_tokens = check_max_tokens(backend, body.max_tokens or 16)
    cid, created = new_id("cmpl"), int(time.time())
    # A remote model server never sees the client's secrets; they come back in the answer where the model kept them.
    guard = raw_guard(backend)
    client_text = prompt + (body.suffix or "")
    sent_prompt = guard.prompt_text(prompt)
    sent_suffix = guard.prompt_text(body.suffix) if body.suffix is not None else None

    def make(token: CancelToken) -> CompletionRequest:
        return CompletionRequest(
            prompt=sent_prompt,
            suffix=sent_suffix,
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stops(),
            seed=body.seed,
            priority="interactive",
            deadline_s=st.settings.gateway.request_budget_s,
            cancel=token,
        )

    if body.stream:

        def frame(chunk: CompletionChunk) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": backend.name,
                "choices": [
                    {
                        "text": chunk.text,
                        "index": 0,
                        "logprobs": None,
                        "finish_reason": finish_reason(chunk.finish_reason),
                    }
                ],
            }

        return await st.streamed(
            lambda token: unmask_stream(backend.stream(make(token)), guard, client_text), backend.name, body, frame
        )

    result = await st.timed(request, backend.name, lambda token: backend.complete(make(token)))
    text = guard.answer(result.text, client_text)
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": backend.name,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason(result.finish_reason)}],
        "usage": usage_record(result.usage),
    }


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatBody, request: Request, st: State, authorization: Authorization = None
) -> Response | dict[str, Any]:
    st.caller(request, authorization)
    single_choice(body)
    st.chat_allowed()
    backend = st.assistant.models.get(st.model_or_404(body.model))
    guard = raw_guard(backend)
    client_text = "\n".join(m.text() for m in body.messages)
    messages = tuple(
        ChatMessage("system" if m.role == "developer" else m.role, guard.prompt_text(m.text())) for m in body.messages
    )
    field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    asked = body.max_completion_tokens or body.max_tokens
    default = min(st.settings.assist.chat_max_tokens, backend.max_context)
    max_tokens = check_max_tokens(backend, asked, field) if asked else default
    cid, created = new_id("chatcmpl"), int(time.time())

    def make(token: CancelToken) -> ChatRequest:
        return ChatRequest(
            messages,
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stops(),
            seed=body.seed,
            priority="chat",
            deadline_s=st.settings.gateway.request_budget_s,
            cancel=token,
        )

    if body.stream:
        sent_role = False

        def frame(chunk: CompletionChunk) -> dict[str, Any]:
            nonlocal sent_role
            delta: dict[str, Any] = {"content": chunk.text} if chunk.text or not chunk.finish_reason else {}
            if not sent_role:
                delta["role"] = "assistant"
                sent_role = True
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": backend.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason(chunk.finish_reason)}],
            }

        return await st.streamed(
            lambda token: unmask_stream(backend.stream_chat(make(token)), guard, client_text), backend.name, body, frame
        )

    result = await st.timed(request, backend.name, lambda token: backend.chat(make(token)))
    answer = guard.answer(result.text, client_text)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": backend.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": finish_reason(result.finish_reason),
            }
        ],
        "usage": usage_record(result.usage),
    }


@router.post("/v1/embeddings")
async def embeddings(
    body: EmbeddingBody, request: Request, st: State, authorization: Authorization = None
) -> dict[str, Any]:
    st.caller(request, authorization)
    name = body.model or st.assistant.models.tier_model("embed")
    backend = st.assistant.models.get(st.model_or_404(name))
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise HTTPError(400, "input is empty", param="input")
    vectors = await backend.embed(texts)
    counter = backend.token_counter()
    tokens = sum(counter(t) for t in texts)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": backend.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
