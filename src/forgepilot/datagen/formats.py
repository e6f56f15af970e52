"""Write instances in the formats trainers take; ``datasets.load_dataset("json", data_files=...)`` loads each.

- ``chat``: OpenAI chat fine-tuning JSONL, ``{"messages": [system, user, assistant]}``.
- ``alpaca``: ``{"instruction", "input", "output"}`` (the system text is the instruction, the user text the input).
- ``deepseek``: the DeepSeek-Coder instruction template, ``{"text": ...}`` ending with ``<|EOT|>``.
- ``fim``: raw fill-in-the-middle text of the serving model's family for the completion kinds: ``{"prompt",
  "completion", "text"}`` where ``prompt`` is exactly what the serving backend sends.
- ``instances``: the full records (context sources, template versions, lineage), flat: the nested fields
  (``context``, ``meta``, ``template``, ``related_paths``) are JSON strings and a missing commit is "", so every split
  has one schema (``datasets`` types a column that is all nulls or empty lists in the first split as null, and
  then cannot load the other splits). ``instance_from_row`` reads a row back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from forgepilot.datagen.types import COMPLETION_KINDS, Instance

FORMATS = ("instances", "chat", "alpaca", "deepseek", "fim")
DEEPSEEK_EOT = "<|EOT|>"


#: Fields of an instance record written as JSON text in the ``instances`` format.
NESTED = ("context", "meta", "template", "related_paths", "fim_segments")


def instance_row(inst: Instance) -> dict[str, Any]:
    row = inst.record()
    for key in NESTED:
        row[key] = json.dumps(row[key], ensure_ascii=False, sort_keys=True)
    row["source_commit"] = row["source_commit"] or ""
    return row


def instance_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """An ``instances`` row with its nested fields decoded (the record ``Instance.record`` gives)."""
    out = dict(row)
    for key in NESTED:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    out["source_commit"] = out.get("source_commit") or None
    return out


def chat(inst: Instance) -> dict[str, Any]:
    messages = []
    if inst.system:
        messages.append({"role": "system", "content": inst.system})
    messages.append({"role": "user", "content": inst.prompt})
    messages.append({"role": "assistant", "content": inst.completion})
    return {"messages": messages}


def alpaca(inst: Instance) -> dict[str, Any]:
    return {"instruction": inst.system, "input": inst.prompt, "output": inst.completion}


def deepseek(inst: Instance) -> dict[str, Any]:
    system = f"{inst.system}\n" if inst.system else ""
    text = f"{system}### Instruction:\n{inst.prompt}\n### Response:\n{inst.completion}\n{DEEPSEEK_EOT}"
    return {"text": text}


def fim(inst: Instance, eos: str) -> dict[str, Any] | None:
    if inst.kind not in COMPLETION_KINDS or not inst.fim_prompt:
        return None
    completion = inst.fim_indent + inst.completion  # what the serving model writes after exactly this prompt
    return {
        "prompt": inst.fim_prompt,
        "completion": completion,
        "text": inst.fim_prompt + completion + eos,
        "format": inst.format,
    }


def write_all(instances: Iterable[Instance], out: Path, *, formats: Iterable[str], eos: str) -> dict[str, Path]:
    """One JSONL file per format and split (``out/FORMAT/SPLIT.jsonl``); returns the files written."""
    wanted = list(formats)
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown formats {unknown}; known: {FORMATS}")
    handles: dict[tuple[str, str], Any] = {}
    written: dict[str, Path] = {}
    try:
        for inst in instances:
            rows: dict[str, dict[str, Any] | None] = {}
            for name in wanted:
                if name == "instances":
                    rows[name] = instance_row(inst)
                elif name == "chat":
                    rows[name] = chat(inst)
                elif name == "alpaca":
                    rows[name] = alpaca(inst)
                elif name == "deepseek":
                    rows[name] = deepseek(inst)
                else:
                    rows[name] = fim(inst, eos)
            for name, row in rows.items():
                if row is None:
                    continue
                key = (name, inst.split)
                if key not in handles:
                    path = out / name / f"{inst.split}.jsonl"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    handles[key] = path.open("w", encoding="utf-8")
                    written[f"{name}/{inst.split}"] = path
                handles[key].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for h in handles.values():
            h.close()
    return written
