"""What every route of the gateway shares: one ``GatewayState`` per app, and the protocol helpers routes use
(auth, client-gone cancellation, SSE streaming, token counting, deployment choice)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from forgepilot.assist import Assistant, CompletionInput
from forgepilot.backends.base import CancelToken, Completion, CompletionChunk, Usage
from forgepilot.config import Settings
from forgepilot.deploy import DeploymentRouter, RolloutController, ServingDeployment
from forgepilot.errors import ForgePilotError
from forgepilot.gateway.errors import HTTPError, from_forgepilot
from forgepilot.gateway.guard import Guard
from forgepilot.gateway.metrics import GatewayMetrics
from forgepilot.gateway.schemas import SamplingBody
from forgepilot.gateway.store import GatewayStore
from forgepilot.monitor import Monitoring

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready; the work was cancelled."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage_record(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }
    if u.cached_prompt_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": u.cached_prompt_tokens}
    return out


def finish_reason(reason: str | None) -> str | None:
    return "stop" if reason == "cancelled" else reason


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


@dataclass
class GatewayState:
    assistant: Assistant
    store: GatewayStore
    monitoring: Monitoring
    metrics: GatewayMetrics
    guard: Guard
    router: DeploymentRouter
    controller: RolloutController | None
    auth_required: bool

    @property
    def settings(self) -> Settings:
        return self.assistant.settings

    # -- who is calling ------------------------------------------------------------------------------------
    def caller(self, request: Request, authorization: str | None) -> str | None:
        """The caller's key name (None without auth); raises 401 or 429."""
        return self.guard.check(authorization, client_host(request))

    def require_access(self, what: str, request: Request, authorization: str | None) -> None:
        """An operational endpoint answers everyone without auth, else a valid key (401 without one, 429 over the
        limit), unless the operator made it public (``[gateway] public``)."""
        if self.auth_required and what not in self.settings.gateway.public:
            self.caller(request, authorization)

    # -- requests ------------------------------------------------------------------------------------------
    def model_or_404(self, name: str | None) -> str:
        name = name or self.settings.default_model
        self.assistant.models.ensure_known(name)
        return name

    def count_tokens(self, model: str, usage: Usage) -> None:
        self.metrics.tokens.labels(model, "prompt").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(model, "completion").inc(usage.completion_tokens)

    def error_response(self, err: HTTPError) -> Response:
        self.metrics.errors.labels(err.code or err.type).inc()
        return Response(err.body(), status_code=err.status, media_type="application/json", headers=err.headers)

    async def until_disconnect(self, request: Request, work: Callable[[CancelToken], Awaitable[T]]) -> T:
        """Run ``work``; if the client goes away first, cancel it (the model stops generating) and give up.

        One watcher task per request waits for the ASGI disconnect message and cancels the request's own task.
        """
        token = CancelToken()
        current = asyncio.current_task()
        gone = False

        async def watch() -> None:
            nonlocal gone
            await _wait_disconnect(request)
            gone = True
            token.cancel()
            if current is not None:
                current.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            return await work(token)
        except asyncio.CancelledError:
            token.cancel()
            if gone:
                self.metrics.cancelled.inc()
                raise ClientGone from None
            raise
        finally:
            watcher.cancel()

    async def timed(
        self, request: Request, model: str, work: Callable[[CancelToken], Awaitable[Completion]]
    ) -> Completion:
        """``work`` until done or the client leaves; its time goes to Server-Timing and its tokens to the metrics."""
        t = time.perf_counter()
        result = await self.until_disconnect(request, work)
        request.state.model_s = time.perf_counter() - t
        self.count_tokens(model, result.usage)
        return result

    async def _sse(
        self,
        first: CompletionChunk | None,
        rest: AsyncIterator[CompletionChunk],
        frame: Callable[[CompletionChunk], dict[str, Any]],
        token: CancelToken,
    ) -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield b"data: " + json.dumps(frame(first)).encode() + b"\n\n"
                async for chunk in rest:
                    yield b"data: " + json.dumps(frame(chunk)).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        except ForgePilotError as exc:
            err = from_forgepilot(exc, self.settings.gateway.retry_after_s)
            self.metrics.errors.labels(err.code or err.type).inc()
            yield b"data: " + err.body() + b"\n\n"
        finally:
            token.cancel()  # the client went away or the stream ended: stop the model either way
            closer = getattr(rest, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    async def streamed(
        self,
        open_stream: Callable[[CancelToken], AsyncIterator[CompletionChunk]],
        model: str,
        body: SamplingBody,
        frame: Callable[[CompletionChunk], dict[str, Any]],
    ) -> StreamingResponse:
        """An SSE response of ``frame``d chunks, with usage counted and attached when the client asked for it.

        The first chunk is fetched before the response starts, so that a dead backend is a 503, not a broken stream.
        """
        token = CancelToken()
        stream = open_stream(token)
        try:
            first: CompletionChunk | None = await stream.__anext__()
        except StopAsyncIteration:
            first = None

        def framed(chunk: CompletionChunk) -> dict[str, Any]:
            out = frame(chunk)
            if chunk.usage is not None:
                self.count_tokens(model, chunk.usage)
                if body.include_usage:
                    out["usage"] = usage_record(chunk.usage)
            return out

        return StreamingResponse(self._sse(first, stream, framed, token), media_type="text/event-stream")

    # -- deployments and serving mode -----------------------------------------------------------------------
    def serving(self, inp: CompletionInput, deployment: ServingDeployment, degraded: bool) -> CompletionInput:
        """The request as ``deployment`` serves it (its model unless the client named one, its context sources),
        in degraded mode on the fast tier with a smaller prompt."""
        inp = replace(inp, model=inp.model or deployment.model, sources=deployment.sources)
        return self.monitoring.degraded_input(inp) if degraded else inp

    def deployments_record(self) -> list[dict[str, Any]]:
        split = self.router.split()
        out = [{**split.champion.record(), "share": 1.0 - split.share}]
        if split.canary is not None:
            out.append({**split.canary.record(), "share": split.share, "rollout": split.rollout_id})
        return out

    def chat_allowed(self) -> None:
        mode = self.monitoring.mode
        if mode.chat_paused():
            raise HTTPError(
                503,
                "the assistant is in degraded mode: chat tasks are paused while completions recover "
                f"({mode.status().reason}); try again later",
                type="server_error",
                code="degraded",
                headers={"Retry-After": str(int(self.monitoring.settings.burn_short_s))},
            )


def client_host(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def gateway_state(request: Request) -> GatewayState:
    """The app's state, for ``Depends`` in the routes."""
    state: GatewayState = request.app.state.gateway
    return state


def single_choice(body: SamplingBody) -> None:
    if body.n != 1:
        raise HTTPError(400, "only n=1 is supported", param="n", code="unsupported_value")
