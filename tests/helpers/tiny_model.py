"""A few-MB Qwen2-architecture model with random weights and the real Qwen2.5 tokenizer, written as a GGUF the
way ``forgepilot train`` writes its exports: the whole training path runs on it in seconds."""

from __future__ import annotations

from pathlib import Path


def build_tiny_qwen(template: Path, out: Path, *, seed: int = 0) -> Path:
    """``out``: a float16 GGUF of a 2-layer, 64-wide Qwen2 carrying ``template``'s tokenizer (a Qwen2.5 GGUF)."""
    import torch
    import transformers

    from forgepilot.train.gguf_io import write_model

    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=151936,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        # Wide initial weights: peaked next-token distributions, so a wrong conversion shows as divergence.
        initializer_range=0.2,
    )
    model = transformers.Qwen2ForCausalLM(config)
    return write_model(model.state_dict(), config=config, template=template, out=out, name="tiny-qwen2")
