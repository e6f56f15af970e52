"""The one error tree of ForgePilot, and the exit code each branch maps to.

Every error the package raises on purpose is a ``ForgePilotError``. Constructors only store data; the CLI turns an
error into one line (message, then what to do) and its ``exit_code``; the gateway maps the same errors to the
OpenAI error envelope.

    ForgePilotError                      exit 1
    ├── UserError                        exit 2   bad input or usage
    │   ├── FileError                             a suite or spec file is malformed (message: path:line: ...)
    │   ├── MaxTokensTooLarge                     a request asks for more tokens than the context window
    │   ├── ConfigError                  exit 3   invalid settings, unknown model or model family
    │   │   └── UnknownModelFamily
    │   └── MissingExtra                 exit 3   an optional dependency group is not installed
    ├── ModelError
    │   ├── ModelNotAvailable            exit 4   parts not installed / model not prepared
    │   └── ModelIntegrityError          exit 6   sha256 mismatch: refuse to use the file
    ├── BackendError                     exit 5   talking to a model failed (retryable is data)
    │   ├── BackendUnavailable                    connection refused, dead port, server gone
    │   ├── BackendTimeout
    │   ├── BackendHTTPError                      non-2xx answer (status kept)
    │   ├── BackendStreamInterrupted              the stream ended before the server said it was done
    │   └── NotSupported                          the backend cannot do this operation
    ├── GateFailed                       exit 7   a release gate decided FAIL, or a promotion was refused
    ├── DatabaseUnavailable              exit 8   the shared database (PostgreSQL) cannot be reached right now
    └── Cancelled                        exit 130 a request was cancelled by its caller
"""

from __future__ import annotations


class ForgePilotError(Exception):
    """Root of every error ForgePilot raises on purpose."""

    exit_code: int = 1
    #: A short machine-readable kind, used by the gateway's error envelope ("type").
    kind: str = "forgepilot_error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and what to do about it, on one line."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" ({' '.join(self.hint.split())})"
        return text


def first_line(exc: BaseException) -> str:
    """The first line of a third-party exception's message (its name when it has none), for a one-line error."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class UserError(ForgePilotError):
    exit_code = 2
    kind = "invalid_request_error"


class FileError(UserError):
    """A file people write (an evaluation suite, a gate spec) that cannot be read; the message starts with
    ``path:line`` so an editor can jump there."""

    def __init__(self, path: object, line: int | None, problem: str, *, hint: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}", hint=hint)
        self.path = str(path)
        self.line = line


class MaxTokensTooLarge(UserError):
    """A request asks for more tokens than the model's context window holds (``field`` names the request field)."""

    def __init__(self, requested: int, window: int, model: str, field_name: str = "max_tokens") -> None:
        super().__init__(
            f"{field_name} {requested} is more than {model}'s context window holds ({window} tokens)",
            hint=f"ask for at most {window} tokens",
        )
        self.field = field_name


class ConfigError(UserError):
    exit_code = 3
    kind = "config_error"


class UnknownModelFamily(ConfigError):
    def __init__(self, family: str, known: list[str]) -> None:
        super().__init__(
            f"unknown model family {family!r}",
            hint=f"declare one of: {', '.join(sorted(known))} (use 'plain' for left-to-right models without FIM)",
        )
        self.family = family


class UnknownModel(ConfigError):
    """A model name that is neither embedded nor declared; ``known`` lists the names that would work."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"unknown model {name!r}",
            hint=f'use one of: {", ".join(known)}, or declare it under [models."{name}"] with its family',
        )
        self.name = name
        self.known = known


class MissingExtra(ConfigError):
    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"the optional dependency {module!r} is not installed",
            hint=f"pip install 'forgepilot[{extra}]'",
        )
        self.module = module
        self.extra = extra


class DatabaseUnavailable(ForgePilotError):
    """The shared database cannot be reached (down, restarting, pool exhausted): nothing was written, and the
    same call may succeed later."""

    exit_code = 8
    kind = "database_unavailable"


class ModelError(ForgePilotError):
    kind = "model_error"


class ModelNotAvailable(ModelError):
    exit_code = 4
    kind = "model_not_available"


class ModelIntegrityError(ModelError):
    exit_code = 6
    kind = "model_integrity_error"


class BackendError(ForgePilotError):
    """A model backend failed. ``retryable`` says whether the same request may succeed later."""

    exit_code = 5
    kind = "backend_error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        backend: str | None = None,
        retryable: bool = False,
        status: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.backend = backend
        self.retryable = retryable
        self.status = status


class BackendUnavailable(BackendError):
    kind = "backend_unavailable"


class BackendTimeout(BackendError):
    kind = "backend_timeout"


class BackendHTTPError(BackendError):
    kind = "backend_http_error"


class BackendStreamInterrupted(BackendError):
    kind = "backend_stream_interrupted"


class NotSupported(BackendError):
    kind = "not_supported"

    def __init__(self, backend: str, operation: str) -> None:
        super().__init__(f"backend {backend!r} does not support {operation}", backend=backend)
        self.operation = operation


class GateFailed(ForgePilotError):
    """A release gate decided FAIL (the decision and its dossier are stored), or a promotion lacked a pass."""

    exit_code = 7
    kind = "gate_failed"


class AuditTampered(ForgePilotError):
    """``forgepilot audit --verify`` found the hash chain broken: the message names the first bad entry."""

    exit_code = 8
    kind = "audit_tampered"


class Cancelled(ForgePilotError):
    exit_code = 130
    kind = "cancelled"


#: Documented CLI exit codes (README "Exit codes"), kept next to the tree that produces them.
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected ForgePilot error",
    2: "bad input or usage",
    3: "configuration error (settings, unknown model or family, missing optional extra)",
    4: "model not available (parts not installed or model not prepared)",
    5: "backend error (model server unreachable, timed out, failed or interrupted)",
    6: "model integrity error (sha256 mismatch)",
    7: "release gate failed, or promotion refused without a passing gate",
    8: "the audit log failed verification (an entry was changed, removed or cut off)",
    130: "cancelled or interrupted",
}
