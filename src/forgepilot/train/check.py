"""The conversion check: the exported GGUF must predict what the trained model predicts.

On fixed prompts (code the probes use, plus a few training prompts) both models score every next token; the check
reports the mean KL divergence of llama.cpp's distribution from the trained model's, and how often their top
token agrees. Above ``max_kl`` the export is refused: a model that converted wrong never gets registered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forgepilot.backends.llamacpp import import_llama_cpp
from forgepilot.train.base import import_training

#: Code the check always scores (besides a few of the run's own prompts).
CHECK_PROMPTS = (
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "import os\n\n\ndef read_lines(path):\n    with open(path) as f:\n        return [line.rstrip() for line in f]\n",
    "function add(a, b) {\n  return a + b;\n}\n\nmodule.exports = { add };\n",
)


@dataclass(frozen=True)
class ConversionCheck:
    file: str
    kl_mean: float
    kl_max: float
    top1_agreement: float
    tokens: int
    limit: float | None  # None: reported, not enforced (quantised copies lose precision by design)

    @property
    def passed(self) -> bool:
        return self.limit is None or self.kl_mean <= self.limit


def _log_softmax(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))  # type: ignore[no-any-return]


def reference_logprobs(model: Any, token_lists: Sequence[list[int]]) -> list[np.ndarray[Any, Any]]:
    torch, _, _ = import_training()
    out = []
    model.eval()
    with torch.no_grad():
        for ids in token_lists:
            device = next(model.parameters()).device
            logits = model(torch.tensor([ids], device=device)).logits[0].float().cpu().numpy()
            out.append(_log_softmax(logits))
    return out


def gguf_logprobs(path: Path, token_lists: Sequence[list[int]], *, lora: Path | None, threads: int) -> list[Any]:
    llama_cpp = import_llama_cpp()
    n_ctx = max(len(t) for t in token_lists) + 8
    llm = llama_cpp.Llama(
        model_path=str(path),
        lora_path=str(lora) if lora is not None else None,
        n_ctx=n_ctx,
        n_threads=threads,
        logits_all=True,
        verbose=False,
    )
    out = []
    try:
        for ids in token_lists:
            llm.reset()
            llm.eval(ids)
            out.append(_log_softmax(np.array(llm.scores[: len(ids)], dtype=np.float64)))
    finally:
        llm.close()
    return out


def compare(
    reference: Sequence[np.ndarray[Any, Any]],
    candidate: Sequence[np.ndarray[Any, Any]],
    *,
    file: str,
    limit: float | None,
) -> ConversionCheck:
    kls: list[float] = []
    agree = 0
    for ref, got in zip(reference, candidate, strict=True):
        kl = (np.exp(ref) * (ref - got)).sum(axis=-1)
        kls += [float(k) for k in kl]
        agree += int((ref.argmax(axis=-1) == got.argmax(axis=-1)).sum())
    n = len(kls)
    return ConversionCheck(file, float(np.mean(kls)), float(np.max(kls)), agree / n if n else 0.0, n, limit)


def check_prompts(tokenizer: Any, extra: Sequence[list[int]], *, max_tokens: int = 256) -> list[list[int]]:
    """The token lists scored: the fixed prompts and up to three training prompts, each cut to ``max_tokens``."""
    fixed = [list(tokenizer(p, add_special_tokens=False).input_ids) for p in CHECK_PROMPTS]
    return [ids[:max_tokens] for ids in [*fixed, *extra[:3]] if ids]
