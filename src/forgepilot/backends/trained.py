"""Models ``forgepilot train`` made, as ``llamacpp:NAME`` (merged, quantised) and ``llamacpp:NAME-lora`` (the
adapter GGUF over its unchanged base GGUF). Each lives in ``MODELS_DIR/trained/NAME/`` with a ``model.json``
manifest; the folder appears only once export, conversion check and registration are all done."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TRAINED_DIR = "trained"
MANIFEST = "model.json"
LORA_SUFFIX = "-lora"


@dataclass(frozen=True)
class TrainedModel:
    name: str  # NAME, without provider
    family: str
    folder: Path
    #: The file ``llamacpp:NAME`` serves (relative to ``folder``).
    serve_file: str
    #: The adapter GGUF and the base GGUF it applies to (None for full fine-tunes).
    adapter_file: str | None
    base_gguf: str | None
    sha256: dict[str, str]
    run: str

    def record(self) -> dict[str, Any]:
        out = asdict(self)
        out["folder"] = str(self.folder)
        return out

    def write(self, into: Path | None = None) -> None:
        """The manifest, in ``into`` (a staging folder about to become ``folder``) or in ``folder``; the folder
        itself is where the manifest is found, so it is not stored."""
        data = {k: v for k, v in self.record().items() if k != "folder"}
        (into or self.folder).joinpath(MANIFEST).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def trained_dir(models_dir: Path) -> Path:
    return models_dir / TRAINED_DIR


def read_trained(folder: Path) -> TrainedModel:
    data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    data["folder"] = folder
    return TrainedModel(**data)


def find_trained(models_dir: Path, short: str) -> tuple[TrainedModel, bool] | None:
    """The trained model ``short`` names and whether it asks for the adapter form (``NAME-lora``)."""
    root = trained_dir(models_dir)
    for name, adapter in ((short, False), (short.removesuffix(LORA_SUFFIX), True)):
        if adapter and not short.endswith(LORA_SUFFIX):
            continue
        if name and (root / name / MANIFEST).is_file():
            model = read_trained(root / name)
            if adapter and model.adapter_file is None:
                return None
            return model, adapter
    return None


def list_trained(models_dir: Path) -> list[TrainedModel]:
    root = trained_dir(models_dir)
    if not root.is_dir():
        return []
    return [read_trained(d) for d in sorted(root.iterdir()) if (d / MANIFEST).is_file()]
