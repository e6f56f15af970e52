"""The assistant's use cases: completion (modes, post-processing, cache) and chat tasks, on tiered models."""

from forgepilot.assist.citations import Citation, attach_sources, check_citations
from forgepilot.assist.completion import AssistCompletion, CompletionCache, CompletionInput, CompletionService
from forgepilot.assist.fitting import Fitted, fit_prompt
from forgepilot.assist.models import ModelPool
from forgepilot.assist.postprocess import MODES, Mode, infer_mode, postprocess
from forgepilot.assist.service import Assistant
from forgepilot.assist.tasks import TASKS, ChatTasks, MissingField, TaskInput, TaskResult, UnknownRepository

__all__ = [
    "MODES",
    "TASKS",
    "AssistCompletion",
    "Assistant",
    "ChatTasks",
    "Citation",
    "CompletionCache",
    "CompletionInput",
    "CompletionService",
    "Fitted",
    "MissingField",
    "Mode",
    "ModelPool",
    "TaskInput",
    "TaskResult",
    "UnknownRepository",
    "attach_sources",
    "check_citations",
    "fit_prompt",
    "infer_mode",
    "postprocess",
]
