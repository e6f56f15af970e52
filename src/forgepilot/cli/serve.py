"""``forgepilot serve [PATH...]``: index the repositories (incrementally), then serve the gateway.

Prints how to connect (curl, the openai SDK, an LSP editor) once the socket is listening.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from typing import Annotated

import typer
from rich.markup import escape

from forgepilot.cli._common import err, settings
from forgepilot.cli.index import index_paths
from forgepilot.errors import ConfigError


def _connect_help(url: str, model: str, key_hint: str | None) -> str:
    auth = f" -H 'Authorization: Bearer {key_hint}'" if key_hint else ""
    body = json.dumps({"model": model, "prompt": "def fib(n):\n    ", "suffix": "\n", "max_tokens": 32})
    api_key = key_hint or "unused"
    return "\n".join(
        [
            f"ForgePilot is serving {model} on {url}",
            f"  curl    curl -s {url}/v1/completions -H 'Content-Type: application/json'{auth} -d '{body}'",
            f'  openai  OpenAI(base_url="{url}/v1", api_key="{api_key}").completions.create(model="{model}", '
            'prompt="def fib(n):\\n    ", suffix="\\n", max_tokens=32)',
            f"  LSP     forgepilot lsp --server {url}   (stdio; point your editor's LSP client at this command)",
            f"  more    {url}/docs (API), {url}/metrics (Prometheus), {url}/healthz",
        ]
    )


def serve(
    paths: Annotated[list[str] | None, typer.Argument(help="Repositories to index before serving.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = None,
    model: Annotated[str | None, typer.Option(help="Default model (provider:model).")] = None,
    embeddings: Annotated[
        bool | None, typer.Option("--embeddings/--no-embeddings", help="Embed chunks (default: when installed).")
    ] = None,
    auth: Annotated[str | None, typer.Option(help="API keys: auto (beyond loopback), on or off.")] = None,
    warm: Annotated[bool, typer.Option("--warm/--no-warm", help="Load the model before listening.")] = True,
) -> None:
    """Index PATHs, then serve the OpenAI-compatible API and the assistant's endpoints over HTTP."""
    import uvicorn

    from forgepilot.assist import Assistant
    from forgepilot.deploy import DeploymentRouter, RolloutController
    from forgepilot.gateway import create_app, is_loopback, open_gateway_store
    from forgepilot.gateway.net import listen_socket
    from forgepilot.monitor import Monitoring, current_actor, record_settings
    from forgepilot.registry import open_registry

    s = settings()
    gw = s.gateway.model_copy(
        update={k: v for k, v in {"host": host, "port": port, "auth": auth}.items() if v is not None}
    )
    if gw.auth not in ("auto", "on", "off"):
        raise ConfigError(f"unknown auth setting {gw.auth!r}", hint="use auto, on or off")
    s = s.model_copy(update={"gateway": gw, **({"default_model": model} if model else {})})
    # Bind first: a taken port should fail in a second, not after indexing and loading a model.
    try:
        sock = listen_socket(gw.host, gw.port)
    except OSError as exc:
        raise ConfigError(
            f"could not listen on {gw.host}:{gw.port}: {exc.strerror}", hint="pick another --port (0 picks a free one)"
        ) from exc
    assistant = Assistant.open(s)
    assert assistant.workspace is not None
    if paths:
        want_vectors = (
            embeddings if embeddings is not None else importlib.util.find_spec("sentence_transformers") is not None
        )
        index_paths(assistant.workspace, s, paths, embeddings=want_vectors, quiet=False)
    required = gw.auth == "on" or (gw.auth == "auto" and not is_loopback(gw.host))
    store = open_gateway_store(s.state_dir, s.database_url)
    if required and not store.has_keys():
        err.print("[yellow]API keys are required on this address and none exist:[/] forgepilot keys create NAME")
    if warm:
        err.print(f"loading {escape(s.default_model)} ...")
        # Opens the model file (llama.cpp) now, so that a missing model fails here and the first request is fast.
        assistant.models.get(s.default_model).token_counter()("warm up")
    monitoring = Monitoring.open(
        s.state_dir, s.monitor, fast_model=assistant.models.tier_model("fast"), database_url=s.database_url
    )
    if store.path is not None and monitoring.store.path is not None:
        moved = monitoring.store.import_legacy_events(store.path)
        if moved:
            err.print(f"moved {moved} events from {store.path.name} to {monitoring.store.path.name}")
    record_settings(monitoring.audit, s.model_dump(mode="json"), actor=current_actor())
    registry = open_registry(s.state_dir, s.database_url)
    controller = RolloutController(registry, monitoring.store, monitoring.audit)
    known = frozenset(assistant.models.names())
    router = DeploymentRouter(
        registry,
        default_model=s.default_model,
        known=known.__contains__,
        poll_s=s.deploy.poll_s,
        on_broken_canary=controller.fail_canary,
    )
    for d in router.split().champion, router.split().canary:
        if d is not None and d.note:
            err.print(f"[yellow]{escape(d.note)}[/]")
    app = create_app(
        assistant, store=store, auth_required=required, monitoring=monitoring, router=router, controller=controller
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            bound = sock.getsockname()
            shown_host = bound[0] if ":" not in bound[0] else f"[{bound[0]}]"
            url = f"http://{shown_host}:{bound[1]}"
            print(_connect_help(url, s.default_model, "$FORGEPILOT_API_KEY" if required else None), flush=True)
        await task
        await assistant.aclose()

    try:
        asyncio.run(run())
    finally:
        store.close()
        monitoring.close()
        registry.close()
    if not server.started:
        raise ConfigError(f"the gateway on {gw.host}:{gw.port} did not start", hint="run with --verbose for details")
