"""The editor surface: a language server over stdio, running the assistant in-process or against a gateway."""

from forgepilot.lsp.engine import Engine, InProcessEngine, RemoteEngine
from forgepilot.lsp.server import ForgePilotServer, build_server

__all__ = ["Engine", "ForgePilotServer", "InProcessEngine", "RemoteEngine", "build_server"]
