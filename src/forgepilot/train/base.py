"""The weights a run starts from, without any hub: an embedded GGUF (dequantised by transformers' ``gguf_file=``
loader, tokenizer and chat template included), another GGUF file, or a local transformers folder.

Export needs a GGUF whose tokenizer the model uses (its metadata is copied into the trained GGUF): a GGUF base is
its own; a transformers folder needs one beside its weights (``*.gguf`` in the folder) or named with
``tokenizer_gguf``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgepilot.backends.embedded import EMBEDDED_MODELS, ModelStore, ProgressFn, sha256_file
from forgepilot.config import Settings
from forgepilot.errors import MissingExtra, UserError


class BaseModelError(UserError):
    """The base model named cannot be found or loaded."""


@dataclass(frozen=True)
class BaseModel:
    """Where a run's starting weights are and what identifies them."""

    ref: str  # as the user named it
    kind: str  # "gguf" or "hf"
    path: Path  # the GGUF file, or the transformers folder
    sha256: str
    #: The GGUF whose tokenizer metadata the exported model carries (None: the folder has none; export refuses).
    tokenizer_gguf: Path | None
    #: The FIM family of the embedded model, if it is one (else the dataset's decides).
    family: str | None


def resolve_base(
    ref: str, settings: Settings, *, tokenizer_gguf: Path | None = None, progress: ProgressFn | None = None
) -> BaseModel:
    """``ref``: an embedded model (``llamacpp:qwen2.5-coder-0.5b`` or its key), a ``.gguf`` file or a folder."""
    key = ref.removeprefix("llamacpp:")
    if key in EMBEDDED_MODELS:
        model = EMBEDDED_MODELS[key]
        path = ModelStore(settings.models_dir).ensure(model, progress=progress)
        return BaseModel(ref, "gguf", path, model.sha256, path, model.family)
    path = Path(ref).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise BaseModelError(f"{path} is not a GGUF file", hint="name a .gguf file or a transformers folder")
        return BaseModel(ref, "gguf", path.resolve(), sha256_file(path), path.resolve(), None)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{path} has no config.json: not a transformers model folder")
        found = sorted(path.glob("*.gguf"))
        template = tokenizer_gguf or (found[0] if found else None)
        return BaseModel(ref, "hf", path.resolve(), _folder_sha256(path), template, None)
    embedded = ", ".join(m.name for m in EMBEDDED_MODELS.values())
    raise BaseModelError(
        f"no base model {ref!r}", hint=f"name an embedded model ({embedded}), a .gguf file or a transformers folder"
    )


def _folder_sha256(folder: Path) -> str:
    """The weights and tokenizer files of a transformers folder, by name and content."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".model", ".txt"):
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()


def import_training() -> tuple[Any, Any, Any]:
    """``torch``, ``transformers`` and ``peft``, or the error naming the extra that installs them."""
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtra(exc.name or "torch", "train") from exc
    return torch, transformers, peft


def compute_precision(torch: Any, device: str, requested: str) -> str:
    """``bf16`` or ``fp32``: what a training step computes in on ``device`` for ``[train] precision``."""
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    # Without native instructions torch emulates bfloat16 on a CPU, slower than float32: only where they exist.
    native = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return "bf16" if native else "fp32"


def load(base: BaseModel, *, device: str, precision: str = "fp32") -> tuple[Any, Any]:
    """The model and its tokenizer. Weights are bfloat16 only on a GPU training in ``bf16`` (``compute_precision``);
    a CPU keeps float32 weights and computes in bfloat16 under autocast."""
    torch, transformers, _ = import_training()
    dtype = torch.bfloat16 if device == "cuda" and precision == "bf16" else torch.float32
    where = base.path.parent if base.kind == "gguf" else base.path
    extra: dict[str, Any] = {"gguf_file": base.path.name} if base.kind == "gguf" else {}
    # Nothing is fetched: a missing file is an error, not a download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(where), **extra)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(where), dtype=dtype, **extra)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BaseModelError(f"transformers could not load {base.path}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # A local file is never a hub id: with no name, peft's checkpoint saving asks no hub whether it is one.
    model.name_or_path = ""
    model.config._name_or_path = ""
    if base.kind == "gguf":
        # transformers flags a GGUF-loaded model as quantised, but its weights are dequantised float tensors:
        # plain weights to train, merge and export.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model.to(device), tokenizer
