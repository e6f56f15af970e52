"""``forgepilot lsp``: serve the Language Server Protocol over stdio for any LSP editor."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from forgepilot.cli._common import settings


def lsp(
    server: Annotated[
        str | None, typer.Option(help="Use a running gateway (http://host:port) instead of in-process.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Default model when running in-process.")] = None,
    debounce_ms: Annotated[int, typer.Option(min=0, max=2000, help="Wait this long for more typing.")] = 75,
) -> None:
    """Run the language server on stdin/stdout (inline completion, completion, code actions)."""
    from forgepilot.assist import Assistant
    from forgepilot.lsp import InProcessEngine, RemoteEngine, build_server
    from forgepilot.lsp.engine import Engine
    from forgepilot.monitor import Monitoring

    # stdout carries the protocol: logs must go to stderr only.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    engine: Engine
    s = settings()
    if server:
        engine = RemoteEngine(server)
    else:
        if model:
            s = s.model_copy(update={"default_model": model})
        assistant = Assistant.open(s)
        monitoring = Monitoring.open(s.state_dir, s.monitor, fast_model=assistant.models.tier_model("fast"))
        engine = InProcessEngine(assistant, monitoring)
    build_server(
        engine,
        debounce_s=debounce_ms / 1000,
        retention_checkpoints_s=s.monitor.retention_checkpoints_s,
        retention_window_chars=s.monitor.retention_window_chars,
    ).start_io()
