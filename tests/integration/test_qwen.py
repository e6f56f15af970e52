"""The embedded default model: special tokens in its vocabulary, and a smoke test that it writes real code."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgepilot.backends import EMBEDDED_MODELS, CompletionRequest, LlamaCppBackend, ModelStore, fim_template
from forgepilot.config import LlamaSettings


def _qwen_backends(qwen: LlamaCppBackend, models_dir: Path) -> list[LlamaCppBackend]:
    backends = [qwen]
    quality = EMBEDDED_MODELS["qwen2.5-coder-1.5b"]
    if not ModelStore(models_dir).status(quality).missing_parts:  # the optional quality tier, when installed
        path = ModelStore(models_dir).ensure(quality)
        backends.append(LlamaCppBackend(quality.name, path=path, template=fim_template(quality.family)))
    return backends


def test_every_qwen_fim_token_is_one_vocabulary_token(qwen: LlamaCppBackend, real_models_dir: Path) -> None:
    template = fim_template("qwen2.5-coder")
    for backend in _qwen_backends(qwen, real_models_dir):
        for token in {*template.special_tokens, *template.stop}:
            ids = backend.vocab_token_ids(token)
            assert len(ids) == 1, (backend.name, token, ids)
            assert backend.host.llm._model.token_get_text(ids[0]) == token


def test_gemma_chat_tokens_are_single_tokens(gemma_path: Path) -> None:
    backend = LlamaCppBackend("llamacpp:gemma-3-270m", path=gemma_path, template=fim_template("gemma3"))
    for token in ("<start_of_turn>", "<end_of_turn>", "<bos>"):
        assert len(backend.vocab_token_ids(token)) == 1, token


def test_control_tokens_inside_user_code_stay_plain_text(qwen: LlamaCppBackend) -> None:
    code = 'SENTINEL = "<|endoftext|>"\n'
    ids = qwen.prompt_tokens(CompletionRequest(prompt=code, suffix="\n"))
    endoftext = qwen.vocab_token_ids("<|endoftext|>")[0]
    assert endoftext not in ids
    fim_ids = [qwen.vocab_token_ids(t)[0] for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")]
    assert [i for i in ids if i in fim_ids] == fim_ids  # exactly one of each, in PSM order


async def test_qwen_completes_add(qwen: LlamaCppBackend) -> None:
    prefix = "def add(a, b):\n"
    result = await qwen.complete(CompletionRequest(prompt=prefix, max_tokens=48, stop=("\ndef ", "\nclass ", "\n\n\n")))
    namespace: dict[str, object] = {}
    exec(prefix + result.text, namespace)  # noqa: S102 - the model's own output, run to prove it is code
    add = namespace["add"]
    assert callable(add) and add(2, 3) == 5 and add("a", "b") == "ab"


async def test_qwen_fills_the_middle(qwen: LlamaCppBackend) -> None:
    request = CompletionRequest(
        prompt="def add(a, b):\n", suffix="\n\n\nprint(add(2, 3))\n", max_tokens=32, stop=("\n\n",)
    )
    result = await qwen.complete(request)
    assert "return a + b" in result.text
    assert "<|" not in result.text  # no template token leaked into the text


@pytest.mark.parametrize("n_ctx", [512])
async def test_settings_reach_llama(qwen_path: Path, n_ctx: int) -> None:
    backend = LlamaCppBackend(
        "llamacpp:q", path=qwen_path, template=fim_template("qwen2.5-coder"), settings=LlamaSettings(n_ctx=n_ctx)
    )
    assert backend.host.llm.n_ctx() == n_ctx and backend.max_context == n_ctx
