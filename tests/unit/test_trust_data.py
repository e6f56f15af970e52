"""Stores, indexing, search and the smaller trust holes: SQLite per thread with whole migrations and durable
commits, explicitly named folders indexed, exact paths, lossless filtered search, honest usage, cancellation that
propagates, distilled data cleaned like built data, and chat tasks that fit the model's window and cite."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgepilot.assist import Assistant, TaskInput
from forgepilot.backends import CompletionRequest, LlamaCppBackend, fim_template
from forgepilot.backends.fake import FakeBackend, fake_tokens
from forgepilot.backends.openai_http import OpenAICompatibleBackend
from forgepilot.backends.providers import provider_profile
from forgepilot.backends.worker import PriorityWorker
from forgepilot.cli import main
from forgepilot.config import load_settings
from forgepilot.context.locate import locate
from forgepilot.db import SqliteStore
from forgepilot.index import Indexer, Workspace
from forgepilot.monitor import Event, MonitorStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "repos"


# -- 8. SQLite under threads ----------------------------------------------------------------------------------------
class TriggerStore(SqliteStore):
    MIGRATIONS = [
        (
            1,
            "a trigger and a string with semicolons",
            """
            CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL DEFAULT 'a; b; c', edits INTEGER DEFAULT 0);
            CREATE TRIGGER count_edits AFTER UPDATE OF body ON notes BEGIN
                UPDATE notes SET edits = edits + 1 WHERE id = NEW.id;
            END;
            """,
        ),
    ]


class BrokenStore(SqliteStore):
    MIGRATIONS = [(1, "half of it fails", "CREATE TABLE kept (x INTEGER); CREATE TABLE kept (x INTEGER);")]


def test_migrations_run_whole_and_roll_back_whole(tmp_path: Path) -> None:
    store = TriggerStore(tmp_path / "t.db")
    with store.transaction() as conn:
        conn.execute("INSERT INTO notes DEFAULT VALUES")
        conn.execute("UPDATE notes SET body = 'x; y' WHERE id = 1")
    assert tuple(store.conn.execute("SELECT body, edits FROM notes").fetchone()) == ("x; y", 1)
    store.close()
    with pytest.raises(sqlite3.OperationalError):
        BrokenStore(tmp_path / "b.db")
    conn = sqlite3.connect(tmp_path / "b.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "kept" not in tables  # nothing of a failed migration stays, and it is not recorded as applied
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == 0
    conn.close()


def test_each_thread_has_its_own_connection_and_events_are_durable(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path / "monitor.db")
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: on disk before the 200
    seen: list[sqlite3.Connection] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            seen.append(store.conn)
            for i in range(25):
                store.record_events([Event("shown", completion_id=f"{n}-{i}")])
                store.event_counts()  # reads while the other threads write
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({id(c) for c in seen}) == 8
    assert store.event_counts() == {"shown": 200}
    store.close()


# -- 12. a folder the user names is indexed, or the output says why not ---------------------------------------------
def test_a_folder_ignored_by_the_enclosing_repository_is_still_indexed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_state: Path
) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    subprocess.run(["git", "init", "-q", str(outer)], check=True)
    (outer / ".gitignore").write_text("third_party_src/\n")
    inner = outer / "third_party_src"
    (inner / "pkg").mkdir(parents=True)
    (inner / "pkg" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (inner / ".gitignore").write_text("build/\n")
    (inner / "build").mkdir()
    (inner / "build" / "gen.py").write_text("x = 1\n")
    code = main(["index", str(inner), "--no-embeddings", "--json"])
    report = json.loads(capsys.readouterr().out)[0]
    assert code == 0 and report["parsed"] == 1  # its own .gitignore still applies (build/ is left out)
    empty = tmp_path / "docs"
    empty.mkdir()
    (empty / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    assert main(["index", str(empty), "--no-embeddings"]) == 0
    err = capsys.readouterr().err
    assert "nothing indexed in" in err and "binary 1" in err


# -- 14. exact paths, lossless filtered search, honest usage, cancellation that propagates --------------------------
def test_relative_paths_keep_their_dots_and_never_climb_out(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    (repo / ".github" / "scripts").mkdir(parents=True)
    (repo / ".github" / "scripts" / "release.py").write_text("def main():\n    pass\n")
    (repo / "github" / "scripts").mkdir(parents=True)
    (repo / "github" / "scripts" / "release.py").write_text("def other():\n    pass\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=False).index(repo)
    found = locate(ws.store, "./.github/scripts/release.py")
    assert found is not None and found.path == ".github/scripts/release.py" and found.file_id is not None
    assert locate(ws.store, "../../etc/passwd") is None
    ws.close()


async def test_streamed_usage_without_a_usage_event_estimates_the_prompt() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        events = [{"choices": [{"text": "ab"}]}, {"choices": [{"text": "c", "finish_reason": "stop"}]}]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    backend = OpenAICompatibleBackend(
        "tgi:m",
        profile=provider_profile("tgi"),
        template=fim_template("plain"),
        base_url="http://server/v1",
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    chunks = [c async for c in backend.stream(CompletionRequest(prompt="x" * 700))]
    usage = chunks[-1].usage
    assert usage is not None and usage.estimated and usage.completion_tokens == 2 and usage.prompt_tokens >= 150
    await backend.aclose()


class _StuckHost:
    """Stands in for a loaded model whose generation finishes only when ``release`` is set."""

    def __init__(self) -> None:
        self.worker = PriorityWorker("stuck")
        self.release = threading.Event()

    def bos(self) -> list[int]:
        return []

    def tokenize_segments(self, segments: Any) -> list[int]:
        return [1]

    def generate(self, tokens: list[int], *, emit: Any, cancel: Any, **kw: Any) -> None:
        from forgepilot.backends.base import CompletionChunk

        emit(CompletionChunk(text="first"))
        self.release.wait(timeout=30)


async def test_cancelling_a_caller_while_the_model_winds_down_is_not_swallowed(tmp_path: Path) -> None:
    backend = LlamaCppBackend("llamacpp:stub", path=tmp_path / "x.gguf", template=fim_template("plain"))
    host = _StuckHost()
    backend._host = host  # type: ignore[assignment]

    async def consume() -> str:
        stream = backend.stream(CompletionRequest(prompt="x", max_tokens=5))
        async for chunk in stream:
            await stream.aclose()  # done after the first chunk: the stream waits for the model to let go
            return chunk.text
        return ""

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)
    task.cancel()  # the caller gives up while the stream is winding down
    await asyncio.sleep(0.1)
    host.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    host.worker.shutdown()


# -- 13. distilled instances are cleaned like built ones ------------------------------------------------------------
ANSWER = """### Problem
Write `{name}(x)` that returns twice its argument.

### Solution
```python
AWS_SECRET = "AKIAIOSFODNN7EXAMPLE"
def {name}(x):
    return 2 * x
```

### Tests
```python
def test_it():
    assert {name}(3) == 6
```
"""


def test_distilled_instances_get_secrets_scrubbed_and_duplicates_removed(tmp_path: Path) -> None:
    from forgepilot.datagen.distill import Distiller, Seed, distil_dataset
    from forgepilot.datagen.types import Rejections
    from forgepilot.prompts import builtin_registry
    from forgepilot.sandbox import Sandbox

    teacher = FakeBackend("fake:teacher", replies=[ANSWER.format(name="double")] * 3)
    seeds = [Seed("r", "a.py", "python", i, f"def f{i}(x):\n    return x") for i in range(3)]
    rejected = Rejections()
    sandbox = Sandbox(workers=1)
    try:
        kept = distil_dataset(Distiller(teacher, builtin_registry(), sandbox), seeds, load_settings().dataset, rejected)
    finally:
        sandbox.close()
    assert len(kept) == 1 and rejected.by_reason.get("dedup:exact") == 2
    assert "AKIAIOSFODNN7EXAMPLE" not in kept[0].completion and 'AWS_SECRET = "<PASSWORD>"' in kept[0].completion


# -- 15. chat tasks fit the model's window, cite their sources, and import from where the test lives -----------------
def big_repository(root: Path) -> Path:
    (root / "lib" / "router").mkdir(parents=True)
    (root / "test").mkdir()
    body = "\n".join(f"  // step {i}: match the path against layer {i} of the route stack" for i in range(60))
    for name in ("layer", "route", "index", "params", "dispatch", "match"):
        (root / "lib" / "router" / f"{name}.js").write_text(
            f"function {name}Handler(req, res, next) {{\n{body}\n  return next();\n}}\n"
            f"module.exports = {name}Handler;\n"
        )
    (root / "test" / "app.test.js").write_text("test('app', () => { expect(1).toBe(1); });\n")
    (root / "package.json").write_text('{"devDependencies": {"jest": "29"}}\n')
    return root


async def test_ask_fits_a_small_window_and_attaches_the_sources_it_used(isolated_state: Path, tmp_path: Path) -> None:
    repo = big_repository(tmp_path / "router")
    answer = "The route handler is chosen by layerHandler, which matches the path against each layer."
    backend = FakeBackend("fake:small", replies=[answer], max_context=1024)
    assistant = Assistant.open(load_settings(default_model=backend.name), preset={backend.name: backend})
    assert assistant.workspace is not None
    Indexer(assistant.workspace, embeddings=False).index(repo)
    try:
        result = await assistant.tasks.run("ask", TaskInput(question="how is the route handler for a path chosen?"))
        assert result.usage.prompt_tokens + 768 > 1024 or result.trimmed  # it would not have fit whole
        assert len(fake_tokens(backend.prompts[-1])) + 64 <= 1024
        assert result.trimmed and result.sources
        # The answer cited nothing: the sources it drew on are attached, path:line.
        assert not any(t.startswith("cut the question") for t in result.trimmed)  # what was asked stays whole
        attached = [c for c in result.citations if c["via"] == "attached"]
        assert attached and attached[0]["path"] == result.sources[0]["path"]
        assert f"Sources: `{attached[0]['path']}:{attached[0]['line']}-" in result.text
    finally:
        await assistant.aclose()


async def test_generated_tests_import_relative_to_where_the_test_lives(isolated_state: Path, tmp_path: Path) -> None:
    repo = big_repository(tmp_path / "router")
    backend = FakeBackend("fake:coder", replies=["```js\ntest('x', () => {});\n```"])
    assistant = Assistant.open(load_settings(default_model=backend.name), preset={backend.name: backend})
    assert assistant.workspace is not None
    Indexer(assistant.workspace, embeddings=False).index(repo)
    path = str(repo / "lib" / "router" / "layer.js")
    try:
        result = await assistant.tasks.run(
            "tests", TaskInput(code=(repo / "lib/router/layer.js").read_text(), path=path)
        )
    finally:
        await assistant.aclose()
    prompt = backend.prompts[-1]
    assert result.framework is not None and result.framework["test_path"] == "test/layer.test.js"
    assert "`../lib/router/layer`" in prompt and str(tmp_path) not in prompt


def test_imports_resolve_exact_paths_and_never_climb_out_of_the_repository() -> None:
    from forgepilot.syntax.imports import RepoFiles, resolve
    from forgepilot.syntax.symbols import ImportRef

    repo = RepoFiles(["a.js", "lib/x.js", ".config/setup.js", "pkg/__init__.py", "pkg/.hidden.py"])
    # From the root, "../lib/x" is a file outside the repository: not lib/x.js of this one.
    assert resolve(ImportRef("../lib/x", 1), "a.js", "javascript", repo) == []
    assert resolve(ImportRef("./.config/setup", 1), "a.js", "javascript", repo) == [".config/setup.js"]
    assert resolve(ImportRef("./x", 1), "lib/y.js", "javascript", repo) == ["lib/x.js"]
