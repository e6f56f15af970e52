"""What every dataset goes through before it is written, whoever made its instances (repository builders or a
teacher model): the token gate, secret and PII scrub, near-duplicate removal, decontamination against evaluation
sets, and the split. Each removal is counted by reason."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from forgepilot.config import DatasetSettings
from forgepilot.datagen.decontam import Decontaminator, humaneval_texts, suite_texts
from forgepilot.datagen.dedup import deduplicate
from forgepilot.datagen.secrets import Redactor
from forgepilot.datagen.splits import assign_splits
from forgepilot.datagen.types import Instance, Rejections

_TEXT_FIELDS = ("system", "prompt", "completion", "fim_prompt", "prefix", "suffix")


class StageTimer:
    """Seconds per named stage, summed over repeats."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t


def clean(
    instances: list[Instance],
    ds: DatasetSettings,
    rejected: Rejections,
    *,
    redactor: Redactor | None = None,
    suites: Sequence[Path] = (),
    timer: StageTimer | None = None,
) -> list[Instance]:
    """``instances`` through every hygiene stage, split; what each stage removed is added to ``rejected``."""
    timer = timer or StageTimer()
    with timer.stage("gates"):
        kept = []
        for inst in instances:
            if inst.tokens > ds.max_instance_tokens:
                rejected.add("gate:tokens", inst.kind)
            else:
                kept.append(inst)
        instances = kept
    if ds.redact_secrets:
        redactor = redactor or Redactor()
        with timer.stage("redact"):
            # Context snippets, test files and diffs came from other files and from history (and a teacher's text
            # from anywhere): scrub the final texts with every secret found, and detect again.
            for inst in instances:
                for name in _TEXT_FIELDS:
                    value = getattr(inst, name)
                    if value:
                        setattr(inst, name, redactor.redact(value).text)
                for piece in inst.fim_segments:
                    if not piece[1]:
                        piece[0] = redactor.scrub(piece[0])
                for snip in inst.context:
                    snip["text"] = redactor.scrub(snip["text"])
    with timer.stage("dedup"):
        instances, removed = deduplicate(
            instances, threshold=ds.dedup_threshold, permutations=ds.dedup_permutations, shingle=ds.dedup_shingle
        )
        for key, n in removed.items():
            kind, _, reason = key.partition(":")
            rejected.add(reason, kind, n)
    with timer.stage("decontaminate"):
        sets: list[tuple[str, Decontaminator]] = []
        if ds.decontaminate_humaneval:
            sets.append(
                ("humaneval", Decontaminator(humaneval_texts(), n=ds.decontam_ngram, overlap=ds.decontam_overlap))
            )
        if suites:
            texts = suite_texts(suites)
            sets.append(("suite", Decontaminator(texts, n=ds.decontam_ngram, overlap=ds.decontam_overlap)))
        clean_ = []
        for inst in instances:
            hit = next((name for name, d in sets if d.contaminated(inst)), None)
            if hit:
                rejected.add(f"decontam:{hit}", inst.kind)
            else:
                clean_.append(inst)
        instances = clean_
    with timer.stage("split"):
        instances, mixed = assign_splits(
            instances, by=ds.split_by, test=ds.test_share, valid=ds.valid_share, seed=ds.seed
        )
        if mixed:
            rejected.add("split:mixed_files", "commit", mixed)
    return instances
