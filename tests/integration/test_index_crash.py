"""kill -9 in the middle of indexing, resume, and compare with a clean index: they must be identical."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forgepilot.index import Filters, Indexer, Searcher, Workspace

WORDS = ["parse", "render", "cache", "token", "socket", "matrix", "invoice", "schedule", "retry", "encode"]


def make_repo(root: Path, files: int, seed: int = 7) -> Path:
    rng = random.Random(seed)
    for i in range(files):
        package = root / f"pkg{i % 12}"
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()
        body = [
            f'"""Module {i}: {rng.choice(WORDS)} utilities."""',
            "import os",
            f"from . import mod{(i + 1) % files}",
            "",
        ]
        for j in range(rng.randint(3, 9)):
            a, b = rng.sample(WORDS, 2)
            body += [
                f"def {a}_{b}_{i}_{j}(value, limit={j}):",
                f'    """{a.title()} the {b} of a value."""',
                *[f"    value = value + {k}  # step {k} of {a}" for k in range(rng.randint(2, 25))],
                "    return value",
                "",
            ]
        (package / f"mod{i}.py").write_text("\n".join(body), encoding="utf-8")
    return root


def index_cmd(repo: Path, state: Path, *flags: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FORGEPILOT_STATE_DIR": str(state)}
    return subprocess.Popen(
        [sys.executable, "-m", "forgepilot", "index", str(repo), *flags],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # tables not created yet


def kill_when(process: subprocess.Popen[bytes], ready: callable, timeout: float = 120) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            if process.stderr:
                process.stderr.close()
            pytest.fail(f"the indexer finished before it could be killed: {err[-500:]}")
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            if process.stderr:
                process.stderr.close()
            return
        time.sleep(0.01)
    process.kill()
    process.wait()
    if process.stderr:
        process.stderr.close()
    pytest.fail("the indexer never reached the kill point")


def snapshot(state: Path) -> dict[str, object]:
    """Everything an index holds, keyed by content rather than row ids."""
    ws = Workspace(state / "index")
    conn = ws.store.conn
    q = lambda sql: sorted(tuple(r) for r in conn.execute(sql))  # noqa: E731
    snap: dict[str, object] = {
        "files": q("SELECT path, sha256, status, reason, lexical_done FROM files"),
        "chunks": q(
            "SELECT f.path, c.ordinal, c.start_line, c.end_line, c.text FROM chunks c JOIN files f ON f.id = c.file_id"
        ),
        "symbols": q(
            "SELECT f.path, s.qualified_name, s.kind, s.start_line, s.end_line FROM symbols s "
            "JOIN files f ON f.id = s.file_id"
        ),
        "edges": q(
            "SELECT f.path, t.path FROM import_edges e JOIN imports i ON i.id = e.import_id "
            "JOIN files f ON f.id = i.file_id JOIN files t ON t.id = e.target_file_id"
        ),
        "lexical_docs": ws.lexical.count(),
        "vectors": q(
            "SELECT f.path, c.ordinal FROM chunk_vectors v JOIN chunks c ON c.id = v.chunk_id "
            "JOIN files f ON f.id = c.file_id"
        ),
        "faiss": len(ws.vectors),
    }
    searcher = Searcher(ws)
    where = {
        r[0]: (r[1], r[2])
        for r in conn.execute("SELECT c.id, f.path, c.ordinal FROM chunks c JOIN files f ON f.id = c.file_id")
    }
    use_vectors = bool(snap["vectors"])
    snap["search"] = [
        [where[h.chunk_id] for h in searcher.search(query, 10, vectors=use_vectors)]
        for query in ("parse the socket", "retry schedule", "invoice cache token", "matrix_encode")
    ]
    ws.close()
    return snap


def assert_same(crashed: dict[str, object], clean: dict[str, object]) -> None:
    assert crashed.keys() == clean.keys()
    for key in crashed:
        assert crashed[key] == clean[key], f"{key} differs after resuming"


def test_kill_mid_parse_then_resume_equals_clean_index(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 1200)
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    db = crashed / "index" / "index.db"
    process = index_cmd(repo, crashed, "--no-embeddings")
    # Readers search while the indexer writes: poll with real searches until enough is committed.
    searches = 0

    def enough_committed() -> bool:
        nonlocal searches
        n = count(db, "SELECT count(*) FROM files")
        if n and db.exists():
            ws = Workspace(crashed / "index")
            Searcher(ws).search("parse", 5, Filters(), vectors=False)
            ws.close()
            searches += 1
        return n >= 130

    kill_when(process, enough_committed)
    total_py = len(list(repo.rglob("*.py")))
    assert count(db, "SELECT count(*) FROM files") < total_py, "killed too late to test anything"
    assert searches > 0

    resumed = Workspace(crashed / "index")
    report = Indexer(resumed, embeddings=False).index(repo)
    resumed.close()
    assert report.parsed > 0 and report.unchanged > 0  # it resumed: committed files were not parsed again

    fresh = Workspace(clean / "index")
    Indexer(fresh, embeddings=False).index(repo)
    fresh.close()
    assert_same(snapshot(crashed), snapshot(clean))


def test_kill_mid_embedding_then_resume_equals_clean_index(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 40, seed=3)
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    db = crashed / "index" / "index.db"
    process = index_cmd(repo, crashed)
    kill_when(process, lambda: count(db, "SELECT count(*) FROM chunk_vectors") >= 64, timeout=300)
    chunks = count(db, "SELECT count(*) FROM chunks")
    assert 0 < count(db, "SELECT count(*) FROM chunk_vectors") < chunks

    resumed = Workspace(crashed / "index")
    report = Indexer(resumed, embeddings=True).index(repo)
    resumed.close()
    assert report.parsed == 0 and 0 < report.embedded < chunks

    fresh = Workspace(clean / "index")
    Indexer(fresh, embeddings=True).index(repo)
    fresh.close()
    crashed_snapshot, clean_snapshot = snapshot(crashed), snapshot(clean)
    assert crashed_snapshot["faiss"] == chunks
    assert_same(crashed_snapshot, clean_snapshot)
