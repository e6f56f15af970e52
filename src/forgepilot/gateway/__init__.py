"""The HTTP surface: OpenAI-compatible API, assistant task endpoints, events, metrics, auth and limits."""

from forgepilot.gateway.app import create_app
from forgepilot.gateway.guard import is_loopback
from forgepilot.gateway.store import GatewayStore

__all__ = ["GatewayStore", "create_app", "is_loopback"]
