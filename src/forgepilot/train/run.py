"""``forgepilot train``: a dataset and a base model in; a served, registered, checked model out.

Order matters for "nothing registered half-way": everything is checked before the first step (dataset, template
versions, base model, output name, export route), training checkpoints as it goes (resumable), and the model's
folder appears under ``MODELS_DIR/trained/`` only after export and the conversion check passed; the registry is
written last.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forgepilot.backends.fim import fim_template, known_families
from forgepilot.backends.llamacpp import default_threads
from forgepilot.backends.trained import TrainedModel, trained_dir
from forgepilot.config import Settings
from forgepilot.datagen.dataset import Dataset, DatasetError
from forgepilot.datagen.types import Instance
from forgepilot.errors import UserError
from forgepilot.prompts import builtin_registry
from forgepilot.train import check as conversion
from forgepilot.train.base import BaseModel, compute_precision, import_training, load, resolve_base
from forgepilot.train.examples import Encoded, Encoder, Example
from forgepilot.train.gguf_io import ExportError, quantize, write_lora_adapter, write_model
from forgepilot.train.loop import TrainOutcome, prepare_model, train
from forgepilot.train.plan import Hyperparameters, MethodChoice, Mix, choose_method, run_id

_log = logging.getLogger("forgepilot.train")
Echo = Callable[[str], None]


@dataclass(frozen=True)
class TrainRequest:
    dataset: Path
    base: str
    name: str
    method: str = "auto"
    mixes: tuple[Mix, ...] = ()
    tokenizer_gguf: Path | None = None
    #: Train even if the dataset was rendered with other prompt template versions than serving uses now.
    allow_template_mismatch: bool = False
    #: Stop after this many optimiser steps (smoke runs and tests); None: the configured epochs.
    max_steps: int | None = None
    #: The served model's FIM family when neither the base (an embedded model) nor the dataset card says it.
    family: str | None = None


@dataclass
class TrainReport:
    name: str
    run_id: str
    run_dir: Path
    choice: MethodChoice
    hyperparameters: Hyperparameters
    examples: dict[str, Any]
    outcome: TrainOutcome
    checks: list[conversion.ConversionCheck] = field(default_factory=list)
    model: TrainedModel | None = None
    served_as: list[str] = field(default_factory=list)


def check_name(name: str, settings: Settings) -> Path:
    if not name or not all(c.isalnum() or c in "._-" for c in name) or name.startswith("."):
        raise UserError(f"model name {name!r} is not allowed", hint="use letters, digits, '.', '_' and '-'")
    folder = trained_dir(settings.models_dir) / name
    if folder.exists():
        raise UserError(f"a trained model {name!r} already exists ({folder})", hint="choose another --out NAME")
    return folder


def _family(ds: Dataset, base: BaseModel, asked: str | None) -> str:
    if asked is not None:
        if asked not in known_families():
            raise UserError(f"unknown model family {asked!r}", hint=f"known: {', '.join(known_families())}")
        return asked
    declared = ds.card.model_family if ds.card else ""
    if declared in known_families():
        if base.family and base.family != declared:
            raise UserError(
                f"{ds.folder} was rendered for model family {declared!r}, the base model is {base.family!r}",
                hint="build the dataset with the base model's family, or train another base",
            )
        return declared
    if base.family:
        return base.family
    raise UserError(f"the model family of {base.ref} is unknown", hint="pass --family (e.g. qwen2.5-coder)")


def check_templates(ds: Dataset) -> list[str]:
    """Template versions the dataset was rendered with that serving no longer uses."""
    registry = builtin_registry()
    names = set(registry.names())
    stale = []
    for name, versions in (ds.card.templates if ds.card else {}).items():
        if name in names and registry.get(name).version not in versions:
            stale.append(f"{name}@{','.join(versions)} (serving: {registry.get(name).version})")
    return stale


def _train_instances(ds: Dataset) -> list[Instance]:
    split = "train" if "train" in ds.splits else None
    if split is None:
        raise DatasetError(str(ds.folder), f"has no train split (splits: {', '.join(ds.splits)})")
    found = list(ds.instances(split))
    if not found:
        raise DatasetError(str(ds.folder), "its train split is empty")
    return found


def _mixed(
    encoder: Encoder, task: Encoded, mixes: Sequence[Mix], mix_sets: Sequence[Dataset]
) -> tuple[list[Example], dict[str, Any]]:
    examples = list(task.examples)
    report: dict[str, Any] = {}
    for mix, mix_set in zip(mixes, mix_sets, strict=True):
        other = encoder.encode_all(_train_instances(mix_set))
        # A stable choice: the same mix gives the same run.
        chosen = sorted(other.examples, key=lambda e: e.id)[: mix.count(len(task.examples), len(other.examples))]
        examples += chosen
        report[mix.path] = {"share": mix.share, "examples": len(chosen), "skipped": dict(other.skipped)}
    return examples, report


def _device(torch: Any) -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _need_disk(model: Any, quants: Sequence[str], folder: Path) -> None:
    params = sum(p.numel() for p in model.parameters())
    need = int(params * 2 * (1 + 0.6 * len(quants)))  # float16, then each quantised copy (Q8_0 is ~0.53 of it)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ExportError(
            f"exporting needs about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free in {folder}",
            hint="free disk space; the checkpoints are kept, rerun the same command to export",
        )


@dataclass(frozen=True)
class _Inputs:
    """Everything checked before a model is loaded."""

    final: Path
    ds: Dataset
    instances: list[Instance]
    #: Hashes of the dataset's and each mix's instances files (read once: the run id and the record share them).
    dataset_sha256s: list[str]
    mix_sets: list[Dataset]
    base: BaseModel
    family: str


def _check_inputs(request: TrainRequest, settings: Settings) -> _Inputs:
    final = check_name(request.name, settings)
    ds = Dataset.open(request.dataset, need_card=True)
    stale = check_templates(ds)
    if stale and not request.allow_template_mismatch:
        raise UserError(
            f"{ds.folder} was rendered with prompt templates serving no longer uses: {'; '.join(stale)}",
            hint="rebuild it with `forgepilot dataset build`, or pass --allow-template-mismatch",
        )
    instances = _train_instances(ds)
    mix_sets = [Dataset.open(Path(m.path)) for m in request.mixes]
    base = resolve_base(request.base, settings, tokenizer_gguf=request.tokenizer_gguf)
    if base.tokenizer_gguf is None:
        raise ExportError(
            f"{base.path} has no GGUF to take the tokenizer from for export",
            hint="put the model's GGUF in the folder or pass --tokenizer-gguf FILE",
        )
    sha256s = [ds.sha256(), *(m.sha256() for m in mix_sets)]
    return _Inputs(final, ds, instances, sha256s, mix_sets, base, _family(ds, base, request.family))


def run_training(
    request: TrainRequest, settings: Settings, *, echo: Echo = _log.info, progress: bool = True
) -> TrainReport:
    """Check, train (or resume), export, check the conversion, then publish and register."""
    s = settings.train
    got = _check_inputs(request, settings)  # fails before anything heavy is loaded
    torch, _, peft = import_training()
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads or default_threads())
    device = _device(torch)
    precision = compute_precision(torch, device, s.precision)
    echo(f"loading {got.base.ref} ({device}, {precision}, {torch.get_num_threads()} threads)")
    model, tokenizer = load(got.base, device=device, precision=precision)
    encoder = Encoder(tokenizer, fim_template(got.family), max_tokens=s.max_tokens)
    task = encoder.encode_all(got.instances)
    if not task.examples:
        raise DatasetError(str(got.ds.folder), f"no instance can be trained on (left out: {dict(task.skipped)})")
    examples, mix_report = _mixed(encoder, task, request.mixes, got.mix_sets)
    choice = choose_method(request.method, len(task.examples), mixed=bool(request.mixes), settings=s)
    hp = Hyperparameters.from_settings(choice.method, s, precision=precision)
    rid = run_id(got.base.sha256, got.dataset_sha256s, hp, list(request.mixes))
    run_dir = settings.state_dir / "train" / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    echo(f"run {rid}: {choice.rule}; {len(examples)} examples ({dict(task.by_kind)}), left out {dict(task.skipped)}")
    counts = {"task": len(task.examples), "by_kind": dict(task.by_kind), "skipped": dict(task.skipped)}
    report = TrainReport(request.name, rid, run_dir, choice, hp, counts | {"mix": mix_report}, TrainOutcome(0, 0))
    model = prepare_model(model, hp)
    epochs = hp.epochs if request.max_steps is None else min(hp.epochs, _epochs_for(request.max_steps, examples, hp))
    report.outcome = train(
        model,
        examples,
        Hyperparameters(**{**hp.record(), "epochs": epochs}),
        pad_id=int(tokenizer.pad_token_id),
        checkpoints=run_dir / "checkpoints",
        device=device,
        save_steps=s.save_steps,
        progress=progress,
    )
    echo(f"trained {report.outcome.steps} steps, {report.outcome.tokens_per_s:.0f} tokens/s")
    adapter_state = peft.get_peft_model_state_dict(model, save_embedding_layers=False) if hp.method == "lora" else None
    merged = (model.merge_and_unload() if hp.method == "lora" else model).float().cpu()
    probe = conversion.check_prompts(tokenizer, [e.input_ids for e in examples])
    report.model = _publish(merged, adapter_state, probe, got, report, settings, echo)
    return report


def _publish(
    merged: Any,
    adapter_state: dict[str, Any] | None,
    probe: list[list[int]],
    got: _Inputs,
    report: TrainReport,
    settings: Settings,
    echo: Echo,
) -> TrainedModel:
    """Export into a hidden staging folder, check it, then move it into place and register it."""
    final = got.final
    final.parent.mkdir(parents=True, exist_ok=True)
    _need_disk(merged, settings.train.quants, final.parent)
    staging = final.with_name(f".{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        files = _export(merged, adapter_state, got.base, report.hyperparameters, staging, report.name, settings, echo)
        report.checks = _check(merged, probe, staging, files, got.base, settings)
        failed = [c for c in report.checks if not c.passed]
        if failed:
            worst = failed[0]
            raise ExportError(
                f"the exported {worst.file} diverges from the trained model: mean KL {worst.kl_mean:.4f} > "
                f"{worst.limit} (top-1 agreement {worst.top1_agreement:.2f})",
                hint=f"nothing was registered; report this with the run folder {report.run_dir}",
            )
        return _finish(staging, files, got, report, settings)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _epochs_for(max_steps: int, examples: Sequence[Example], hp: Hyperparameters) -> float:
    batches = -(-len(examples) // hp.batch_size)
    steps_per_epoch = max(1, -(-batches // hp.gradient_accumulation))
    return max_steps / steps_per_epoch


def _export(
    merged: Any,
    adapter_state: dict[str, Any] | None,
    base: BaseModel,
    hp: Hyperparameters,
    staging: Path,
    name: str,
    settings: Settings,
    echo: Echo,
) -> dict[str, str]:
    """The runtime files, by role: ``f16``, each quantisation, and ``adapter`` for a LoRA over a GGUF base."""
    assert base.tokenizer_gguf is not None
    threads = settings.train.threads or default_threads()
    files = {"f16": "model-f16.gguf"}
    echo("writing the float16 GGUF")
    write_model(
        merged.state_dict(), config=merged.config, template=base.tokenizer_gguf, out=staging / files["f16"], name=name
    )
    for quant in settings.train.quants:
        echo(f"quantising to {quant}")
        files[quant] = f"model-{quant}.gguf"
        quantize(staging / files["f16"], staging / files[quant], quant, threads=threads)
    if adapter_state is not None and base.kind == "gguf":
        files["adapter"] = "adapter.gguf"
        write_lora_adapter(
            adapter_state,
            model_type=merged.config.model_type,
            n_layers=merged.config.num_hidden_layers,
            alpha=float(hp.lora_alpha or 1.0),
            out=staging / files["adapter"],
            name=f"{name} (LoRA)",
        )
    return files


def _check(
    merged: Any, probe: list[list[int]], staging: Path, files: dict[str, str], base: BaseModel, settings: Settings
) -> list[conversion.ConversionCheck]:
    threads = settings.train.threads or default_threads()
    reference = conversion.reference_logprobs(merged, probe)
    limit = settings.train.max_conversion_kl
    out = []
    for role, file in files.items():
        lora = staging / file if role == "adapter" else None
        path = base.path if role == "adapter" else staging / file
        got = conversion.gguf_logprobs(path, probe, lora=lora, threads=threads)
        # Quantised copies lose precision by design: reported, not enforced. The float16 file and the adapter
        # over its own base must match the trained model.
        enforced = limit if role in ("f16", "adapter") else None
        out.append(conversion.compare(reference, got, file=file, limit=enforced))
    return out


def _finish(
    staging: Path, files: dict[str, str], got: _Inputs, report: TrainReport, settings: Settings
) -> TrainedModel:
    """The run record and manifest written, the folder moved into place, then the registry entries."""
    from forgepilot.backends.embedded import sha256_file
    from forgepilot.gates.lineage import code_commit

    base, ds, rid = got.base, got.ds, report.run_id
    sha = {file: sha256_file(staging / file) for file in files.values()}
    serve = next((files[q] for q in settings.train.quants if q in files), files["f16"])
    record = {
        "name": report.name,
        "run": rid,
        "base": {"ref": base.ref, "path": str(base.path), "sha256": base.sha256, "kind": base.kind},
        "dataset": {
            "path": str(ds.folder),
            "sha256": got.dataset_sha256s[0],
            "card_sha256": ds.card.dataset_sha256 if ds.card else "",
            "card": ds.card.data if ds.card else None,
        },
        "method": report.choice.method,
        "rule": report.choice.rule,
        "hyperparameters": report.hyperparameters.record(),
        "examples": report.examples,
        "loss_curve": report.outcome.loss_curve,
        "steps": report.outcome.steps,
        "resumed_from": report.outcome.resumed_from,
        "seconds": round(report.outcome.seconds, 2),
        "tokens_per_s": round(report.outcome.tokens_per_s, 1),
        "conversion_checks": [asdict(c) | {"passed": c.passed} for c in report.checks],
        "files": {role: {"file": f, "sha256": sha[f]} for role, f in files.items()},
        "code": code_commit(),
        "finished_at": time.time(),
    }
    (staging / "train.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    adapter = files.get("adapter")
    model = TrainedModel(
        name=report.name,
        family=got.family,
        folder=got.final,
        serve_file=serve,
        adapter_file=adapter,
        base_gguf=str(base.path) if adapter else None,
        sha256=sha,
        run=rid,
    )
    model.write(staging)
    os.replace(staging, got.final)
    report.served_as = [f"llamacpp:{report.name}"] + ([f"llamacpp:{report.name}-lora"] if adapter else [])
    _register(model, record, report.served_as, settings)
    return model


def _register(model: TrainedModel, record: dict[str, Any], names: list[str], settings: Settings) -> None:
    """The model(s) in the registry, with what they were trained on and from."""
    from forgepilot.backends.resolve import model_identity
    from forgepilot.registry import content_id, open_registry

    registry = open_registry(settings.state_dir, settings.database_url)
    try:
        dataset = record["dataset"]
        ds = registry.put("dataset", content_id(dataset["sha256"]), dataset["path"], dataset["card"] or {})
        base = record["base"]
        base_entity = registry.put("model", content_id(base["sha256"]), base["ref"], base)
        run = {k: v for k, v in record.items() if k not in ("dataset",)}
        for name in names:
            identity = model_identity(name, settings)
            entity = registry.put("model", content_id(identity), name, identity | {"training": run})
            registry.link(entity, "trained_on", ds)
            registry.link(entity, "fine_tuned_from", base_entity)
    finally:
        registry.close()
