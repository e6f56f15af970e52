"""``Monitoring``: what a serving process (the gateway, the in-process LSP server) holds to be watched.

One object per process: the event store, the audit log and degraded mode, wired together (a mode change is
stored and audited), and the few calls serving makes: a completion was served or failed, an authentication failed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from forgepilot.config import MonitorSettings
from forgepilot.db import store_location
from forgepilot.monitor.audit import AuditLog
from forgepilot.monitor.degrade import DegradedMode
from forgepilot.monitor.store import MonitorStore
from forgepilot.monitor.types import ModeChange, ServedCompletion

if TYPE_CHECKING:
    from forgepilot.assist import AssistCompletion, CompletionInput

_log = logging.getLogger("forgepilot.monitor")
#: One audit entry per client per this many seconds for failed authentications (a brute force is one line a
#: minute with its count, not a million rows).
AUTH_FAILURE_AUDIT_S = 60.0


def monitor_db(state_dir: Path, database_url: str | None = None) -> Path | str:
    """Where the monitor's store lives: ``STATE/monitor.db``, or the shared database."""
    return store_location(state_dir, "monitor.db", database_url)


def audit_db(state_dir: Path, database_url: str | None = None) -> Path | str:
    """Where the audit log lives: ``STATE/audit.db``, or the shared database."""
    return store_location(state_dir, "audit.db", database_url)


def served_completion(
    completion_id: str,
    result: AssistCompletion,
    *,
    deployment: str,
    language: str | None,
    user: str | None,
    degraded: bool,
) -> ServedCompletion:
    """The record of one answered completion (a cached answer's prompt is counted from its context)."""
    prompt = result.usage.prompt_tokens or sum(result.context_tokens.values())
    return ServedCompletion(
        id=completion_id,
        served_at=time.time(),
        deployment=deployment,
        model=result.model,
        mode=result.mode,
        language=language,
        template_id=result.template.get("template_id"),
        template_version=result.template.get("template_version"),
        prompt_tokens=prompt,
        completion_tokens=result.usage.completion_tokens,
        latency_ms=result.timings.get("total", 0.0) * 1000,
        output_chars=len(result.text),
        empty_reason=result.reason,
        sources=tuple(sorted({s.source for s in result.snippets})),
        user=user,
        cached=result.cached,
        degraded=degraded,
    )


class Monitoring:
    def __init__(
        self, store: MonitorStore, audit: AuditLog, settings: MonitorSettings, *, fast_model: str | None = None
    ) -> None:
        self.store = store
        self.audit = audit
        self.settings = settings
        self.mode = DegradedMode(settings, fast_model=fast_model, on_change=self._mode_changed)
        self._auth_failures: dict[str, tuple[float, int]] = {}
        self._auth_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        state_dir: Path,
        settings: MonitorSettings,
        *,
        fast_model: str | None = None,
        database_url: str | None = None,
    ) -> Monitoring:
        store = MonitorStore(monitor_db(state_dir, database_url), max_clock_skew_s=settings.max_clock_skew_s)
        return cls(store, AuditLog(audit_db(state_dir, database_url)), settings, fast_model=fast_model)

    @property
    def deployment(self) -> str:
        return self.settings.deployment

    def _mode_changed(self, change: ModeChange) -> None:
        _log.warning("serving mode: %s (%s)", change.mode, change.reason)
        try:
            self.store.record_mode_change(change)
            self.audit.append(
                "degraded" if change.mode == "degraded" else "recovered",
                actor="slo-burn-rate",
                target=self.deployment,
                reason=change.reason,
                details={"burn": change.burn},
            )
        except Exception as exc:  # the mode still changes; only its record is lost, and the log says so
            _log.error("could not record the serving-mode change: %s", exc)

    def degraded_input(self, inp: CompletionInput) -> CompletionInput:
        """``inp`` as degraded mode serves it: on the fast tier (when there is one) with a smaller prompt."""
        cut = self.mode.completion_overrides()
        return replace(inp, model=cut.model or inp.model, prompt_tokens=cut.prompt_tokens)

    def served(self, completion: ServedCompletion) -> None:
        self.store.record_completion(completion)
        self.mode.observe(completion.latency_ms / 1000, ok=True)

    def failed(
        self,
        latency_s: float,
        *,
        completion_id: str,
        deployment: str,
        model: str,
        language: str | None,
        error: str,
        user: str | None = None,
    ) -> None:
        """A completion the backend failed: it burns the error budget and counts against its deployment."""
        self.store.record_completion(
            ServedCompletion(
                id=completion_id,
                served_at=time.time(),
                deployment=deployment,
                model=model,
                mode="unknown",
                language=language,
                template_id=None,
                template_version=None,
                prompt_tokens=0,
                completion_tokens=0,
                latency_ms=latency_s * 1000,
                output_chars=0,
                empty_reason=None,
                user=user,
                error=error,
            )
        )
        self.mode.observe(latency_s, ok=False)

    def auth_failed(self, client: str, code: str) -> None:
        """Audit a failed authentication, at most once per client per minute (with the count since)."""
        now = time.monotonic()
        with self._auth_lock:
            last, count = self._auth_failures.get(client, (float("-inf"), 0))
            if now - last < AUTH_FAILURE_AUDIT_S:
                self._auth_failures[client] = (last, count + 1)
                return
            self._auth_failures[client] = (now, 0)
            if len(self._auth_failures) > 10_000:  # bounded whatever the number of clients
                self._auth_failures.pop(next(iter(self._auth_failures)))
        try:
            self.audit.append("auth_failed", actor=client, reason=code, details={"failures_since_last_entry": count})
        except Exception as exc:
            _log.error("could not audit a failed authentication: %s", exc)

    def close(self) -> None:
        self.store.close()
        self.audit.close()
