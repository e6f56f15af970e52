"""The HTTP gateway: OpenAI-compatible endpoints, the assistant's task endpoints, telemetry events, metrics.

Everything here is protocol: parsing, status codes, streaming, auth, limits. The work is done by ``Assistant``
(the same object the LSP server and the CLI use), so what is served is what is evaluated. The routes live in
``routes_openai``, ``routes_assist`` and ``routes_ops``, over one ``GatewayState`` (``state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forgepilot import __version__
from forgepilot.assist import Assistant
from forgepilot.deploy import DeploymentRouter, RolloutController
from forgepilot.errors import ForgePilotError
from forgepilot.gateway import routes_assist, routes_openai, routes_ops
from forgepilot.gateway.errors import HTTPError, envelope, from_forgepilot, validation_error
from forgepilot.gateway.guard import Guard, RateLimiter, SharedRateLimiter
from forgepilot.gateway.metrics import GatewayMetrics
from forgepilot.gateway.state import ClientGone, GatewayState
from forgepilot.gateway.store import GatewayStore
from forgepilot.monitor import Monitoring

_log = logging.getLogger("forgepilot.gateway")


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
    dashboard: bool = True,
) -> FastAPI:
    """The gateway over ``assistant``: keys from ``store``, events, completions and mode through ``monitoring``,
    deployments from ``router`` (default: the settings' model), the running rollout judged by ``controller``."""
    settings = assistant.settings
    gw = settings.gateway
    metrics = metrics or GatewayMetrics()
    state = GatewayState(
        assistant=assistant,
        store=store,
        monitoring=monitoring,
        metrics=metrics,
        guard=Guard(
            store,
            required=auth_required,
            limiter=(
                SharedRateLimiter(store, gw.rate_limit_per_minute)
                if store.shared
                else RateLimiter(gw.rate_limit_per_minute)
            ),
            on_failure=monitoring.auth_failed,
        ),
        router=router or DeploymentRouter(None, default_model=settings.default_model),
        controller=controller,
        auth_required=auth_required,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A serving gateway judges the running rollout itself; several gateways may: the first decision wins.
        task = asyncio.create_task(_judge_rollouts(controller, settings.deploy.tick_s)) if controller else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # The docs routes are ours (routes_ops), so that with auth on they answer only a key unless made public.
    app = FastAPI(
        title="ForgePilot gateway",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.gateway = state
    app.add_middleware(_Instrument, metrics=metrics, max_bytes=gw.max_request_bytes)
    _handle_errors(app, state)
    for module in (routes_openai, routes_assist, routes_ops):
        app.include_router(module.router)
    if dashboard:
        from forgepilot import web  # the dashboard imports the gateway's state: loaded once both exist

        app.include_router(web.router)

        @app.exception_handler(web.SignIn)
        async def _sign_in(request: Request, exc: web.SignIn) -> Response:
            return web.sign_in_redirect(request)

    return app


def _handle_errors(app: FastAPI, state: GatewayState) -> None:
    """Every error as an OpenAI envelope with its status (and Retry-After where waiting helps)."""
    retry_after_s = state.settings.gateway.retry_after_s

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> Response:
        return state.error_response(exc)

    @app.exception_handler(ForgePilotError)
    async def _fp_error(request: Request, exc: ForgePilotError) -> Response:
        return state.error_response(from_forgepilot(exc, retry_after_s))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return state.error_response(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _starlette(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:  # not JSON, or not UTF-8
            message, code = "malformed request body: send a JSON object encoded as UTF-8", "invalid_json"
        return state.error_response(HTTPError(exc.status_code, message, code=code))

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)

    @app.exception_handler(UnicodeDecodeError)
    async def _undecodable(request: Request, exc: UnicodeDecodeError) -> Response:
        return state.error_response(
            HTTPError(400, f"request body is not valid UTF-8: {exc.reason}", code="invalid_encoding")
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        _log.exception("unhandled error on %s", request.url.path)
        return state.error_response(HTTPError(500, f"internal error: {type(exc).__name__}", type="server_error"))
