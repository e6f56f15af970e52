"""One reader for dataset folders (``forgepilot dataset build`` / ``distill`` output): training, evaluation and
the gates all read instances and the card through it, with the same schema check and the same errors.

A folder holds ``card.json`` (what is in it, where it came from) and ``instances/SPLIT.jsonl`` (the full records,
flat: see ``formats``). A line that is not a valid record is reported by file and line, never skipped quietly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forgepilot.datagen.formats import instance_from_row
from forgepilot.datagen.types import SCHEMA_VERSION, Instance
from forgepilot.errors import UserError


class DatasetError(UserError):
    """A dataset folder or one of its lines cannot be read."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(
            f"{where}: {problem}", hint="rebuild it with `forgepilot dataset build` (or `dataset distill`)"
        )
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class DatasetCard:
    """The parts of ``card.json`` other packages act on; ``data`` is the whole card."""

    schema_version: int
    dataset_sha256: str
    instances: int
    model_family: str
    #: Prompt template name -> the versions the instances were rendered with.
    templates: dict[str, list[str]]
    sources: list[dict[str, Any]]
    languages: dict[str, int]
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DatasetCard:
        return cls(
            schema_version=int(data.get("schema_version", 0)),
            dataset_sha256=str(data.get("dataset_sha256", "")),
            instances=int(data.get("instances", 0)),
            model_family=str(data.get("model_family", "")),
            templates={str(k): list(v) for k, v in (data.get("templates") or {}).items()},
            sources=list(data.get("sources") or []),
            languages=dict((data.get("counts") or {}).get("language") or {}),
            data=data,
        )


@dataclass(frozen=True)
class Dataset:
    folder: Path
    card: DatasetCard | None
    #: split name -> its instances file
    files: dict[str, Path]

    @classmethod
    def open(cls, path: Path, *, need_card: bool = False) -> Dataset:
        """The dataset at ``path``: a dataset folder, or one ``instances/SPLIT.jsonl`` file of one."""
        if path.is_file() and path.suffix == ".jsonl":
            folder = path.parent.parent if path.parent.name == "instances" else path.parent
            files = {path.stem: path}
        elif path.is_dir():
            folder = path
            files = {f.stem: f for f in sorted((path / "instances").glob("*.jsonl"))}
        else:
            raise DatasetError(str(path), "no such dataset folder or instances file")
        if not files:
            raise DatasetError(str(path), "no instances/*.jsonl: not a dataset folder")
        card_path = folder / "card.json"
        card = None
        if card_path.is_file():
            try:
                card = DatasetCard.from_data(json.loads(card_path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as exc:
                raise DatasetError(str(card_path), f"not a valid card ({exc})") from None
            if card.schema_version != SCHEMA_VERSION:
                raise DatasetError(str(card_path), f"schema {card.schema_version}, this version reads {SCHEMA_VERSION}")
        elif need_card:
            raise DatasetError(str(folder), "has no card.json")
        return cls(folder, card, files)

    @property
    def splits(self) -> list[str]:
        return sorted(self.files)

    def sha256(self) -> str:
        """The hash of every instances file, in split order: what a trained model or an eval run was fed."""
        h = hashlib.sha256()
        for split in self.splits:
            h.update(split.encode())
            h.update(self.files[split].read_bytes())
        return h.hexdigest()

    def rows(self, split: str | None = None) -> Iterator[tuple[Path, int, dict[str, Any]]]:
        """``(file, line number, record)`` for every line of one split (or all), nested fields decoded."""
        for name in [split] if split is not None else self.splits:
            path = self.files.get(name)
            if path is None:
                raise DatasetError(str(self.folder), f"has no {name!r} split (splits: {', '.join(self.splits)})")
            yield from _read_rows(path)

    def instances(self, split: str | None = None) -> Iterator[Instance]:
        for path, number, row in self.rows(split):
            try:
                yield Instance.from_record(row)
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{path}:{number}", f"not an instance record ({exc})") from None


def _read_rows(path: Path) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}", f"not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}", "not a JSON object")
        yield path, number, instance_from_row(row)
