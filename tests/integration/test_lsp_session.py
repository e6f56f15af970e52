"""A real LSP session over stdio: `forgepilot lsp` driven by pygls' client from initialize to shutdown."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

FAKE_CONFIG = """
default_model = "fake:coder"

[models."fake:coder"]
family = "qwen2.5-coder"
provider = "fake"

[monitor]
retention_checkpoints_s = [0.3, 0.6]
"""


async def test_inline_completion_code_action_and_telemetry(tmp_path: Path) -> None:
    config = tmp_path / "forgepilot.toml"
    config.write_text(FAKE_CONFIG)
    state = tmp_path / "state"
    env = {**os.environ, "FORGEPILOT_CONFIG": str(config), "FORGEPILOT_STATE_DIR": str(state)}
    messages: list[str] = []
    client = LanguageClient("forgepilot-test", "1")

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def show(params: types.ShowMessageParams) -> None:
        messages.append(params.message)

    await client.start_io(sys.executable, "-m", "forgepilot", "lsp", "--debounce-ms", "10", env=env)
    try:
        result = await client.initialize_async(
            types.InitializeParams(capabilities=types.ClientCapabilities(), process_id=os.getpid())
        )
        assert result.server_info is not None and result.server_info.name == "forgepilot"
        caps = result.capabilities
        assert caps.inline_completion_provider and caps.code_action_provider and caps.completion_provider
        assert caps.execute_command_provider is not None
        assert "forgepilot.accept" in caps.execute_command_provider.commands
        client.initialized(types.InitializedParams())

        uri = (tmp_path / "calc.py").as_uri()
        text = "def add(a, b):\n    \n"
        client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text)))
        other = (tmp_path / "other.py").as_uri()
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(other, "python", 1, "def sub(a, b):\n    pass\n"))
        )
        inline = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Automatic),
                text_document=types.TextDocumentIdentifier(uri),
                position=types.Position(1, 4),
            )
        )
        assert inline is not None and not isinstance(inline, list)
        item = inline.items[0]
        assert item.insert_text == "pass" and item.command is not None and item.command.command == "forgepilot.accept"

        completion = await client.text_document_completion_async(
            types.CompletionParams(types.TextDocumentIdentifier(uri), types.Position(1, 4))
        )
        assert isinstance(completion, types.CompletionList) and completion.items[0].insert_text == "pass"

        actions = await client.text_document_code_action_async(
            types.CodeActionParams(
                types.TextDocumentIdentifier(uri),
                types.Range(types.Position(0, 0), types.Position(2, 0)),
                types.CodeActionContext(diagnostics=[]),
            )
        )
        assert actions is not None
        titles = [a.title for a in actions if isinstance(a, types.Command)]
        assert titles == [
            "ForgePilot: Explain this code",
            "ForgePilot: Generate unit tests",
            "ForgePilot: Document this code",
        ]
        explain = next(a for a in actions if isinstance(a, types.Command) and "Explain" in a.title)
        explained = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(explain.command, explain.arguments)
        )
        assert explained["task"] == "explain" and explained["template_id"] == "explain"

        assert item.command.arguments is not None
        # The editor inserts the suggestion, then runs its command; the server follows the accepted text.
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=2, uri=uri),
                [types.TextDocumentContentChangeWholeDocument(text="def add(a, b):\n    pass\n")],
            )
        )
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(item.command.command, item.command.arguments)
        )
        await asyncio.sleep(0.45)  # past the first retention check
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=3, uri=uri),
                [types.TextDocumentContentChangeWholeDocument(text="def add(a, b):\n    return a + b\n")],
            )
        )
        await asyncio.sleep(0.5)  # past the second
        status = await client.workspace_execute_command_async(types.ExecuteCommandParams("forgepilot.status", []))
        assert status["degraded"] is False
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        server = client._server  # a failed assertion must not leave the server waiting for `exit`
        if server is not None and server.returncode is None:
            server.kill()
        await client.stop()

    assert messages and messages[-1] == "pass\n"  # the explanation is shown to the user
    db = sqlite3.connect(state / "monitor.db")
    events = db.execute("SELECT type, model, template_id, accepted_chars FROM events ORDER BY id").fetchall()
    db.close()
    assert ("accepted", "fake:coder", "complete", 4) in events and events[0][0] == "shown"
    db = sqlite3.connect(state / "monitor.db")
    retained = db.execute(
        "SELECT after_s, retained_share, model, language FROM events WHERE type = 'retained' ORDER BY after_s"
    ).fetchall()
    db.close()
    assert retained[0] == (0.3, 1.0, "fake:coder", "python")  # still there after the first check
    assert retained[1][0] == 0.6 and retained[1][1] < 0.5  # rewritten before the second


async def test_unopened_documents_and_positions_past_the_end_get_empty_results(tmp_path: Path) -> None:
    from pygls.exceptions import JsonRpcInvalidParams

    config = tmp_path / "forgepilot.toml"
    config.write_text(FAKE_CONFIG)
    env = {**os.environ, "FORGEPILOT_CONFIG": str(config), "FORGEPILOT_STATE_DIR": str(tmp_path / "state")}
    client = LanguageClient("forgepilot-test", "1")
    await client.start_io(sys.executable, "-m", "forgepilot", "lsp", "--debounce-ms", "10", env=env)
    try:
        await client.initialize_async(
            types.InitializeParams(capabilities=types.ClientCapabilities(), process_id=os.getpid())
        )
        client.initialized(types.InitializedParams())

        def inline(uri: str, line: int, character: int) -> types.InlineCompletionParams:
            return types.InlineCompletionParams(
                context=types.InlineCompletionContext(types.InlineCompletionTriggerKind.Invoked),
                text_document=types.TextDocumentIdentifier(uri),
                position=types.Position(line, character),
            )

        never_opened = (tmp_path / "ghost.py").as_uri()  # not even on disk
        result = await client.text_document_inline_completion_async(inline(never_opened, 0, 0))
        assert isinstance(result, types.InlineCompletionList) and not result.items

        uri = (tmp_path / "calc.py").as_uri()
        text = "def add(a, b):\n    \n"
        client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text)))
        for line, character in ((7, 0), (0, 99), (1, 5)):  # past the last line, past a line's end (twice)
            result = await client.text_document_inline_completion_async(inline(uri, line, character))
            assert isinstance(result, types.InlineCompletionList) and not result.items, (line, character)
        # The empty line after the final line break is a real position.
        result = await client.text_document_inline_completion_async(inline(uri, 2, 0))
        assert isinstance(result, types.InlineCompletionList)

        whole = types.Range(types.Position(0, 0), types.Position(1, 0))
        try:
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams("forgepilot.explain", [never_opened, whole])
            )
            raise AssertionError("explaining a document that is not open must fail")
        except JsonRpcInvalidParams as exc:
            assert "is not open" in str(exc) and "Traceback" not in str(exc)
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        server = client._server
        if server is not None and server.returncode is None:
            server.kill()
        await client.stop()
