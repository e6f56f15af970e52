"""One mapping from errors to HTTP: every failure leaves the gateway as an OpenAI error envelope.

``{"error": {"message", "type", "param", "code"}}`` with the status below; 503s carry ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from forgepilot.assist.tasks import MissingField, UnknownRepository
from forgepilot.context import CursorOutOfRange
from forgepilot.errors import (
    BackendError,
    BackendHTTPError,
    Cancelled,
    DatabaseUnavailable,
    ForgePilotError,
    MaxTokensTooLarge,
    ModelIntegrityError,
    ModelNotAvailable,
    NotSupported,
    UnknownModel,
    UserError,
)
from forgepilot.prompts import UnknownTemplate, UnsafeTemplate

_log = logging.getLogger("forgepilot.gateway")


class HTTPError(Exception):
    """An error raised by the gateway itself with its status and envelope fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return envelope(self.message, self.type, self.param, self.code)


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type, "param": param, "code": code}}).encode()


def from_forgepilot(exc: ForgePilotError, retry_after_s: int) -> HTTPError:
    """The HTTP form of a ForgePilot error (the gateway is the only place that knows status codes)."""
    message = exc.one_line()
    if isinstance(exc, UnknownModel):
        return HTTPError(404, message, param="model", code="model_not_found")
    if isinstance(exc, UnknownRepository):
        return HTTPError(404, message, param="repository", code="repository_not_found")
    if isinstance(exc, UnknownTemplate):
        return HTTPError(404, message, param="name", code="action_not_found")
    if isinstance(exc, UnsafeTemplate):
        return HTTPError(400, message, param="name", code="unsafe_template")
    if isinstance(exc, MaxTokensTooLarge):
        return HTTPError(400, message, param=exc.field, code="max_tokens_too_large")
    if isinstance(exc, CursorOutOfRange | MissingField):
        return HTTPError(422, message, param=exc.field, code="invalid_value")
    if isinstance(exc, Cancelled):
        return HTTPError(499, message, type="cancelled", code="cancelled")
    if isinstance(exc, NotSupported):
        return HTTPError(400, message, code="not_supported")
    if isinstance(exc, ModelNotAvailable | ModelIntegrityError):
        return HTTPError(
            503, message, type="server_error", code="model_not_available", headers={"Retry-After": str(retry_after_s)}
        )
    if isinstance(exc, BackendHTTPError) and exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
        return HTTPError(502, message, type="server_error", code="backend_rejected")
    if isinstance(exc, DatabaseUnavailable):
        return HTTPError(503, message, type="server_error", code=exc.kind, headers={"Retry-After": str(retry_after_s)})
    if isinstance(exc, BackendError):
        return HTTPError(503, message, type="server_error", code=exc.kind, headers={"Retry-After": str(retry_after_s)})
    if isinstance(exc, UserError):
        return HTTPError(400, message, code=getattr(exc, "kind", None) or "invalid_request")
    _log.error("unexpected error: %s", message)
    return HTTPError(500, message, type="server_error", code="internal_error")


def validation_error(errors: list[dict[str, Any]]) -> HTTPError:
    """400 for a body that is not JSON (or not UTF-8), else 422 naming the first invalid field."""
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    if first.get("type") in ("json_invalid", "json_type") or any(e.get("type") == "json_invalid" for e in errors):
        return HTTPError(400, f"malformed JSON body: {first.get('msg', '')}".rstrip(": "), code="invalid_json")
    if tuple(first.get("loc", ())) == ("body",) and first.get("type") in ("model_attributes_type", "dict_type"):
        return HTTPError(400, "request body must be a JSON object", code="invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    return HTTPError(422, f"{param or 'body'}: {first.get('msg', 'invalid')}", param=param, code="invalid_value")
