"""What differs between OpenAI-compatible servers, as data: one adapter serves them all.

vLLM and TGI ignore the OpenAI ``suffix`` field, so fill-in-the-middle is sent to them as a raw prompt rendered with
the model family's template; llama.cpp's ``llama-server``, Ollama and OpenAI take ``suffix`` and apply the template
themselves (llama-cpp-python's server is an exception, see its profile). Token counting uses each server's own
tokenize endpoint where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from forgepilot.errors import ConfigError

FimMode = Literal["suffix", "raw"]
#: Request/response shape of a server's tokenize endpoint.
TokenizeDialect = Literal["vllm", "tgi", "llama-server", "llama-cpp-python"]


@dataclass(frozen=True)
class ProviderProfile:
    name: str
    default_base_url: str | None
    fim_mode: FimMode
    #: Path from the server root (not under /v1) and its dialect; None when the server has no tokenizer endpoint.
    tokenize_path: str | None = None
    tokenize_dialect: TokenizeDialect | None = None
    #: Ask for a final usage chunk in streams (``stream_options.include_usage``).
    stream_usage: bool = True
    can_embed: bool = True
    requires_api_key: bool = False
    default_api_key_env: str | None = None


PROVIDERS: dict[str, ProviderProfile] = {
    p.name: p
    for p in (
        ProviderProfile(
            name="openai",
            default_base_url="https://api.openai.com/v1",
            fim_mode="suffix",
            requires_api_key=True,
            default_api_key_env="OPENAI_API_KEY",
        ),
        ProviderProfile(
            name="vllm",
            default_base_url="http://127.0.0.1:8000/v1",
            fim_mode="raw",
            tokenize_path="/tokenize",
            tokenize_dialect="vllm",
            default_api_key_env="VLLM_API_KEY",
        ),
        ProviderProfile(
            name="tgi",
            default_base_url="http://127.0.0.1:8080/v1",
            fim_mode="raw",
            tokenize_path="/tokenize",
            tokenize_dialect="tgi",
            stream_usage=False,
            can_embed=False,
        ),
        ProviderProfile(name="ollama", default_base_url="http://127.0.0.1:11434/v1", fim_mode="suffix"),
        # llama.cpp's own `llama-server`.
        ProviderProfile(
            name="llamacpp-server",
            default_base_url="http://127.0.0.1:8080/v1",
            fim_mode="suffix",
            tokenize_path="/tokenize",
            tokenize_dialect="llama-server",
        ),
        # `python -m llama_cpp.server` from llama-cpp-python. Its 0.3.x `suffix` support sends token id 0 for
        # every FIM token, so FIM goes to it as a raw prompt rendered with the family's template.
        ProviderProfile(
            name="llama-cpp-python",
            default_base_url="http://127.0.0.1:8000/v1",
            fim_mode="raw",
            tokenize_path="/extras/tokenize",
            tokenize_dialect="llama-cpp-python",
            stream_usage=False,
        ),
    )
}


def provider_profile(name: str) -> ProviderProfile:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown HTTP provider {name!r}", hint=f"use one of: {', '.join(sorted(PROVIDERS))}"
        ) from None
