"""Vector and hybrid search with the real packaged embedding model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from forgepilot.index import Indexer, Searcher, Workspace
from forgepilot.index.vectors import Embedder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "repos"


def test_embeddings_are_normalised_and_semantic() -> None:
    embedder = Embedder()
    a, b, c = embedder.encode(["add an item to the shopping cart", "append a product to the basket", "tcp socket"])
    assert np.allclose([np.linalg.norm(a), np.linalg.norm(b)], 1.0, atol=1e-4)
    assert float(a @ b) > float(a @ c) + 0.2


def test_vector_and_hybrid_search(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    for name in ("python", "go", "csharp"):
        Indexer(ws, embeddings=True).index(shutil.copytree(FIXTURES / name, tmp_path / name))
    chunks = ws.store.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert len(ws.vectors) == chunks
    searcher = Searcher(ws)
    # No word in common with the code: only the vector search can find it.
    semantic = searcher.search("how much money does the buyer owe including sales levy", 5, mode="vector")
    assert semantic[0].path in {"src/shop/payments/checkout.py", "src/shop/payments/tax.py"}
    hybrid = searcher.search("cart total", 5)
    assert {"lexical", "vector"} <= set(hybrid[0].ranks)
    ws.close()
    # A second process-like open loads the saved faiss file (same generation) instead of rebuilding.
    reopened = Workspace(tmp_path / "ws")
    assert reopened.vectors.generation == reopened.vector_generation() and len(reopened.vectors) == chunks
    reopened.close()


def test_vectors_never_go_stale_across_runs_without_embeddings(tmp_path: Path) -> None:
    repo = shutil.copytree(FIXTURES / "python", tmp_path / "shop")
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=True).index(repo)
    ws.close()
    models = repo / "src/shop/models.py"
    models.write_text(models.read_text() + "\n\ndef refund(cart):\n    return -cart.total_cents()\n")
    (repo / "src/shop/payments/tax.py").unlink()
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=False).index(repo)  # drops the vectors of replaced and deleted chunks
    ws.close()
    reopened = Workspace(tmp_path / "ws")
    stored = {r[0] for r in reopened.store.conn.execute("SELECT chunk_id FROM chunk_vectors")}
    import faiss

    live = set(faiss.vector_to_array(reopened.vectors.index.id_map).tolist())
    assert live == stored  # the saved file was not trusted: rebuilt from what SQLite holds
    assert all(hit[0] in stored for hit in Searcher(reopened).vector("tax owed in a region", 10))
    reopened.close()


def test_a_filter_that_keeps_few_chunks_loses_none_of_their_nearest(tmp_path: Path) -> None:
    repo = tmp_path / "mixed"
    repo.mkdir()
    # Twenty Python files about reading configuration, and one Go file about it: the Python ones are all nearer
    # to the query than anything in Go, far past a fixed over-fetch of eight times the limit.
    for i in range(20):
        (repo / f"config_{i}.py").write_text(
            f'def load_config_{i}(path):\n    """Read the configuration file at path and parse its settings."""\n'
            f"    with open(path) as f:\n        return parse_settings_{i}(f.read())\n"
        )
    (repo / "server.go").write_text(
        "package main\n\n// readConfig reads the configuration file and parses the settings.\n"
        "func readConfig(path string) (Settings, error) {\n\treturn parse(path)\n}\n"
    )
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=True).index(repo)
    searcher = Searcher(ws)
    unfiltered = searcher.vector("read and parse the configuration file settings", 8)
    chunk_langs = dict(
        ws.store.conn.execute("SELECT chunks.id, files.language FROM chunks JOIN files ON files.id = chunks.file_id")
    )
    assert all(chunk_langs[cid] == "python" for cid, _ in unfiltered)  # Go is not among the nearest 8
    from forgepilot.index import Filters

    hits = searcher.vector("read and parse the configuration file settings", 1, Filters(language="go"))
    assert [chunk_langs[cid] for cid, _ in hits] == ["go"]
    ws.close()
