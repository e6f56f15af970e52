"""What a run does, decided before it starts: the method (seed 003's rule), the data mix and the run's identity.

The rule, from the seed: with under ~1,000 task samples a LoRA (few parameters, little data, the base's skills kept);
over ~10,000 full fine-tuning (enough data to move every weight); in between a LoRA, unless general data is mixed in,
which keeps general skill under full fine-tuning. The run record says which rule fired.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from forgepilot.config import TrainSettings
from forgepilot.errors import UserError

Method = Literal["lora", "sft"]
METHODS = ("auto", "lora", "sft")


@dataclass(frozen=True)
class MethodChoice:
    method: Method
    rule: str


def choose_method(requested: str, task_samples: int, *, mixed: bool, settings: TrainSettings) -> MethodChoice:
    if requested not in METHODS:
        raise UserError(f"unknown method {requested!r}", hint=f"choose one of: {', '.join(METHODS)}")
    if requested != "auto":
        return MethodChoice(requested, f"asked for: --method {requested}")  # type: ignore[arg-type]
    if task_samples < settings.lora_below:
        return MethodChoice("lora", f"{task_samples} task samples < {settings.lora_below}: LoRA")
    if task_samples > settings.sft_above:
        return MethodChoice("sft", f"{task_samples} task samples > {settings.sft_above}: full SFT")
    if mixed:
        return MethodChoice("sft", f"{task_samples} task samples with general data mixed in: full SFT")
    return MethodChoice("lora", f"{task_samples} task samples, no general data mixed in: LoRA keeps general skill")


@dataclass(frozen=True)
class Mix:
    """Another dataset making up ``share`` of the training examples (``--mix DIR:SHARE``)."""

    path: str
    share: float

    @classmethod
    def parse(cls, text: str) -> Mix:
        path, sep, share = text.rpartition(":")
        try:
            value = float(share)
        except ValueError:
            value = -1.0
        if not sep or not path or not 0.0 < value < 1.0:
            raise UserError(f"--mix {text!r} is not DATASET_DIR:SHARE", hint="e.g. --mix general-data:0.2")
        return cls(path, value)

    def count(self, task_examples: int, available: int) -> int:
        """Examples to take so they are ``share`` of the whole (fewer if the dataset has fewer)."""
        return min(available, round(task_examples * self.share / (1.0 - self.share)))


@dataclass(frozen=True)
class Hyperparameters:
    method: Method
    learning_rate: float
    epochs: float
    batch_size: int
    gradient_accumulation: int
    max_tokens: int
    warmup_ratio: float
    seed: int
    lora_rank: int | None
    lora_alpha: float | None
    lora_dropout: float | None
    lora_targets: list[str] | None
    #: ``bf16`` (autocast; float32 weights on a CPU) or ``fp32``: resolved for the device the run trains on.
    precision: str
    #: How answer-token losses are averaged (``[train] loss_average``, where its default is set).
    loss_average: Literal["token", "example"]
    #: Weight of the loss on a completion prompt's code (``[train] prompt_loss_weight``); 0: answers only.
    prompt_loss_weight: float = 0.0

    @classmethod
    def from_settings(cls, method: Method, s: TrainSettings, *, precision: str) -> Hyperparameters:
        lora = method == "lora"
        return cls(
            method=method,
            precision=precision,
            learning_rate=s.lora_learning_rate if lora else s.sft_learning_rate,
            epochs=s.epochs,
            batch_size=s.batch_size,
            gradient_accumulation=s.gradient_accumulation,
            max_tokens=s.max_tokens,
            warmup_ratio=s.warmup_ratio,
            seed=s.seed,
            lora_rank=s.lora_rank if lora else None,
            lora_alpha=s.lora_alpha if lora else None,
            lora_dropout=s.lora_dropout if lora else None,
            lora_targets=list(s.lora_targets) if lora else None,
            loss_average=s.loss_average,
            prompt_loss_weight=s.prompt_loss_weight,
        )

    def record(self) -> dict[str, Any]:
        return asdict(self)


def run_id(base_sha256: str, dataset_sha256s: list[str], hp: Hyperparameters, mixes: list[Mix]) -> str:
    """Same base, data and settings: the same run (its checkpoints are resumed)."""
    data = {"base": base_sha256, "data": dataset_sha256s, "hp": hp.record(), "mix": [asdict(m) for m in mixes]}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
