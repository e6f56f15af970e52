"""The parts of ``forgepilot train`` that need no model file: the method rule, mixes, batching, the loss on answer
tokens, the conversion comparison, the dataset reader, trained-model names, and the CLI's early errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from forgepilot.backends.fim import fim_template
from forgepilot.backends.llamacpp import LlamaCppBackend
from forgepilot.backends.resolve import list_models, model_identity, open_backend
from forgepilot.backends.trained import TrainedModel, find_trained
from forgepilot.cli import main
from forgepilot.config import ModelConfig, Settings, TrainSettings
from forgepilot.datagen.dataset import Dataset, DatasetError
from forgepilot.datagen.formats import instance_row
from forgepilot.datagen.types import Instance
from forgepilot.errors import UserError
from forgepilot.train.base import compute_precision
from forgepilot.train.check import compare
from forgepilot.train.examples import IGNORE, Example, _segments
from forgepilot.train.plan import Hyperparameters, Mix, choose_method, run_id


@pytest.mark.parametrize(
    ("samples", "mixed", "method", "words"),
    [
        (300, False, "lora", "300 task samples < 1000: LoRA"),
        (20000, False, "sft", "> 10000: full SFT"),
        (5000, False, "lora", "no general data mixed in: LoRA"),
        (5000, True, "sft", "general data mixed in: full SFT"),
    ],
)
def test_auto_method_follows_the_seed_rule(samples: int, mixed: bool, method: str, words: str) -> None:
    choice = choose_method("auto", samples, mixed=mixed, settings=TrainSettings())
    assert choice.method == method and words in choice.rule


def test_an_asked_method_wins_and_an_unknown_one_is_refused() -> None:
    assert choose_method("sft", 10, mixed=False, settings=TrainSettings()).rule == "asked for: --method sft"
    with pytest.raises(UserError, match="unknown method"):
        choose_method("qlora", 10, mixed=False, settings=TrainSettings())


def test_mix_parses_and_sizes_its_share() -> None:
    mix = Mix.parse("general:0.25")
    assert mix == Mix("general", 0.25)
    assert mix.count(300, 1000) == 100  # 100 of 400 is a quarter
    assert mix.count(300, 40) == 40
    for bad in ("general", "general:1.5", "general:x", ":0.2"):
        with pytest.raises(UserError, match="DATASET_DIR:SHARE"):
            Mix.parse(bad)


def _torch_with(*, cuda_bf16: bool, cpu_bf16: bool, amx: bool = False) -> SimpleNamespace:
    """What ``compute_precision`` asks of torch, for a machine with or without native bfloat16."""
    return SimpleNamespace(
        cuda=SimpleNamespace(is_bf16_supported=lambda: cuda_bf16),
        cpu=SimpleNamespace(_is_avx512_bf16_supported=lambda: cpu_bf16, _is_amx_tile_supported=lambda: amx),
    )


def test_precision_is_bfloat16_only_where_the_hardware_has_it_unless_asked() -> None:
    plain_cpu, bf16_cpu = _torch_with(cuda_bf16=False, cpu_bf16=False), _torch_with(cuda_bf16=False, cpu_bf16=True)
    assert compute_precision(bf16_cpu, "cpu", "auto") == "bf16"
    assert compute_precision(_torch_with(cuda_bf16=False, cpu_bf16=False, amx=True), "cpu", "auto") == "bf16"
    assert compute_precision(plain_cpu, "cpu", "auto") == "fp32"  # emulated bfloat16 is slower than float32
    assert compute_precision(_torch_with(cuda_bf16=False, cpu_bf16=True), "cuda", "auto") == "fp32"
    assert compute_precision(_torch_with(cuda_bf16=True, cpu_bf16=False), "cuda", "auto") == "bf16"
    assert compute_precision(bf16_cpu, "cpu", "fp32") == "fp32"
    assert compute_precision(plain_cpu, "cpu", "bf16") == "bf16"
    with pytest.raises(ValueError):
        TrainSettings(precision="fp16")  # type: ignore[arg-type]


def test_the_precision_is_part_of_a_runs_identity() -> None:
    bf16, fp32 = (Hyperparameters.from_settings("lora", TrainSettings(), precision=p) for p in ("bf16", "fp32"))
    assert run_id("base", ["data"], bf16, []) != run_id("base", ["data"], fp32, [])
    assert run_id("base", ["data"], bf16, []) == run_id("base", ["data"], bf16, [])


def _example(i: int, n: int) -> Example:
    return Example(str(i), "inline", list(range(n)), [IGNORE] * (n - 2) + [1, 2])


def test_batches_group_similar_lengths_in_a_seeded_order() -> None:
    from forgepilot.train.loop import ordered_batches, pad_batch

    examples = [_example(i, n) for i, n in enumerate([5, 50, 6, 51, 7, 52, 8, 53])]
    batches = ordered_batches(examples, 2, seed=1)
    assert batches == ordered_batches(examples, 2, seed=1)
    assert all(abs(len(a.input_ids) - len(b.input_ids)) <= 1 for a, b in batches)
    padded = pad_batch([{"input_ids": e.input_ids, "labels": e.labels} for e in batches[0]], pad_id=0)
    assert padded["input_ids"].shape == padded["labels"].shape == padded["attention_mask"].shape
    short = int(padded["attention_mask"][0].sum())
    assert (padded["labels"][0, short:] == IGNORE).all()


def _tiny_qwen() -> Any:
    """A one-layer Qwen2 with random weights (seeded), wide enough apart that each example has its own loss (at the
    default 0.02 every loss is ~ln(300), and no way of averaging them could be told from another)."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=128, initializer_range=0.5,
    )  # fmt: skip
    return transformers.Qwen2ForCausalLM(config)


def test_answer_loss_equals_the_full_loss() -> None:
    """Scoring only answer positions gives the loss transformers computes over every position."""
    from forgepilot.train.loop import answer_loss, pad_batch

    model = _tiny_qwen()
    rows = [
        {"input_ids": list(range(1, 41)), "labels": [IGNORE] * 30 + list(range(31, 41))},
        {"input_ids": list(range(5, 30)), "labels": [IGNORE] * 20 + list(range(25, 30))},
    ]
    batch = pad_batch(rows, pad_id=0)
    ours = float(answer_loss(model, batch).detach())
    full = float(model(**batch).loss.detach())
    assert ours == pytest.approx(full, rel=1e-5)


def test_answer_loss_per_example_weighs_every_example_the_same() -> None:
    """``per_example``: the mean of each example's own mean answer loss, however long its answer; divided by the
    examples of a whole accumulated step when that count is given."""
    from forgepilot.train.loop import answer_loss, examples_with_answers, pad_batch

    model = _tiny_qwen()
    rows = [
        {"input_ids": list(range(1, 41)), "labels": [IGNORE] * 10 + list(range(11, 41))},  # 30 answer tokens
        {"input_ids": list(range(5, 30)), "labels": [IGNORE] * 22 + list(range(27, 30))},  # 3 answer tokens
    ]
    alone = [float(model(**pad_batch([r], pad_id=0)).loss.detach()) for r in rows]
    batch = pad_batch(rows, pad_id=0)
    per_example = float(answer_loss(model, batch, per_example=True).detach())
    per_token = float(answer_loss(model, batch).detach())
    assert per_example == pytest.approx(sum(alone) / 2, rel=1e-5)
    assert per_token == pytest.approx((30 * alone[0] + 3 * alone[1]) / 33, rel=1e-5)
    # Two micro-batches of one optimiser step: each is divided by the step's 4 examples, not by its own 2.
    assert examples_with_answers([batch, batch]) == 4
    half = float(answer_loss(model, batch, 4, per_example=True).detach())
    assert half == pytest.approx(per_example / 2, rel=1e-5)


def _token_losses(model: Any, row: dict[str, Any], key: str) -> list[tuple[int, float]]:
    """(target column, loss) of each ``key`` target from the full logits (column i: position i predicts token i + 1)."""
    import torch

    logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1].float()
    targets = torch.tensor(row[key][1:])
    losses = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="none")
    return [(i, float(x)) for i, (x, t) in enumerate(zip(losses.detach(), targets, strict=True)) if t != IGNORE]


@pytest.mark.parametrize("stride", [1, 4])
def test_prompt_loss_adds_the_code_tokens_at_their_weight(stride: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``prompt_weight`` the code tokens of the prompt add their losses at that weight (every ``stride``-th
    column at ``stride`` times it), the markers (``IGNORE`` in ``code_labels``) add nothing, and the divisor stays the
    answer tokens' (or the examples'); at weight 0, the answers' alone."""
    import torch

    from forgepilot.train import loop
    from forgepilot.train.loop import answer_loss, pad_batch

    monkeypatch.setattr(loop, "_CODE_STRIDE", stride)
    model = _tiny_qwen()
    rows = [
        {"input_ids": list(range(1, 41)), "labels": [IGNORE] * 30 + list(range(31, 41)),
         "code_labels": [IGNORE] * 2 + list(range(3, 15)) + [IGNORE] + list(range(16, 30)) + [IGNORE] * 11},
        {"input_ids": list(range(5, 30)), "labels": [IGNORE] * 20 + list(range(25, 30)),
         "code_labels": [IGNORE] + list(range(6, 25)) + [IGNORE] * 5},
    ]  # fmt: skip
    answers = [sum(x for _, x in _token_losses(model, r, "labels")) for r in rows]
    code = [[(i, x) for i, x in _token_losses(model, r, "code_labels") if i % stride == 0] for r in rows]
    assert [len(c) for c in code] == ([26, 19] if stride == 1 else [6, 5])
    batch = pad_batch(rows, pad_id=0)
    weighted = [a + 0.1 * stride * sum(x for _, x in c) for a, c in zip(answers, code, strict=True)]

    per_token = answer_loss(model, batch, prompt_weight=0.1)
    assert float(per_token.detach()) == pytest.approx(sum(weighted) / 15, rel=1e-5)
    per_example = float(answer_loss(model, batch, per_example=True, prompt_weight=0.1).detach())
    assert per_example == pytest.approx((weighted[0] / 10 + weighted[1] / 5) / 2, rel=1e-5)
    plain = float(answer_loss(model, batch).detach())
    assert plain == pytest.approx(sum(answers) / 15, rel=1e-5)
    # The code tokens reach the weights: the gradient differs from the answers' alone.
    per_token.backward()
    with_code = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    answer_loss(model, batch).backward()
    assert any(not torch.allclose(a, p.grad) for a, p in zip(with_code, model.parameters(), strict=True))


def test_only_a_run_with_a_prompt_weight_carries_code_labels() -> None:
    from forgepilot.train.loop import _row, pad_batch

    example = Example("a", "inline", [1, 2, 3, 4], [IGNORE, IGNORE, 3, 4], [IGNORE, 2, IGNORE, IGNORE])
    assert "code_labels" not in _row(example, 0.0)
    assert _row(example, 0.1)["code_labels"] == [IGNORE, 2, IGNORE, IGNORE]
    chat = Example("b", "tests", [1, 2, 3], [IGNORE, 2, 3])  # chat examples have no code labels
    padded = pad_batch([_row(example, 0.1), _row(chat, 0.1)], pad_id=0)
    assert padded["code_labels"].tolist() == [[IGNORE, 2, IGNORE, IGNORE], [IGNORE] * 4]


@pytest.mark.parametrize("loss_average", ["token", "example"])
def test_an_accumulated_step_averages_over_the_whole_step(loss_average: str, tmp_path: Path) -> None:
    """One optimiser step over micro-batches of two examples and of one logs the loss of all three together: each
    answer token weighing the same (``token``) or each example (``example``), never a mean of micro-batch means."""
    from forgepilot.train.loop import train

    model = _tiny_qwen()
    examples = [
        Example("long", "in_block", list(range(1, 41)), [IGNORE] * 10 + list(range(11, 41))),
        Example("short", "inline", list(range(5, 30)), [IGNORE] * 22 + list(range(27, 30))),
        Example("mid", "inline", list(range(40, 60)), [IGNORE] * 12 + list(range(52, 60))),
    ]
    alone = [(float(model(**_tensors(e)).loss.detach()), e.answer_tokens) for e in examples]
    hp = Hyperparameters(
        method="sft", learning_rate=1e-6, epochs=1.0, batch_size=2, gradient_accumulation=2, max_tokens=64,
        warmup_ratio=0.0, seed=0, lora_rank=None, lora_alpha=None, lora_dropout=None, lora_targets=None,
        precision="fp32", loss_average=loss_average,
    )  # fmt: skip
    outcome = train(model, examples, hp, pad_id=0, checkpoints=tmp_path, device="cpu", save_steps=99, progress=False)
    if loss_average == "token":
        expected = sum(loss * n for loss, n in alone) / sum(n for _, n in alone)
    else:
        expected = sum(loss for loss, _ in alone) / len(alone)
    assert outcome.steps == 1 and outcome.loss_curve[0][1] == pytest.approx(expected, rel=1e-3)


def _tensors(example: Example) -> dict[str, Any]:
    from forgepilot.train.loop import pad_batch

    return pad_batch([{"input_ids": example.input_ids, "labels": example.labels}], pad_id=0)


def test_compare_measures_divergence() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 50)) * 3
    ref = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    same = compare([ref], [ref], file="same", limit=0.01)
    assert same.passed and same.kl_mean == pytest.approx(0.0, abs=1e-12) and same.top1_agreement == 1.0
    other = logits[:, ::-1]
    other = other - np.log(np.exp(other).sum(-1, keepdims=True))
    wrong = compare([ref], [other], file="wrong", limit=0.01)
    assert not wrong.passed and wrong.kl_mean > 1.0
    assert compare([ref], [other], file="quantised", limit=None).passed  # reported, not enforced


def test_old_instances_are_split_at_the_formats_markers() -> None:
    inst = Instance("inline", "python", "r", "a.py", 1, 1, "", "", "x", {})
    inst.fim_prompt = "<|fim_prefix|>def f():\n<|fim_suffix|>\n<|fim_middle|>"
    assert _segments(inst, fim_template("qwen2.5-coder")) == [
        ("<|fim_prefix|>", True),
        ("def f():\n", False),
        ("<|fim_suffix|>", True),
        ("\n", False),
        ("<|fim_middle|>", True),
    ]
    inst.fim_segments = [["<|fim_prefix|>", True], ["a", False]]
    assert _segments(inst, fim_template("qwen2.5-coder")) == [("<|fim_prefix|>", True), ("a", False)]


def _write_dataset(folder: Path, rows: list[str], card: dict[str, object] | None = None) -> Path:
    (folder / "instances").mkdir(parents=True)
    (folder / "instances" / "train.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "card.json").write_text(json.dumps(card if card is not None else {"schema_version": 1}))
    return folder


def test_dataset_reader_reads_instances_and_names_bad_lines(tmp_path: Path) -> None:
    inst = Instance("inline", "python", "r", "a.py", 1, 1, "", "p", "x", {}, split="train").finish()
    good = json.dumps(instance_row(inst))
    ds = Dataset.open(_write_dataset(tmp_path / "ok", [good]))
    assert ds.splits == ["train"] and [i.id for i in ds.instances("train")] == [inst.id]
    assert Dataset.open(tmp_path / "ok" / "instances" / "train.jsonl").card is not None  # one split file: same card
    bad = Dataset.open(_write_dataset(tmp_path / "bad", [good, "{oops"]))
    with pytest.raises(DatasetError, match=r"train\.jsonl:2: not JSON"):
        list(bad.instances())
    with pytest.raises(DatasetError, match="schema 7"):
        Dataset.open(_write_dataset(tmp_path / "new", [good], {"schema_version": 7}))
    with pytest.raises(DatasetError, match="has no 'test' split"):
        list(ds.rows("test"))
    with pytest.raises(DatasetError, match="no instances"):
        Dataset.open(tmp_path)


def test_trained_models_are_named_served_and_identified(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path / "state")
    folder = s.models_dir / "trained" / "mine"
    folder.mkdir(parents=True)
    (folder / "model-q4_k_m.gguf").write_bytes(b"GGUF")
    TrainedModel(
        "mine", "qwen2.5-coder", folder, "model-q4_k_m.gguf", "adapter.gguf", "/models/base.gguf",
        {"model-q4_k_m.gguf": "a" * 64, "adapter.gguf": "b" * 64}, "run1",
    ).write()  # fmt: skip
    assert find_trained(s.models_dir, "mine") is not None
    assert find_trained(s.models_dir, "mine-lora") is not None and find_trained(s.models_dir, "other") is None
    merged = open_backend("llamacpp:mine", s)
    assert isinstance(merged, LlamaCppBackend) and merged.path == folder / "model-q4_k_m.gguf" and merged.lora is None
    adapter = open_backend("llamacpp:mine-lora", s)
    assert isinstance(adapter, LlamaCppBackend) and adapter.path == Path("/models/base.gguf")
    assert adapter.lora == folder / "adapter.gguf"
    assert model_identity("llamacpp:mine", s)["sha256"] == "a" * 64
    assert model_identity("llamacpp:mine-lora", s)["sha256"] == "b" * 64
    assert {"llamacpp:mine", "llamacpp:mine-lora"} <= {m.name for m in list_models(s)}


def test_train_cli_fails_early_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "forgepilot.toml"
    cfg.write_text('default_model = "fake:coder"\n[models."fake:coder"]\nfamily = "qwen2.5-coder"\n')
    code = main(["train", str(tmp_path / "missing"), "--out", "m"])
    err = capsys.readouterr().err
    assert code == 2 and "no such dataset folder" in err
    code = main(["train", str(tmp_path / "missing"), "--out", "../m"])
    assert code == 2 and "not allowed" in capsys.readouterr().err
    code = main(["train", str(tmp_path), "--mix", "other", "--out", "m"])
    assert code == 2 and "DATASET_DIR:SHARE" in capsys.readouterr().err


def test_settings_for_training_are_validated() -> None:
    with pytest.raises(ValueError):
        Settings(train=TrainSettings(lora_rank=0))
    assert ModelConfig(family="qwen2.5-coder")  # unrelated configs are untouched


def test_training_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from forgepilot.errors import MissingExtra
    from forgepilot.train.base import import_training

    monkeypatch.setitem(sys.modules, "peft", None)  # what an install without [train] looks like
    with pytest.raises(MissingExtra) as info:
        import_training()
    assert info.value.one_line().endswith("(pip install 'forgepilot[train]')") and info.value.exit_code == 3
