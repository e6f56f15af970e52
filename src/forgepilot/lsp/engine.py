"""What the LSP server asks the assistant for, in-process (``Assistant``) or against a gateway (``--server URL``)."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Protocol

import httpx

from forgepilot.assist import Assistant, CompletionInput, TaskInput
from forgepilot.backends.base import CancelToken
from forgepilot.context import Document, OpenFile
from forgepilot.errors import BackendError, BackendHTTPError, BackendUnavailable, Cancelled, ModelError
from forgepilot.monitor import Event, Monitoring, served_completion


class Engine(Protocol):
    async def complete(self, doc: Document, recent: Sequence[OpenFile], cancel: CancelToken) -> dict[str, Any]: ...

    async def prepare(self, doc: Document, recent: Sequence[OpenFile]) -> bool: ...

    async def task(self, name: str, code: str, path: str, language: str | None) -> dict[str, Any]: ...

    async def event(self, event: Event) -> None: ...

    async def aclose(self) -> None: ...


class InProcessEngine:
    """The assistant in this process, watched like the gateway: events, completions and mode go to ``monitoring``."""

    def __init__(self, assistant: Assistant, monitoring: Monitoring | None) -> None:
        self.assistant = assistant
        self.monitoring = monitoring

    async def complete(self, doc: Document, recent: Sequence[OpenFile], cancel: CancelToken) -> dict[str, Any]:
        inp = CompletionInput(document=doc, recent=recent)
        degraded = self.monitoring is not None and self.monitoring.mode.degraded
        if self.monitoring is not None and degraded:
            inp = self.monitoring.degraded_input(inp)
        started = time.perf_counter()
        cid = f"cmpl-{secrets.token_hex(12)}"
        language = doc.language.name if doc.language else None
        try:
            result = await self.assistant.completions.complete(inp, cancel)
        except (BackendError, ModelError) as exc:
            if self.monitoring is not None:
                self.monitoring.failed(
                    time.perf_counter() - started,
                    completion_id=cid,
                    deployment=self.monitoring.deployment,
                    model=inp.model or self.assistant.models.task_model("complete"),
                    language=language,
                    error=exc.one_line(),
                )
            raise
        if self.monitoring is not None:
            self.monitoring.served(
                served_completion(
                    cid, result, deployment=self.monitoring.deployment, language=language, user=None, degraded=degraded
                )
            )
        return {
            "id": cid,
            "text": result.text,
            "model": result.model,
            "mode": result.mode,
            "language": language,
            "reason": result.reason,
            "why": result.why(),
            "degraded": degraded,
            **result.template,
        }

    async def prepare(self, doc: Document, recent: Sequence[OpenFile]) -> bool:
        inp = CompletionInput(document=doc, recent=recent)
        if self.monitoring is not None and self.monitoring.mode.degraded:
            inp = self.monitoring.degraded_input(inp)
        return self.assistant.completions.warm_later(inp)

    async def task(self, name: str, code: str, path: str, language: str | None) -> dict[str, Any]:
        if self.monitoring is not None and self.monitoring.mode.chat_paused():
            raise BackendUnavailable(
                f"the assistant is in degraded mode: {name} is paused while completions recover",
                hint="try again in a few minutes; `forgepilot monitor` shows why",
            )
        result = await self.assistant.tasks.run(name, TaskInput(code=code, path=path, language=language))
        return {"task": name, "text": result.text, "code": result.code, "model": result.model, **result.template}

    async def event(self, event: Event) -> None:
        if self.monitoring is not None:
            await asyncio.to_thread(self.monitoring.store.record_events, [event])

    async def aclose(self) -> None:
        await self.assistant.aclose()
        if self.monitoring is not None:
            self.monitoring.close()


class RemoteEngine:
    """A ForgePilot gateway over HTTP (``FORGEPILOT_API_KEY`` is sent when set)."""

    def __init__(self, base_url: str, client: httpx.AsyncClient | None = None) -> None:
        key = os.environ.get("FORGEPILOT_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(120.0, connect=5.0)
        )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(path, json=body)
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                f"gateway {self.client.base_url} unreachable: {exc}", hint="start it with `forgepilot serve`"
            ) from exc
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except Exception:
                message = response.text[:200]
            raise BackendHTTPError(f"gateway answered {response.status_code}: {message}", status=response.status_code)
        data: dict[str, Any] = response.json()
        return data

    @staticmethod
    def _body(doc: Document, recent: Sequence[OpenFile]) -> dict[str, Any]:
        return {
            "text": doc.text,
            "path": doc.path,
            "cursor": {"offset": doc.offset},
            "language": doc.language.name if doc.language else None,
            "recent_files": [{"path": f.path, "text": f.text} for f in recent],
        }

    async def prepare(self, doc: Document, recent: Sequence[OpenFile]) -> bool:
        return bool((await self._post("/v1/assist/prepare", self._body(doc, recent))).get("warming"))

    async def complete(self, doc: Document, recent: Sequence[OpenFile], cancel: CancelToken) -> dict[str, Any]:
        body = self._body(doc, recent)
        task = asyncio.ensure_future(self._post("/v1/assist/complete", body))
        try:
            return await task
        except asyncio.CancelledError:
            task.cancel()  # closing the request makes the gateway cancel the generation
            raise Cancelled("completion cancelled") from None

    async def task(self, name: str, code: str, path: str, language: str | None) -> dict[str, Any]:
        return await self._post(f"/v1/assist/{name}", {"code": code, "path": path, "language": language})

    async def event(self, event: Event) -> None:
        sent = {k: v for k, v in asdict(event).items() if v is not None and k not in ("deployment", "user")}
        await self._post("/v1/events", {"events": [sent]})

    async def aclose(self) -> None:
        await self.client.aclose()
