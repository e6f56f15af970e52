"""The HTTP gateway: OpenAI-compatible endpoints, the assistant's task endpoints, telemetry events, metrics.

Everything here is protocol: parsing, status codes, streaming, auth, limits. The work is done by ``Assistant``
(the same object the LSP server and the CLI use), so what is served is what is evaluated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgepilot import __version__
from forgepilot.assist import TASKS, Assistant, CompletionInput, TaskInput
from forgepilot.backends.base import (
    CancelToken,
    ChatMessage,
    ChatRequest,
    Completion,
    CompletionChunk,
    CompletionRequest,
    Usage,
    check_max_tokens,
)
from forgepilot.context import Document, OpenFile
from forgepilot.deploy import DeploymentRouter, RolloutController, ServingDeployment
from forgepilot.errors import BackendError, ForgePilotError, ModelError, UnknownModel
from forgepilot.gateway.errors import HTTPError, envelope, from_forgepilot, validation_error
from forgepilot.gateway.guard import Guard, RateLimiter
from forgepilot.gateway.metrics import GatewayMetrics
from forgepilot.gateway.schemas import (
    AssistCompleteBody,
    AssistTaskBody,
    ChatBody,
    CompletionBody,
    EmbeddingBody,
    EventsBody,
    SamplingBody,
)
from forgepilot.gateway.store import GatewayStore
from forgepilot.monitor import Event, Monitoring, served_completion

T = TypeVar("T")
_log = logging.getLogger("forgepilot.gateway")


class _ClientGone(Exception):
    """The client disconnected before the answer was ready; the work was cancelled."""


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def _usage(u: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }
    if u.cached_prompt_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": u.cached_prompt_tokens}
    return out


def _finish(reason: str | None) -> str | None:
    return "stop" if reason == "cancelled" else reason


class _Instrument:
    """Pure ASGI middleware: request size limit (413), per-route latency and status metrics, in-flight gauge."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, max_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send, 413, f"request body over the limit of {self.max_bytes} bytes", "request_too_large")
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPError(
                        413, f"request body over the limit of {self.max_bytes} bytes", code="request_too_large"
                    )
            return message

        status = 500
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Server-Timing: how long the gateway held the request and how much of it the model took, so a
                # client can tell the gateway's own overhead from the model's time.
                total_ms = (time.perf_counter() - started) * 1000
                timing = f"total;dur={total_ms:.3f}"
                model_s = scope.get("state", {}).get("model_s")
                if model_s is not None:
                    timing += f", model;dur={model_s * 1000:.3f}"
                message = {**message, "headers": [*message.get("headers", []), (b"server-timing", timing.encode())]}
            await send(message)

        self.metrics.inflight.inc()
        try:
            await self.app(scope, limited_receive, timed_send)
        finally:
            self.metrics.inflight.dec()
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.request_seconds.labels(path).observe(time.perf_counter() - started)

    @staticmethod
    async def _reject(send: Send, status: int, message: str, code: str) -> None:
        body = envelope(message, "invalid_request_error", None, code)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _judge_rollouts(controller: RolloutController, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(controller.tick)
        except Exception:  # a bad tick must not stop the next one
            _log.exception("judging the rollout failed")


def create_app(
    assistant: Assistant,
    *,
    store: GatewayStore,
    auth_required: bool,
    monitoring: Monitoring,
    metrics: GatewayMetrics | None = None,
    router: DeploymentRouter | None = None,
    controller: RolloutController | None = None,
) -> FastAPI:
    """The gateway over ``assistant``: keys from ``store``, events, completions and mode through ``monitoring``,
    deployments from ``router`` (default: the settings' model), the running rollout judged by ``controller``."""
    settings = assistant.settings
    router = router or DeploymentRouter(None, default_model=settings.default_model, default_alias=monitoring.deployment)
    gw = settings.gateway
    metrics = metrics or GatewayMetrics()
    guard = Guard(
        store,
        required=auth_required,
        limiter=RateLimiter(gw.rate_limit_per_minute),
        on_failure=monitoring.auth_failed,
    )
    mode = monitoring.mode

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A serving gateway judges the running rollout itself; several gateways may: the first decision wins.
        task = asyncio.create_task(_judge_rollouts(controller, settings.deploy.tick_s)) if controller else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # The docs routes are ours (below), so that with auth on they answer only a key unless made public.
    app = FastAPI(
        title="ForgePilot gateway",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.assistant = assistant
    app.state.metrics = metrics
    app.state.store = store
    app.state.monitoring = monitoring
    app.state.router = router
    app.add_middleware(_Instrument, metrics=metrics, max_bytes=gw.max_request_bytes)

    def error_response(err: HTTPError) -> Response:
        metrics.errors.labels(err.code or err.type).inc()
        return Response(err.body(), status_code=err.status, media_type="application/json", headers=err.headers)

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> Response:
        return error_response(exc)

    @app.exception_handler(ForgePilotError)
    async def _fp_error(request: Request, exc: ForgePilotError) -> Response:
        return error_response(from_forgepilot(exc, gw.retry_after_s))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:  # not JSON, or not UTF-8
            message, code = "malformed request body: send a JSON object encoded as UTF-8", "invalid_json"
        return error_response(HTTPError(exc.status_code, message, code=code))

    @app.exception_handler(_ClientGone)
    async def _gone(request: Request, exc: _ClientGone) -> Response:
        return Response(status_code=499)

    @app.exception_handler(UnicodeDecodeError)
    async def _undecodable(request: Request, exc: UnicodeDecodeError) -> Response:
        return error_response(HTTPError(400, f"request body is not valid UTF-8: {exc.reason}", code="invalid_encoding"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        _log.exception("unhandled error on %s", request.url.path)
        return error_response(HTTPError(500, f"internal error: {type(exc).__name__}", type="server_error"))

    def caller(request: Request, authorization: str | None) -> str | None:
        client = request.client.host if request.client else "unknown"
        return guard.check(authorization, client)

    async def until_disconnect(request: Request, work: Callable[[CancelToken], Awaitable[T]]) -> T:
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
                metrics.cancelled.inc()
                raise _ClientGone from None
            raise
        finally:
            watcher.cancel()

    def model_or_404(name: str | None) -> str:
        name = name or settings.default_model
        assistant.models.ensure_known(name)
        return name

    def count_tokens(model: str, usage: Usage) -> None:
        metrics.tokens.labels(model, "prompt").inc(usage.prompt_tokens)
        metrics.tokens.labels(model, "completion").inc(usage.completion_tokens)

    async def sse(
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
            err = from_forgepilot(exc, gw.retry_after_s)
            metrics.errors.labels(err.code or err.type).inc()
            yield b"data: " + err.body() + b"\n\n"
        finally:
            token.cancel()  # the client went away or the stream ended: stop the model either way
            closer = getattr(rest, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()

    async def streamed(
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
                count_tokens(model, chunk.usage)
                if body.include_usage:
                    out["usage"] = _usage(chunk.usage)
            return out

        return StreamingResponse(sse(first, stream, framed, token), media_type="text/event-stream")

    async def timed(request: Request, model: str, work: Callable[[CancelToken], Awaitable[Completion]]) -> Completion:
        """``work`` until done or the client leaves; its time goes to Server-Timing and its tokens to the metrics."""
        t = time.perf_counter()
        result = await until_disconnect(request, work)
        request.state.model_s = time.perf_counter() - t
        count_tokens(model, result.usage)
        return result

    def serving(inp: CompletionInput, deployment: ServingDeployment, degraded: bool) -> CompletionInput:
        """The request as ``deployment`` serves it (its model unless the client named one, its context sources),
        in degraded mode on the fast tier with a smaller prompt."""
        inp = replace(inp, model=inp.model or deployment.model, sources=deployment.sources)
        if degraded:
            cut = mode.completion_overrides()
            inp = replace(inp, model=cut.model or inp.model, prompt_tokens=cut.prompt_tokens)
        return inp

    def caller_host(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def chat_allowed() -> None:
        if mode.chat_paused():
            raise HTTPError(
                503,
                "the assistant is in degraded mode: chat tasks are paused while completions recover "
                f"({mode.status().reason}); try again later",
                type="server_error",
                code="degraded",
                headers={"Retry-After": str(int(monitoring.settings.burn_short_s))},
            )

    def single_choice(body: SamplingBody) -> None:
        if body.n != 1:
            raise HTTPError(400, "only n=1 is supported", param="n", code="unsupported_value")

    # -- OpenAI protocol -------------------------------------------------------------------------------------
    @app.get("/v1/models")
    async def models(request: Request, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        caller(request, authorization)
        now = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": now, "owned_by": "forgepilot"} for n in assistant.models.names()
            ],
            "deployments": deployments_record(),
        }

    def deployments_record() -> list[dict[str, Any]]:
        split = router.split()
        out = [{**split.champion.record(), "share": 1.0 - split.share}]
        if split.canary is not None:
            out.append({**split.canary.record(), "share": split.share, "rollout": split.rollout_id})
        return out

    @app.post("/v1/completions", response_model=None)
    async def completions(
        body: CompletionBody, request: Request, authorization: str | None = Header(default=None)
    ) -> Response | dict[str, Any]:
        caller(request, authorization)
        single_choice(body)
        if body.echo or body.logprobs:
            raise HTTPError(400, "echo and logprobs are not supported", param="echo" if body.echo else "logprobs")
        try:
            prompt = body.prompt_text()
        except ValueError:
            raise HTTPError(400, "prompt must be one string (batches are not supported)", param="prompt") from None
        backend = assistant.models.get(model_or_404(body.model))
        max_tokens = check_max_tokens(backend, body.max_tokens or 16)
        cid, created = _new_id("cmpl"), int(time.time())

        def make(token: CancelToken) -> CompletionRequest:
            return CompletionRequest(
                prompt=prompt,
                suffix=body.suffix,
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                stop=body.stops(),
                seed=body.seed,
                priority="interactive",
                deadline_s=gw.request_budget_s,
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
                            "finish_reason": _finish(chunk.finish_reason),
                        }
                    ],
                }

            return await streamed(lambda token: backend.stream(make(token)), backend.name, body, frame)

        result = await timed(request, backend.name, lambda token: backend.complete(make(token)))
        return {
            "id": cid,
            "object": "text_completion",
            "created": created,
            "model": backend.name,
            "choices": [
                {"text": result.text, "index": 0, "logprobs": None, "finish_reason": _finish(result.finish_reason)}
            ],
            "usage": _usage(result.usage),
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatBody, request: Request, authorization: str | None = Header(default=None)
    ) -> Response | dict[str, Any]:
        caller(request, authorization)
        single_choice(body)
        chat_allowed()
        backend = assistant.models.get(model_or_404(body.model))
        messages = tuple(ChatMessage("system" if m.role == "developer" else m.role, m.text()) for m in body.messages)
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        asked = body.max_completion_tokens or body.max_tokens
        default = min(settings.assist.chat_max_tokens, backend.max_context)
        max_tokens = check_max_tokens(backend, asked, field) if asked else default
        cid, created = _new_id("chatcmpl"), int(time.time())

        def make(token: CancelToken) -> ChatRequest:
            return ChatRequest(
                messages,
                max_tokens=max_tokens,
                temperature=body.temperature,
                top_p=body.top_p,
                stop=body.stops(),
                seed=body.seed,
                priority="chat",
                deadline_s=gw.request_budget_s,
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
                    "choices": [{"index": 0, "delta": delta, "finish_reason": _finish(chunk.finish_reason)}],
                }

            return await streamed(lambda token: backend.stream_chat(make(token)), backend.name, body, frame)

        result = await timed(request, backend.name, lambda token: backend.chat(make(token)))
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": backend.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": _finish(result.finish_reason),
                }
            ],
            "usage": _usage(result.usage),
        }

    @app.post("/v1/embeddings")
    async def embeddings(
        body: EmbeddingBody, request: Request, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        caller(request, authorization)
        name = body.model or assistant.models.tier_model("embed")
        backend = assistant.models.get(model_or_404(name))
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

    # -- the assistant ---------------------------------------------------------------------------------------
    @app.post("/v1/assist/complete")
    async def assist_complete(
        body: AssistCompleteBody, request: Request, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        user = caller(request, authorization)
        if body.model:
            model_or_404(body.model)
        doc = Document.at(
            body.path,
            body.text,
            line=body.cursor.line,
            character=body.cursor.character,
            offset=body.cursor.offset,
            language=body.language,
            repository=body.repository,
        )
        inp = CompletionInput(
            document=doc,
            recent=[OpenFile(f.path, f.text) for f in body.recent_files],
            mode=body.mode,
            model=body.model,
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            context=body.context,
            use_cache=body.cache,
            priority="interactive",
            deadline_s=gw.request_budget_s,
        )
        who = user or request.headers.get("x-forgepilot-user") or body.user or caller_host(request)
        deployment = router.choose(who)
        degraded = mode.degraded
        cid = _new_id("cmpl")
        language = doc.language.name if doc.language else None
        started = time.perf_counter()

        def failed(exc: ForgePilotError) -> None:  # the service failed: a client's bad request spends no budget
            monitoring.failed(
                time.perf_counter() - started,
                completion_id=cid,
                deployment=deployment.alias,
                model=serving(inp, deployment, degraded).model or deployment.model,
                language=language,
                error=exc.one_line(),
                user=who,
            )

        try:
            result = await until_disconnect(
                request, lambda token: assistant.completions.complete(serving(inp, deployment, degraded), token)
            )
        except (UnknownModel, ModelError) as exc:
            if deployment.alias != "canary" or controller is None:
                if isinstance(exc, ModelError):
                    failed(exc)
                raise
            # A canary that cannot serve is rolled back, not an outage: this request and the rest go to the champion.
            controller.fail_canary(router.split().rollout_id or "", f"the canary failed to load: {exc.one_line()}")
            router.refresh()
            deployment = router.choose(who)
            result = await until_disconnect(
                request, lambda token: assistant.completions.complete(serving(inp, deployment, degraded), token)
            )
        except BackendError as exc:
            failed(exc)
            raise
        request.state.model_s = result.timings.get("model", 0.0)
        metrics.cache.labels("hit" if result.cached else "miss").inc()
        for stage in ("context", "render", "first_token", "model", "postprocess", "total"):
            if stage in result.timings:
                metrics.stage_seconds.labels(stage).observe(result.timings[stage])
        if result.reason:
            metrics.empty.labels(result.reason).inc()
        count_tokens(result.model, result.usage)
        monitoring.served(
            served_completion(cid, result, deployment=deployment.alias, language=language, user=who, degraded=degraded)
        )
        return {
            "id": cid,
            "object": "assist.completion",
            "created": int(time.time()),
            "model": result.model,
            "text": result.text,
            "mode": result.mode,
            "reason": result.reason,
            "why": result.why(),
            "usage": _usage(result.usage),
            "deployment": deployment.alias,
            "degraded": degraded,
            **result.template,
        }

    async def run_task(request: Request, name: str, body: AssistTaskBody, action: bool) -> dict[str, Any]:
        chat_allowed()
        if body.model:
            model_or_404(body.model)
        inp = TaskInput(**body.model_dump(), priority="chat", deadline_s=gw.request_budget_s)
        if action:
            result = await until_disconnect(request, lambda token: assistant.tasks.action(name, inp, token))
        else:
            result = await until_disconnect(request, lambda token: assistant.tasks.run(name, inp, token))
        count_tokens(result.model, result.usage)
        return {
            "id": _new_id("task"),
            "object": "assist.task",
            "task": result.task,
            "model": result.model,
            "text": result.text,
            "code": result.code,
            "citations": result.citations,
            "sources": result.sources,
            "framework": result.framework,
            "finish_reason": _finish(result.finish_reason),
            "usage": _usage(result.usage),
            "cost_usd": result.cost_usd,
            "timings_ms": {k: round(v * 1000, 3) for k, v in result.timings.items()},
            **result.template,
        }

    @app.get("/v1/assist/actions")
    async def list_actions(
        request: Request, repository: str | None = None, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        caller(request, authorization)
        registry = assistant.tasks.action_registry(repository)
        return {
            "object": "list",
            "data": [
                {
                    "name": registry.get(n).name.removeprefix("actions/"),
                    "description": registry.get(n).description,
                    "variables": sorted(registry.get(n).variables),
                    "template_version": registry.get(n).version,
                }
                for n in registry.names()
            ],
        }

    @app.post("/v1/assist/actions/{name}")
    async def run_action(
        name: str, body: AssistTaskBody, request: Request, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        caller(request, authorization)
        return await run_task(request, name, body, action=True)

    @app.post("/v1/assist/{task}")
    async def assist_task(
        task: str, body: AssistTaskBody, request: Request, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        caller(request, authorization)
        if task not in TASKS:
            raise HTTPError(404, f"no task {task!r}; tasks: {', '.join(TASKS)}, actions/NAME", code="not_found")
        return await run_task(request, task, body, action=False)

    # -- telemetry, metrics, health --------------------------------------------------------------------------
    @app.post("/v1/events")
    async def events(
        body: EventsBody, request: Request, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        key = caller(request, authorization)
        events = [Event(**e.model_dump()) for e in body.events]
        # Acknowledged only once committed: a 200 means the events are on disk.
        recorded = await asyncio.to_thread(monitoring.store.record_events, events, user=key)
        for event in events:
            metrics.events.labels(event.type).inc()
        metrics.events_unknown.inc(recorded.unknown_completions)
        metrics.events_skewed.inc(recorded.skewed)
        return {
            "object": "list",
            "recorded": recorded.recorded,
            "unknown_completions": recorded.unknown_completions,
            "clock_skewed": recorded.skewed,
        }

    def require_access(what: str, request: Request, authorization: str | None) -> None:
        """An operational endpoint answers everyone without auth, else a valid key (401 without one, 429 over the
        limit), unless the operator made it public (``[gateway] public``)."""
        if auth_required and what not in gw.public:
            caller(request, authorization)

    @app.get("/metrics")
    async def prometheus(request: Request, authorization: str | None = Header(default=None)) -> Response:
        require_access("metrics", request, authorization)
        status = mode.status()
        metrics.degraded.set(int(status.degraded))
        for window, burn in status.burn.items():
            metrics.burn_rate.labels(window).set(burn)
        for model, breaker in assistant.models.breakers().items():
            metrics.breaker.labels(model).set({"closed": 0.0, "half_open": 0.5, "open": 1.0}[breaker.state])
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/healthz")
    async def healthz(request: Request, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        if auth_required and "health" not in gw.public and not guard.valid(authorization):
            return {"status": "ok"}  # liveness for probes without a key; the details need one
        repos = assistant.workspace.store.repositories() if assistant.workspace else []
        status = mode.status()
        return {
            "status": "degraded" if status.degraded else "ok",
            "mode": {
                "degraded": status.degraded,
                "since": status.since,
                "reason": status.reason,
                "burn_rate": status.burn,
                "requests": status.requests,
            },
            "deployments": deployments_record(),
            "breakers": {
                model: {"state": b.state, "failures_in_a_row": b.consecutive_failures, "last_error": b.last_error}
                for model, b in assistant.models.breakers().items()
            },
            "fallbacks": settings.assist.fallbacks,
            "version": __version__,
            "default_model": settings.default_model,
            "tiers": {t: assistant.models.tier_model(t) for t in ("large", "fast", "embed")},
            "repositories": [r.name for r in repos],
            "auth": auth_required,
        }

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        require_access("docs", request, authorization)
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request, authorization: str | None = Header(default=None)) -> Response:
        require_access("docs", request, authorization)
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ForgePilot gateway")

    return app
