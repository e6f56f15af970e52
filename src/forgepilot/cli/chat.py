"""``forgepilot chat``: talk to a model with its own chat template, one-shot or interactively."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from forgepilot.backends.base import Backend, ChatMessage, ChatRequest
from forgepilot.backends.resolve import open_backend
from forgepilot.cli._common import byte_progress, err, out, print_json, run, settings
from forgepilot.errors import UserError


async def _reply(backend: Backend, request: ChatRequest, *, echo: bool) -> str:
    if not echo or not backend.can_stream:
        return (await backend.chat(request)).text
    parts = []
    async for chunk in backend.stream_chat(request):
        if chunk.text:
            out.out(chunk.text, end="")
            parts.append(chunk.text)
    out.out("")
    return "".join(parts)


def chat(
    message: Annotated[str | None, typer.Argument(help="The message; omit it to chat interactively.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="provider:model (default: settings).")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0)] = 0.0,
    json_: Annotated[bool, typer.Option("--json", help="Print the reply, usage and cost as JSON.")] = False,
) -> None:
    """Chat with a model. With no MESSAGE: read it from stdin when piped, else start an interactive session."""
    history: list[ChatMessage] = [ChatMessage("system", system)] if system else []
    interactive = message is None and sys.stdin.isatty()
    if message is None and not interactive:
        message = sys.stdin.read()
    if message is not None and not message.strip():
        raise UserError("the message is empty", hint="pass a message or pipe one on stdin")
    with byte_progress("preparing model") as progress:
        backend = open_backend(model, settings(), progress=progress)

    async def one_shot(text: str) -> None:
        request = ChatRequest(tuple([*history, ChatMessage("user", text)]), max_tokens, temperature)
        if json_:
            result = await backend.chat(request)
            print_json({"model": result.model, "text": result.text, "usage": result.usage, "cost": result.cost})
        else:
            await _reply(backend, request, echo=True)
        await backend.aclose()

    async def session() -> None:
        err.print(f"chatting with {backend.name}; Ctrl-D to end")
        try:
            while True:
                try:
                    text = input("> ")
                except EOFError:
                    break
                if not text.strip():
                    continue
                history.append(ChatMessage("user", text))
                answer = await _reply(backend, ChatRequest(tuple(history), max_tokens, temperature), echo=True)
                history.append(ChatMessage("assistant", answer))
        finally:
            await backend.aclose()

    run(one_shot(message) if message is not None else session())
