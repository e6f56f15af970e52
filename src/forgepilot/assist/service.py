"""The assistant as one object: models, context, completion and chat tasks, shared by gateway, LSP and CLI."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from forgepilot.assist.completion import CompletionService
from forgepilot.assist.models import ModelPool
from forgepilot.assist.tasks import ChatTasks
from forgepilot.backends.base import Backend
from forgepilot.config import Settings
from forgepilot.context import ContextBuilder
from forgepilot.index.indexer import Workspace


def workspace_dir(settings: Settings) -> Path:
    return settings.state_dir / "index"


class Assistant:
    def __init__(
        self,
        settings: Settings,
        *,
        workspace: Workspace | None,
        preset: Mapping[str, Backend] | None = None,
    ) -> None:
        self.settings = settings
        self.workspace = workspace
        self.models = ModelPool(settings, preset)
        self.builder = ContextBuilder(workspace, settings.context)
        self.completions = CompletionService(self.models, self.builder, settings.assist, settings.guards)
        self.tasks = ChatTasks(self.models, self.builder, self.builder.prompts, settings.guards)

    @classmethod
    def open(cls, settings: Settings, *, preset: Mapping[str, Backend] | None = None, index: bool = True) -> Assistant:
        """The assistant over the workspace index in the state dir (``index=False``: no repository context)."""
        return cls(settings, workspace=Workspace(workspace_dir(settings)) if index else None, preset=preset)

    async def aclose(self) -> None:
        await self.completions.aclose()
        await self.models.aclose()
        self.builder.close()
        if self.workspace is not None:
            self.workspace.close()
