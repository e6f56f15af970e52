"""The assistant's use cases: completion (modes, post-processing, cache) and chat tasks, on tiered models."""

from forgepilot.assist.completion import AssistCompletion, CompletionInput, CompletionService
from forgepilot.assist.models import ModelPool
from forgepilot.assist.postprocess import MODES, Mode, infer_mode, postprocess
from forgepilot.assist.service import Assistant
from forgepilot.assist.tasks import TASKS, ChatTasks, TaskInput, TaskResult

__all__ = [
    "MODES",
    "TASKS",
    "AssistCompletion",
    "Assistant",
    "ChatTasks",
    "CompletionInput",
    "CompletionService",
    "Mode",
    "ModelPool",
    "TaskInput",
    "TaskResult",
    "infer_mode",
    "postprocess",
]
