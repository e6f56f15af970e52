"""Talking to models: the ``Backend`` interface, the embedded llama.cpp runtime, OpenAI-compatible servers,
FIM templates, the embedded model store and the price table."""

from forgepilot.backends.base import (
    Backend,
    CancelToken,
    ChatMessage,
    ChatRequest,
    Completion,
    CompletionChunk,
    CompletionRequest,
    Cost,
    Priority,
    Segment,
    Timings,
    Usage,
    prompt_text,
)
from forgepilot.backends.embedded import EMBEDDED_MODELS, EmbeddedModel, ModelStatus, ModelStore, embedded_model
from forgepilot.backends.fake import FakeBackend
from forgepilot.backends.fim import FimTemplate, RepoFile, defang, fim_template, known_families
from forgepilot.backends.llamacpp import LlamaCppBackend
from forgepilot.backends.openai_http import OpenAICompatibleBackend
from forgepilot.backends.pool import Endpoint, EndpointPool, EndpointStatus
from forgepilot.backends.pricing import Price, PriceTable, builtin_price_table
from forgepilot.backends.providers import PROVIDERS, ProviderProfile, provider_profile
from forgepilot.backends.resolve import ModelEntry, list_models, open_backend
from forgepilot.backends.trained import TrainedModel, find_trained, list_trained

__all__ = [
    "Endpoint",
    "EndpointPool",
    "EndpointStatus",
    "TrainedModel",
    "find_trained",
    "list_trained",
    "EMBEDDED_MODELS",
    "PROVIDERS",
    "Backend",
    "CancelToken",
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "CompletionChunk",
    "CompletionRequest",
    "Cost",
    "EmbeddedModel",
    "FakeBackend",
    "FimTemplate",
    "LlamaCppBackend",
    "ModelEntry",
    "ModelStatus",
    "ModelStore",
    "OpenAICompatibleBackend",
    "Price",
    "PriceTable",
    "ProviderProfile",
    "Priority",
    "RepoFile",
    "Segment",
    "Timings",
    "Usage",
    "builtin_price_table",
    "defang",
    "embedded_model",
    "fim_template",
    "known_families",
    "list_models",
    "open_backend",
    "prompt_text",
    "provider_profile",
]
