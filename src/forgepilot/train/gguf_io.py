"""GGUF files written for llama.cpp: a trained model, a LoRA adapter, and their quantised copies.

The model file keeps every key of the base GGUF it was trained from (architecture, tokenizer, chat template) and
replaces the tensors, so llama.cpp reads the tokenizer it was trained with. Tensor names come from ``gguf``'s own
map (the one llama.cpp's converter uses). Only architectures whose weights transformers loads from GGUF unchanged
are written (no Q/K permutation, no norm offsets); another one is refused with the list.
Quantisation is llama.cpp's own (``llama_model_quantize`` in llama-cpp-python).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forgepilot.errors import MissingExtra, UserError

#: transformers ``model_type`` -> GGUF architecture, for those written tensor for tensor.
ARCHITECTURES = {"qwen2": "qwen2"}
#: Quantisation kinds offered, by llama.cpp's ``LLAMA_FTYPE_*`` number.
QUANTS = {"q8_0": 7, "q4_k_m": 15}


_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<base>.+)\.lora_(?P<part>[AB])(?:\.[\w-]+)?\.weight$")


class ExportError(UserError):
    """A model or adapter could not be written for llama.cpp."""


def import_gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise MissingExtra("gguf", "train") from exc
    return gguf


@dataclass(frozen=True)
class MetaField:
    key: str
    value: Any
    vtype: Any
    sub_type: Any


@dataclass(frozen=True)
class TemplateMetadata:
    architecture: str
    fields: tuple[MetaField, ...]


@functools.lru_cache(maxsize=4)
def _read_template(path: str, mtime_ns: int) -> TemplateMetadata:
    gguf = import_gguf()
    reader = gguf.GGUFReader(path)  # parsing a 150k-token vocabulary takes seconds: read once per file
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise ExportError(f"{path} has no general.architecture: not a model GGUF")
    fields = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        sub = field.types[1] if len(field.types) > 1 else None
        fields.append(MetaField(key, field.contents(), field.types[0], sub))
    return TemplateMetadata(str(arch_field.contents()), tuple(fields))


def read_metadata(path: Path) -> TemplateMetadata:
    """A GGUF's architecture and every key/value but the ones the writer sets itself."""
    try:
        return _read_template(str(path.resolve()), path.stat().st_mtime_ns)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is not a readable GGUF file: {exc}") from exc


def gguf_arch(model_type: str) -> str:
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise ExportError(
            f"exporting a {model_type!r} model to GGUF is not supported",
            hint=f"supported architectures: {', '.join(sorted(ARCHITECTURES))}",
        )
    return arch


def _name_map(arch: str, n_layers: int) -> Any:
    gguf = import_gguf()
    model_arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
    return gguf.get_tensor_name_map(model_arch, n_layers)


def gguf_tensor_name(name_map: Any, hf_name: str) -> str:
    """``model.layers.3.self_attn.q_proj.weight`` -> ``blk.3.attn_q.weight``."""
    found = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if found is None:
        raise ExportError(f"no GGUF name for tensor {hf_name!r}")
    return str(found)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """Write to ``path.partial`` and rename on success: a failed export (disk full) leaves no half file."""
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportError(f"could not write {path}: {exc.strerror or exc}", hint="free disk space and retry") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _rope_theta(config: Any) -> float:
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    return float(theta)


def _hyperparameters(writer: Any, arch: str, config: Any) -> None:
    """The shape keys llama.cpp reads, from the transformers config (the trained model's, not the template's)."""
    writer.add_uint32(f"{arch}.block_count", config.num_hidden_layers)
    writer.add_uint32(f"{arch}.context_length", config.max_position_embeddings)
    writer.add_uint32(f"{arch}.embedding_length", config.hidden_size)
    writer.add_uint32(f"{arch}.feed_forward_length", config.intermediate_size)
    writer.add_uint32(f"{arch}.attention.head_count", config.num_attention_heads)
    writer.add_uint32(f"{arch}.attention.head_count_kv", config.num_key_value_heads)
    writer.add_float32(f"{arch}.rope.freq_base", _rope_theta(config))
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", float(config.rms_norm_eps))


def write_model(tensors: Mapping[str, Any], *, config: Any, template: Path, out: Path, name: str) -> Path:
    """A float16 GGUF of ``tensors`` (a transformers state dict of a model with ``config``) carrying
    ``template``'s tokenizer and chat template: the GGUF the model (or its base) was loaded from."""
    gguf = import_gguf()
    arch = gguf_arch(config.model_type)
    meta = read_metadata(template)
    if meta.architecture != arch:
        raise ExportError(f"{template} is a {meta.architecture} model, not {arch}")
    name_map = _name_map(arch, config.num_hidden_layers)
    tied_embeddings = bool(getattr(config, "tie_word_embeddings", False))
    with _writing(out) as partial:
        writer = gguf.GGUFWriter(str(partial), arch)
        for f in meta.fields:
            if f.key.startswith(f"{arch}.") or f.key in ("general.name", "general.file_type"):
                continue
            if f.key == "general.quantization_version":
                continue
            writer.add_key_value(f.key, f.value, f.vtype, sub_type=f.sub_type)
        _hyperparameters(writer, arch, config)
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        for hf_name, tensor in tensors.items():
            if hf_name == "lm_head.weight" and tied_embeddings:
                continue
            data = tensor.detach().to("cpu").float().numpy()
            # Norms and biases stay float32 (llama.cpp's converter does the same): they are tiny and sensitive.
            data = data.astype(np.float16) if data.ndim == 2 else data.astype(np.float32)
            writer.add_tensor(gguf_tensor_name(name_map, hf_name), data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def write_lora_adapter(
    adapter: Mapping[str, Any], *, model_type: str, n_layers: int, alpha: float, out: Path, name: str
) -> Path:
    """A PEFT LoRA state dict as a llama.cpp adapter GGUF (``general.type = adapter``, ``*.lora_a`` / ``*.lora_b``)."""
    gguf = import_gguf()
    arch = gguf_arch(model_type)
    name_map = _name_map(arch, n_layers)
    with _writing(out) as partial:
        writer = gguf.GGUFWriter(str(partial), arch)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(alpha))
        writer.add_name(name)
        for key, tensor in adapter.items():
            # base_model.model.model.layers.0.self_attn.q_proj.lora_A[.default].weight
            match = _LORA_KEY.match(key)
            if match is None:
                raise ExportError(f"unexpected adapter tensor {key!r}", hint="only LoRA A/B matrices are exported")
            target = gguf_tensor_name(name_map, match["base"] + ".weight")
            suffix = "lora_a" if match["part"] == "A" else "lora_b"
            writer.add_tensor(f"{target}.{suffix}", tensor.detach().to("cpu").float().numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def quantize(source: Path, out: Path, kind: str, *, threads: int) -> Path:
    """``source`` quantised by llama.cpp to ``kind`` (``q8_0`` or ``q4_k_m``)."""
    if kind not in QUANTS:
        raise ExportError(f"unknown quantisation {kind!r}", hint=f"choose one of: {', '.join(QUANTS)}")
    from forgepilot.backends.llamacpp import import_llama_cpp

    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[kind]
    params.nthread = threads
    with _writing(out) as partial:
        rc = llama_cpp.llama_model_quantize(
            str(source).encode("utf-8"), str(partial).encode("utf-8"), ctypes.byref(params)
        )
        if rc != 0:
            raise ExportError(f"llama.cpp could not quantise {source} to {kind} (code {rc})")
    return out
