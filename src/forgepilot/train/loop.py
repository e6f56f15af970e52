"""The training loop: transformers' ``Trainer`` (checkpoints, resume, progress with ETA) with peft for LoRA.

Batches are formed from examples of similar length (little padding on a CPU, where every padded token costs) in a
seeded order, so a resumed run sees exactly the batches it had left. Ctrl-C asks the loop to stop at the end of
the step, save a checkpoint and exit; a second Ctrl-C stops at once (the last checkpoint is kept).
"""

from __future__ import annotations

import math
import random
import signal
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgepilot.errors import ForgePilotError
from forgepilot.train.base import import_training
from forgepilot.train.examples import IGNORE, Example
from forgepilot.train.plan import Hyperparameters


class TrainingInterrupted(ForgePilotError):
    exit_code = 130
    kind = "interrupted"


@dataclass
class TrainOutcome:
    steps: int
    epochs: float
    #: (step, training loss) after every optimiser step.
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0  # tokens processed (padding excluded) in this session
    seconds: float = 0.0
    resumed_from: int | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def ordered_batches(examples: Sequence[Example], batch_size: int, seed: int) -> list[list[Example]]:
    """Batches of similar length, in a seeded random order."""
    by_length = sorted(examples, key=lambda e: (len(e.input_ids), e.id))
    batches = [list(by_length[i : i + batch_size]) for i in range(0, len(by_length), batch_size)]
    random.Random(seed).shuffle(batches)
    return batches


def pad_batch(batch: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: pad tokens get no attention and no loss. Rows with ``code_labels`` (a run that trains on
    prompt code) get them padded alike; a row without any gets ``IGNORE`` throughout."""
    torch, _, _ = import_training()
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    code = torch.full((len(batch), width), IGNORE, dtype=torch.long) if any("code_labels" in b for b in batch) else None
    for row, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[row, :n] = torch.tensor(b["input_ids"])
        labels[row, :n] = torch.tensor(b["labels"])
        mask[row, :n] = 1
        if code is not None and b.get("code_labels"):
            code[row, :n] = torch.tensor(b["code_labels"])
    padded = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    return padded if code is None else {**padded, "code_labels": code}


class _Interrupt:
    """First Ctrl-C: stop after this step with a checkpoint. Second: stop now."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def prepare_model(model: Any, hp: Hyperparameters) -> Any:
    """The model to optimise: a peft LoRA wrapper, or the model itself for full SFT."""
    _, _, peft = import_training()
    if hp.method != "lora":
        return model
    config = peft.LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=hp.lora_targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated ``is_gradient_checkpointing``: library noise, not the user's.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return peft.get_peft_model(model, config)


def train(
    model: Any,
    examples: Sequence[Example],
    hp: Hyperparameters,
    *,
    pad_id: int,
    checkpoints: Path,
    device: str,
    save_steps: int,
    progress: bool = True,
) -> TrainOutcome:
    """Optimise ``model`` (already prepared) on ``examples``; resumes from the newest checkpoint in ``checkpoints``."""
    torch, transformers, _ = import_training()
    from transformers.trainer_utils import get_last_checkpoint

    batches = ordered_batches(examples, hp.batch_size, hp.seed)
    epochs = max(1, math.ceil(hp.epochs))
    # One epoch's order per epoch, each seeded: the Trainer then reads the rows in sequence.
    rows: list[dict[str, Any]] = []
    for epoch in range(epochs):
        order = batches if epoch == 0 else ordered_batches(examples, hp.batch_size, hp.seed + epoch)
        rows += [_row(e, hp.prompt_loss_weight) for batch in order for e in batch]
    steps_per_epoch = math.ceil(len(batches) / hp.gradient_accumulation)
    max_steps = max(1, round(steps_per_epoch * hp.epochs))
    args = transformers.TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation,
        learning_rate=hp.learning_rate,
        max_steps=max_steps,
        warmup_steps=int(max_steps * hp.warmup_ratio),
        lr_scheduler_type="cosine",
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        report_to=[],
        seed=hp.seed,
        use_cpu=device == "cpu",
        bf16=hp.precision == "bf16",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=not progress,
    )
    outcome = TrainOutcome(steps=0, epochs=hp.epochs)
    counted = _TokenCounter()

    def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
        padded = pad_batch(batch, pad_id)
        counted.tokens += int(padded["attention_mask"].sum())
        return padded

    interrupt = _Interrupt()
    trainer = _make_trainer(
        interrupt,
        rows,
        per_example=hp.loss_average == "example",
        prompt_weight=hp.prompt_loss_weight,
        model=model,
        args=args,
        data_collator=collate,
    )
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None  # type: ignore[no-untyped-call]
    if last is not None:
        outcome.resumed_from = int(Path(last).name.rpartition("-")[2])
    started = time.perf_counter()
    if last is not None and outcome.resumed_from is not None and outcome.resumed_from >= max_steps:
        # Every step is done (the export failed after it): the weights come from the checkpoint as they are.
        trainer._load_from_checkpoint(last)
        state = transformers.TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
    else:
        with interrupt:
            try:
                trainer.train(resume_from_checkpoint=last)
            except KeyboardInterrupt:
                raise TrainingInterrupted(
                    "training stopped at once (second Ctrl-C)", hint="run the same command again to resume"
                ) from None
        state = trainer.state
    outcome.seconds = time.perf_counter() - started
    outcome.tokens = counted.tokens
    outcome.steps = int(state.global_step)
    # The whole run's curve: a resumed trainer's state carries the steps before the checkpoint too.
    outcome.loss_curve = [(int(h["step"]), float(h["loss"])) for h in state.log_history if "loss" in h]
    if interrupt.requested and outcome.steps < max_steps:
        raise TrainingInterrupted(
            f"training stopped at step {outcome.steps} of {max_steps}; a checkpoint is saved in {checkpoints}",
            hint="run the same command again to resume",
        )
    return outcome


def _row(example: Example, prompt_weight: float) -> dict[str, Any]:
    row = {"input_ids": example.input_ids, "labels": example.labels}
    return {**row, "code_labels": example.code_labels} if prompt_weight > 0 else row


@dataclass
class _TokenCounter:
    tokens: int = 0


class _Rows:
    """A map-style dataset over prepared rows (torch's ``Dataset`` protocol)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


def answer_loss(
    model: Any, batch: dict[str, Any], num_items: Any = None, *, per_example: bool = False, prompt_weight: float = 0.0
) -> Any:
    """Cross-entropy over the answer tokens, with the vocabulary projection computed only where answers are.

    Prompts are ~95 % of a completion example and a code model's output layer (150k words) is a third of its
    compute: scoring only the positions that predict an answer token (``logits_to_keep``) makes a step ~1.4x
    faster on a CPU and gives the same loss and gradients.

    ``num_items`` is what the losses of a whole optimiser step (every accumulated micro-batch) are divided by: its
    answer tokens, or with ``per_example`` its examples, each contributing the mean over its own answer tokens.
    Without it, this micro-batch's own count.

    With ``prompt_weight`` and a batch that has ``code_labels``, the prompt's code tokens add their losses at that
    weight (``_weighted_token_losses``); the divisor stays the answers', so answers weigh what they did before.
    """
    if prompt_weight > 0 and "code_labels" in batch:
        row_losses, answered_rows = _weighted_token_losses(model, batch, prompt_weight)
    else:
        row_losses, answered_rows = _answer_token_losses(model, batch)
    if per_example:
        loss = (row_losses / answered_rows.clamp(min=1)).sum()
        return loss / (num_items if num_items is not None else (answered_rows > 0).sum())
    return row_losses.sum() / (num_items if num_items is not None else answered_rows.sum())


def _answer_token_losses(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Per row: the answer tokens' summed loss, and the answer count; the output layer runs from the first answer."""
    torch, _, _ = import_training()
    labels = batch["labels"]
    answer = (labels != IGNORE).any(dim=0).nonzero()
    start = max(1, int(answer[0])) if len(answer) else labels.shape[1] - 1
    keep = torch.arange(start - 1, labels.shape[1] - 1, device=labels.device)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep)
    targets = labels[:, start:]
    token_losses = torch.nn.functional.cross_entropy(
        out.logits.float().reshape(-1, out.logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).reshape(targets.shape)
    return token_losses.sum(dim=1), (targets != IGNORE).sum(dim=1)


#: Every this many prompt positions one code token is scored, at this many times the weight: the same expected loss
#: as scoring all of them. The output layer (150k words) then runs at ~1/4 of ~600 positions instead of all of them
#: (their float32 logits alone would be ~0.7 GB per micro-batch of two); prompts overlap (each line of a file is in
#: ~4 of them), so a quarter of the positions still reaches all of a repository's code.
_CODE_STRIDE = 4


def _weighted_token_losses(model: Any, batch: dict[str, Any], prompt_weight: float) -> tuple[Any, Any]:
    """Per row: the answer tokens' summed loss plus ``prompt_weight`` times the code tokens' (estimated from every
    ``_CODE_STRIDE``-th position), and the answer count.

    The model is called as the Trainer wrapped it (so in its mixed precision), with ``logits_to_keep`` naming the
    scored positions only.
    """
    torch, _, _ = import_training()
    # Position i predicts token i + 1: target column i is input position i + 1.
    answers = batch["labels"][:, 1:]
    is_answer = answers != IGNORE
    code = batch["code_labels"][:, 1:]
    on_stride = torch.arange(code.shape[1], device=code.device) % _CODE_STRIDE == 0
    code = torch.where(on_stride & ~is_answer, code, IGNORE)
    targets = torch.where(is_answer, answers, code)
    weights = is_answer.float() + prompt_weight * _CODE_STRIDE * (code != IGNORE).float()
    scored = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=scored)
    kept = targets[:, scored]
    losses = torch.nn.functional.cross_entropy(
        out.logits.float().reshape(-1, out.logits.shape[-1]), kept.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).reshape(kept.shape)
    return (losses * weights[:, scored]).sum(dim=1), is_answer.sum(dim=1)


def examples_with_answers(batches: Sequence[dict[str, Any]]) -> int:
    """How many rows of ``batches`` carry an answer token (what ``per_example`` losses are divided by)."""
    return sum(int((b["labels"] != IGNORE).any(dim=1).sum()) for b in batches)


def _make_trainer(
    interrupt: _Interrupt, rows: list[dict[str, Any]], *, per_example: bool, prompt_weight: float, **kwargs: Any
) -> Any:
    """A ``Trainer`` that reads rows in the order given and stops cleanly on Ctrl-C (classes made here: transformers
    is imported only when training runs)."""
    _, transformers, _ = import_training()
    from torch.utils.data import SequentialSampler

    callback_base: Any = transformers.TrainerCallback
    trainer_base: Any = transformers.Trainer

    class Watch(callback_base):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if interrupt.requested:
                control.should_save = True
                control.should_training_stop = True

    class SequentialTrainer(trainer_base):  # type: ignore[misc]
        def _get_train_sampler(self, *args: Any, **kw: Any) -> Any:
            return SequentialSampler(self.train_dataset)

        def _get_num_items_in_batch(self, batch_samples: list[Any], device: Any) -> Any:
            if not per_example:
                return super()._get_num_items_in_batch(batch_samples, device)
            # One optimiser step's examples: the Trainer then leaves the sum unscaled by the accumulation steps.
            return examples_with_answers(batch_samples) if self.model_accepts_loss_kwargs else None

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            loss = answer_loss(model, inputs, num_items_in_batch, per_example=per_example, prompt_weight=prompt_weight)
            return (loss, None) if return_outputs else loss

    return SequentialTrainer(train_dataset=_Rows(rows), callbacks=[Watch()], **kwargs)
