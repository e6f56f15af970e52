"""The HTTP surface: OpenAI-compatible API, assistant task endpoints, events, metrics, auth and limits."""

from forgepilot.gateway.app import create_app
from forgepilot.gateway.guard import RateLimiter, SharedRateLimiter, is_loopback
from forgepilot.gateway.store import GatewayStore, open_gateway_store

__all__ = ["GatewayStore", "RateLimiter", "SharedRateLimiter", "create_app", "is_loopback", "open_gateway_store"]
