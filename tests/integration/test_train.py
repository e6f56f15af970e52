"""``forgepilot train`` on real parts, sized for CI: a few-MB Qwen2-architecture model with random weights and the
real Qwen2.5 tokenizer, trained a few steps on a dataset built from the fixture repositories, exported to GGUF,
checked against llama.cpp, registered, and served by the llama.cpp backend (merged and as an adapter)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgepilot.backends import CompletionRequest
from forgepilot.backends.base import Segment
from forgepilot.backends.fim import fim_template
from forgepilot.backends.llamacpp import LlamaCppBackend
from forgepilot.backends.resolve import list_models, open_backend
from forgepilot.cli import main
from forgepilot.config import DatasetSettings, LlamaSettings, ModelConfig, Settings, TrainSettings
from forgepilot.datagen.dataset import Dataset, DatasetError
from forgepilot.datagen.pipeline import BuildOptions, open_builder
from forgepilot.errors import UserError
from forgepilot.registry import open_registry
from forgepilot.train import (
    BaseModelError,
    Encoder,
    ExportError,
    TrainingInterrupted,
    TrainReport,
    TrainRequest,
    run_training,
)
from forgepilot.train import check as conversion
from forgepilot.train import loop as loop_mod
from forgepilot.train.base import load, resolve_base
from forgepilot.train.gguf_io import write_model
from tests.helpers.tiny_model import build_tiny_qwen

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datagen"


def settings_for(root: Path) -> Settings:
    return Settings(
        state_dir=root / "state",
        default_model="fake:coder",
        models={"fake:coder": ModelConfig(family="qwen2.5-coder", provider="fake")},
        dataset=DatasetSettings(test_share=0.2, valid_share=0.0),
        train=TrainSettings(quants=["q8_0"], batch_size=2, save_steps=1, threads=2),
        llama=LlamaSettings(n_ctx=2048),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, qwen_path: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    tiny = build_tiny_qwen(qwen_path, root / "tiny-qwen2.gguf")
    dataset = root / "dataset"
    open_builder(settings_for(root)).build([FIXTURES / "python"], BuildOptions(out=dataset))
    return {"tiny": tiny, "dataset": dataset}


@pytest.fixture
def s(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


def complete(backend: Any, prompt: str) -> str:
    async def go() -> str:
        try:
            done = await backend.complete(CompletionRequest(prompt=prompt, suffix="\n", max_tokens=8, seed=0))
            return str(done.text)
        finally:
            await backend.aclose()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def trained(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, TrainReport]:
    """One model trained two steps, shared by the tests that serve and judge it."""
    s = settings_for(tmp_path_factory.mktemp("trained"))
    report = run_training(
        TrainRequest(dataset=world["dataset"], base=str(world["tiny"]), name="tiny-ft", max_steps=2), s, progress=False
    )
    return s, report


def test_train_export_check_register_and_serve(world: dict[str, Path], trained: tuple[Settings, TrainReport]) -> None:
    s, report = trained
    assert report.choice.method == "lora" and "< 1000: LoRA" in report.choice.rule
    assert [step for step, _ in report.outcome.loss_curve] == [1, 2]
    assert {c.file for c in report.checks} == {"model-f16.gguf", "model-q8_0.gguf", "adapter.gguf"}
    assert all(c.passed for c in report.checks)
    assert report.served_as == ["llamacpp:tiny-ft", "llamacpp:tiny-ft-lora"]

    folder = s.models_dir / "trained" / "tiny-ft"
    record = json.loads((folder / "train.json").read_text())
    assert record["base"]["sha256"] and record["dataset"]["sha256"] == Dataset.open(world["dataset"]).sha256()
    assert record["hyperparameters"]["method"] == "lora" and len(record["loss_curve"]) == 2
    assert record["code"]["version"] and record["files"]["q8_0"]["file"] == "model-q8_0.gguf"
    assert not list(folder.parent.glob(".*partial"))

    names = {m.name for m in list_models(s)}
    assert {"llamacpp:tiny-ft", "llamacpp:tiny-ft-lora"} <= names
    merged = open_backend("llamacpp:tiny-ft", s)
    assert isinstance(merged, LlamaCppBackend) and merged.path == folder / "model-q8_0.gguf" and merged.lora is None
    adapter = open_backend("llamacpp:tiny-ft-lora", s)
    assert isinstance(adapter, LlamaCppBackend) and adapter.path == world["tiny"] and adapter.lora is not None
    # llama.cpp loads and runs both (random weights: any text will do, the run must not fail).
    assert isinstance(complete(merged, "def add(a, b):\n    "), str)
    assert isinstance(complete(adapter, "def add(a, b):\n    "), str)

    registry = open_registry(s.state_dir)
    try:
        models = [e for e in registry.entities("model") if e.name == "llamacpp:tiny-ft"]
        assert len(models) == 1
        edges = {(e.relation, e.dst_type) for e in registry.edges_from("model", models[0].id)}
        assert {("trained_on", "dataset"), ("fine_tuned_from", "model")} <= edges
    finally:
        registry.close()


def test_forgepilot_serve_serves_the_trained_model(
    world: dict[str, Path], trained: tuple[Settings, TrainReport], tmp_path: Path
) -> None:
    s, _ = trained
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "util.py").write_text("def add(a, b):\n    return a + b\n")
    env = {**os.environ, "FORGEPILOT_STATE_DIR": str(s.state_dir), "FORGEPILOT_LLAMA__N_CTX": "2048"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forgepilot", "serve", str(repo), "--port", "0", "--no-embeddings",
         "--model", "llamacpp:tiny-ft"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.search(r"serving \S+ on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url is not None, proc.communicate(timeout=10)[1] if proc.poll() is not None else "no serving line"
        body = {"text": "def add(a, b):\n    \n", "path": "util2.py", "cursor": {"line": 1, "character": 4}}
        reply = httpx.post(f"{url}/v1/assist/complete", json=body | {"max_tokens": 4}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "llamacpp:tiny-ft", reply.json()
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_gate_run_judges_the_trained_model(
    world: dict[str, Path], trained: tuple[Settings, TrainReport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, _ = trained
    spec = tmp_path / "gate.yaml"
    spec.write_text(
        "schema_version: 1\nname: tiny-release\n"
        f"candidate: {{model: llamacpp:tiny-ft, dataset: {world['dataset']}}}\n"
        f"suites:\n  repo: {{suite: {world['dataset']}, limit: 3}}\n"
        "checks:\n  - {type: metric, suite: repo, metric: es, min: 0.0}\n"
    )
    monkeypatch.setenv("FORGEPILOT_STATE_DIR", str(s.state_dir))
    monkeypatch.setenv("FORGEPILOT_LLAMA__N_CTX", "2048")
    assert main(["gate", "run", str(spec), "--out", str(tmp_path / "dossier")]) == 0
    registry = open_registry(s.state_dir)
    try:
        decisions = registry.entities("decision")
        assert decisions and decisions[0].data["decision"] == "PASS"
        assert decisions[0].data["lineage"]["dataset"]["path"] == str(world["dataset"])
    finally:
        registry.close()


def test_training_tokens_are_the_serving_tokens(world: dict[str, Path], s: Settings) -> None:
    """The prompt a completion instance trains on is token for token what the llama.cpp backend sends."""
    base = resolve_base(str(world["tiny"]), s)
    _, tokenizer = load(base, device="cpu")
    template = fim_template("qwen2.5-coder")
    encoder = Encoder(tokenizer, template, max_tokens=4096)
    backend = LlamaCppBackend("t", path=world["tiny"], template=template, settings=LlamaSettings(n_ctx=2048))
    checked = 0
    for inst in Dataset.open(world["dataset"]).instances("train"):
        if not inst.fim_segments:
            continue
        example = encoder.encode(inst)
        assert not isinstance(example, str)
        segments = tuple(Segment(t, control=c) for t, c in inst.fim_segments)
        served = backend.prompt_tokens(CompletionRequest(prompt=inst.fim_prompt, segments=segments))
        n_prompt = example.labels.index(next(t for t in example.labels if t != -100))
        assert example.input_ids[:n_prompt] == served
        assert example.input_ids[-1] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
        # The code a prompt-weighted run trains on: the prompt's plain text, never a marker, never the answer.
        spans = [len(encoder.control(t) if c else encoder.plain(t)) * [c] for t, c in inst.fim_segments]
        from_control = [c for span in spans for c in span]
        assert len(from_control) == n_prompt
        code = [(i, t) for i, t in enumerate(example.code_labels) if t != -100]
        assert code and all(i < n_prompt and example.input_ids[i] == t and not from_control[i] for i, t in code)
        assert len(code) == from_control.count(False)
        checked += 1
    assert checked >= 5
    # Repository text that spells a control token is never trained on.
    inst = next(Dataset.open(world["dataset"]).instances("train"))
    inst.completion = "x = '<|endoftext|>'\n"
    assert encoder.encode(inst) == "control_token_text"


def test_ctrl_c_keeps_a_checkpoint_and_the_same_command_resumes(
    world: dict[str, Path], s: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loop_mod.answer_loss
    calls = {"n": 0}

    def interrupted_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            signal.raise_signal(signal.SIGINT)  # the user's Ctrl-C, during the first step
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "answer_loss", interrupted_once)
    request = TrainRequest(dataset=world["dataset"], base=str(world["tiny"]), name="resumed", max_steps=3)
    with pytest.raises(TrainingInterrupted, match="stopped at step 1 of 3"):
        run_training(request, s, progress=False)
    assert not (s.models_dir / "trained" / "resumed").exists()
    monkeypatch.setattr(loop_mod, "answer_loss", real)
    report = run_training(request, s, progress=False)
    assert report.outcome.resumed_from == 1 and report.outcome.steps == 3
    assert (s.models_dir / "trained" / "resumed" / "model.json").is_file()


def test_out_of_disk_at_export_registers_nothing_and_resumes(
    world: dict[str, Path], s: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**9, 10**9, 1000))
    request = TrainRequest(dataset=world["dataset"], base=str(world["tiny"]), name="full-disk", max_steps=1)
    with pytest.raises(ExportError, match="GB free"):
        run_training(request, s, progress=False)
    assert not list((s.models_dir / "trained").glob("*full-disk*"))
    registry = open_registry(s.state_dir)
    try:
        assert not [e for e in registry.entities("model") if "full-disk" in e.name]
    finally:
        registry.close()
    monkeypatch.undo()
    # The disk fills up while a GGUF is being written: the half file and the staging folder go, nothing else.
    real_replace = os.replace

    def disk_full_once(src: Any, dst: Any) -> None:
        monkeypatch.setattr(os, "replace", real_replace)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full_once)
    with pytest.raises(ExportError, match="No space left on device"):
        run_training(request, s, progress=False)
    assert not list((s.models_dir / "trained").glob("*full-disk*"))
    monkeypatch.undo()
    report = run_training(request, s, progress=False)
    assert report.outcome.resumed_from == 1 and report.model is not None


def test_conversion_check_catches_a_wrong_export(world: dict[str, Path], s: Settings, tmp_path: Path) -> None:
    base = resolve_base(str(world["tiny"]), s)
    model, tokenizer = load(base, device="cpu")
    probe = conversion.check_prompts(tokenizer, [])
    reference = conversion.reference_logprobs(model, probe)
    same = conversion.gguf_logprobs(world["tiny"], probe, lora=None, threads=2)
    assert conversion.compare(reference, same, file="ok", limit=0.01).passed
    broken = dict(model.state_dict())
    broken["model.layers.1.mlp.down_proj.weight"] = broken["model.layers.1.mlp.down_proj.weight"] * 4
    write_model(broken, config=model.config, template=world["tiny"], out=tmp_path / "bad.gguf", name="bad")
    bad = conversion.gguf_logprobs(tmp_path / "bad.gguf", probe, lora=None, threads=2)
    result = conversion.compare(reference, bad, file="bad", limit=0.01)
    assert not result.passed and result.kl_mean > 0.01


def test_bad_input_fails_before_training(world: dict[str, Path], s: Settings, tmp_path: Path) -> None:
    def request(**kw: Any) -> TrainRequest:
        return TrainRequest(**({"dataset": world["dataset"], "base": str(world["tiny"]), "name": "x"} | kw))

    with pytest.raises(BaseModelError, match="no base model"):
        run_training(request(base=str(tmp_path / "missing.gguf")), s)
    with pytest.raises(DatasetError, match="no such dataset"):
        run_training(request(dataset=tmp_path / "nothing"), s)
    broken = tmp_path / "broken"
    shutil.copytree(world["dataset"], broken)
    (broken / "instances" / "train.jsonl").write_text('{"kind": "inline"}\nnot json\n')
    with pytest.raises(DatasetError, match=r"train\.jsonl:1: not an instance record"):
        run_training(request(dataset=broken), s)
    (broken / "instances" / "train.jsonl").write_text("")
    with pytest.raises(DatasetError, match="train split is empty"):
        run_training(request(dataset=broken), s)
    stale = tmp_path / "stale"
    shutil.copytree(world["dataset"], stale)
    card = json.loads((stale / "card.json").read_text())
    card["templates"] = {name: ["0000000000000000"] for name in card["templates"]}
    (stale / "card.json").write_text(json.dumps(card))
    with pytest.raises(UserError, match="templates serving no longer uses"):
        run_training(request(dataset=stale), s)
    (s.models_dir / "trained" / "taken").mkdir(parents=True)
    with pytest.raises(UserError, match="already exists"):
        run_training(request(name="taken"), s)
    with pytest.raises(UserError, match="not allowed"):
        run_training(request(name="../escape"), s)


DISTILLED = """### Problem
Write `{name}(x)` that returns {factor} times its argument.

### Solution
```python
def {name}(x):
    return {factor} * x
```

### Tests
```python
def test_it():
    assert {name}(3) == {result}
```
"""


def test_distilled_data_trains_through_the_same_command(world: dict[str, Path], s: Settings, tmp_path: Path) -> None:
    """Teacher-written, execution-filtered instances (chat kind) train on the model's chat template."""
    from forgepilot.backends.fake import FakeBackend
    from forgepilot.datagen import card as card_mod
    from forgepilot.datagen.distill import Distiller, Seed, distil_dataset
    from forgepilot.datagen.formats import write_all
    from forgepilot.datagen.pipeline import BuildReport
    from forgepilot.datagen.types import Rejections
    from forgepilot.prompts import builtin_registry
    from forgepilot.sandbox import Sandbox

    answers = [
        DISTILLED.format(name=n, factor=f, result=3 * f)
        for n, f in [("double", 2), ("triple", 3), ("quadruple", 4), ("quintuple", 5)]
    ]
    teacher = FakeBackend("fake:teacher", replies=answers)
    seeds = [Seed("r", f"m{i}.py", "python", 1, f"def f{i}(x):\n    return x * {i}") for i in range(4)]
    rejected = Rejections()
    sandbox = Sandbox(workers=1)
    try:
        kept = distil_dataset(Distiller(teacher, builtin_registry(), sandbox), seeds, s.dataset, rejected)
    finally:
        sandbox.close()
    for inst in kept:
        inst.split = "train"  # a handful of instances: train on all of them
    out = tmp_path / "distilled"
    files = write_all(kept, out, formats=["instances"], eos="")
    report = BuildReport(out, len(kept), rejected, [], files, {}, card_mod.counts(kept))
    card_mod.write_card(out, kept, report, settings=s.dataset, lineage=[], family=teacher.name)
    assert len(kept) == 4

    request = TrainRequest(dataset=out, base=str(world["tiny"]), name="distilled", max_steps=1)
    with pytest.raises(UserError, match="family of .* is unknown") as refused:
        run_training(request, s, progress=False)
    assert "--family" in (refused.value.hint or "")
    trained = run_training(
        TrainRequest(dataset=out, base=str(world["tiny"]), name="distilled", max_steps=1, family="qwen2.5-coder"),
        s,
        progress=False,
    )
    assert trained.examples["by_kind"] == {"distilled": 4} and trained.model is not None
