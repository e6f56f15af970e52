"""``forgepilot lsp``: the assistant as a language server over stdio (pygls).

Open and changed documents are tracked (the most recent feed *similar* context), ``textDocument/inlineCompletion``
is served with a debounce and ``textDocument/completion`` as a fallback for clients without inline completion,
``$/cancelRequest`` stops the model, code actions offer explain / generate tests / document, and the client
reports accept / reject / partial accept through the ``forgepilot.accept`` family of commands. After an accept the
server keeps checking whether the accepted text is still in the document (retention, at 30 s, 2 min and 10 min by
default), and tells the client when the assistant enters or leaves degraded mode (``forgepilot/status``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from forgepilot import __version__
from forgepilot.backends.base import CancelToken
from forgepilot.context import Document, OpenFile
from forgepilot.errors import Cancelled, ForgePilotError
from forgepilot.lsp.engine import Engine
from forgepilot.monitor import Accepted, Event, RetentionTracker
from forgepilot.syntax.languages import LANGUAGES

_log = logging.getLogger("forgepilot.lsp")
RECENT_DOCUMENTS = 20
CMD_ACCEPT = "forgepilot.accept"
CMD_REJECT = "forgepilot.reject"
CMD_PARTIAL = "forgepilot.partialAccept"
CMD_EXPLAIN = "forgepilot.explain"
CMD_TESTS = "forgepilot.generateTests"
CMD_DOCUMENT = "forgepilot.document"
CMD_STATUS = "forgepilot.status"
STATUS_NOTIFICATION = "forgepilot/status"
#: Files read from disk for a retention check once their buffer is closed, at most this big.
MAX_CLOSED_FILE_BYTES = 4 << 20
EventKind = Literal["shown", "accepted", "rejected", "partially_accepted"]
_TASK_OF = {CMD_EXPLAIN: "explain", CMD_TESTS: "tests", CMD_DOCUMENT: "document"}
_TITLES = {CMD_EXPLAIN: "Explain this code", CMD_TESTS: "Generate unit tests", CMD_DOCUMENT: "Document this code"}


class ForgePilotServer(LanguageServer):
    def __init__(
        self,
        engine: Engine,
        *,
        debounce_s: float = 0.075,
        retention_checkpoints_s: Sequence[float] = (30.0, 120.0, 600.0),
        retention_window_chars: int = 4000,
    ) -> None:
        super().__init__("forgepilot", __version__)
        self.engine = engine
        self.debounce_s = debounce_s
        self.recent: OrderedDict[str, None] = OrderedDict()
        self.shown: dict[str, dict[str, Any]] = {}
        self.retention = RetentionTracker(
            self.current_text,
            self.engine.event,
            checkpoints_s=retention_checkpoints_s,
            window_chars=retention_window_chars,
        )
        self.degraded = False
        self._background: set[asyncio.Future[None]] = set()

    def current_text(self, uri: str) -> str | None:
        """The text of ``uri`` now: the open buffer, else the saved file, else None (closed and gone)."""
        if uri in self.workspace.text_documents:
            return self.workspace.get_text_document(uri).source
        path = to_fs_path(uri)
        try:
            if path and Path(path).is_file() and Path(path).stat().st_size <= MAX_CLOSED_FILE_BYTES:
                return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        return None

    def note_status(self, degraded: bool) -> None:
        """Tell the client when the assistant enters or leaves degraded mode (a message and a notification)."""
        if degraded == self.degraded:
            return
        self.degraded = degraded
        text = (
            "ForgePilot is in degraded mode: shorter context, the fast model, chat tasks paused"
            if degraded
            else "ForgePilot is back to normal"
        )
        self.window_show_message(
            types.ShowMessageParams(types.MessageType.Warning if degraded else types.MessageType.Info, text)
        )
        self.protocol.notify(STATUS_NOTIFICATION, {"degraded": degraded, "message": text})

    def prepare_soon(self, uri: str) -> None:
        """Warm the model's cache for completions in ``uri`` (just opened) in the background."""
        at = self.document_at(uri, types.Position(0, 0))
        if at is None:
            return

        async def warm() -> None:
            try:
                await self.engine.prepare(at[0], self.recent_files(uri))
            except ForgePilotError as exc:  # an optimisation: never an error the user sees
                _log.info("could not warm %s: %s", uri, exc.one_line())

        task = asyncio.ensure_future(warm())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def touch(self, uri: str) -> None:
        self.recent[uri] = None
        self.recent.move_to_end(uri)
        while len(self.recent) > RECENT_DOCUMENTS * 2:
            self.recent.popitem(last=False)

    def recent_files(self, current: str) -> list[OpenFile]:
        files = []
        for uri in reversed(self.recent):
            if uri == current:
                continue
            try:
                doc = self.workspace.get_text_document(uri)
                files.append(OpenFile(to_fs_path(uri) or uri, doc.source))
            except Exception:  # closed since
                continue
            if len(files) >= RECENT_DOCUMENTS:
                break
        return files

    def document_at(self, uri: str, position: types.Position) -> tuple[Document, int | None] | None:
        """The open document with the cursor at ``position``; None when the document is not open (the client never
        sent didOpen) or ``position`` is not inside it (pygls would silently clamp it to the end)."""
        if uri not in self.workspace.text_documents:
            return None
        doc = self.workspace.get_text_document(uri)
        offset = _offset(doc, position)
        if offset is None:
            _log.warning("position %s:%s is outside %s", position.line, position.character, uri)
            return None
        path = to_fs_path(uri) or uri
        return Document.at(
            path, doc.source, offset=offset, language=doc.language_id if _known(doc.language_id) else None
        ), doc.version

    async def suggest(self, uri: str, position: types.Position) -> dict[str, Any] | None:
        """A completion at ``position`` after the debounce, or None when the document moved on meanwhile (or is
        not open, or the position is not in it)."""
        at = self.document_at(uri, position)
        if at is None:
            return None
        version = at[1]
        await asyncio.sleep(self.debounce_s)
        now_at = self.document_at(uri, position)
        if now_at is None or now_at[1] != version:
            return None
        doc = now_at[0]
        offset = doc.offset
        token = CancelToken()
        try:
            result = await self.engine.complete(doc, self.recent_files(uri), token)
        except asyncio.CancelledError:
            token.cancel()  # $/cancelRequest: stop the model, then let pygls answer RequestCancelled
            raise
        except Cancelled:
            return None
        except ForgePilotError as exc:
            self.window_show_message(
                types.ShowMessageParams(types.MessageType.Warning, f"ForgePilot: {exc.one_line()}")
            )
            return None
        self.note_status(bool(result.get("degraded")))
        if not result.get("text"):
            return None
        self.shown[result["id"]] = {
            "shown_at": time.monotonic(),
            "chars": len(result["text"]),
            "uri": uri,
            "offset": offset,
            **result,
        }
        while len(self.shown) > 1000:
            self.shown.pop(next(iter(self.shown)))
        await self.report("shown", result["id"])
        return result

    async def report(self, kind: EventKind, completion_id: str, accepted_chars: int | None = None) -> None:
        info = self.shown.get(completion_id, {})
        event = Event(
            type=kind,
            completion_id=completion_id,
            model=info.get("model"),
            mode=info.get("mode"),
            language=info.get("language"),
            template_id=info.get("template_id"),
            template_version=info.get("template_version"),
            shown_chars=info.get("chars"),
            accepted_chars=accepted_chars,
            client_time=time.time(),
        )
        try:
            await self.engine.event(event)
        except ForgePilotError as exc:  # telemetry must never break editing
            _log.warning("could not record %s event: %s", kind, exc.one_line())
        if kind in ("accepted", "partially_accepted") and info.get("text"):
            text = info["text"] if accepted_chars is None else info["text"][:accepted_chars]
            self.retention.track(
                Accepted(
                    completion_id=completion_id,
                    uri=info["uri"],
                    text=text,
                    offset=info["offset"],
                    accepted_at=time.monotonic(),
                    model=info.get("model"),
                    mode=info.get("mode"),
                    language=info.get("language"),
                    template_id=info.get("template_id"),
                    template_version=info.get("template_version"),
                )
            )


def _offset(doc: TextDocument, position: types.Position) -> int | None:
    """The character offset of an LSP ``position`` (in the client's code units), or None when it is past the end
    of its line or of the document."""
    lines = doc.lines
    if position.line < 0 or position.character < 0:
        return None
    if position.line >= len(lines):
        # Only the empty line after a final line break exists past the last line.
        at_end = position.line == len(lines) and position.character == 0 and (not lines or lines[-1].endswith("\n"))
        return len(doc.source) if at_end else None
    server = doc.position_codec.position_from_client_units(lines, types.Position(position.line, position.character))
    back = doc.position_codec.position_to_client_units(lines, server)
    line = lines[position.line].rstrip("\r\n")
    if (back.line, back.character) != (position.line, position.character) or server.character > len(line):
        return None
    return doc.offset_at_server_position(server)


def _known(language_id: str | None) -> bool:
    return bool(language_id) and language_id in LANGUAGES


def _accept_command(result: dict[str, Any]) -> types.Command:
    return types.Command("Accept ForgePilot suggestion", CMD_ACCEPT, arguments=[result["id"], len(result["text"])])


def build_server(
    engine: Engine,
    *,
    debounce_s: float = 0.075,
    retention_checkpoints_s: Sequence[float] = (30.0, 120.0, 600.0),
    retention_window_chars: int = 4000,
) -> ForgePilotServer:
    server = ForgePilotServer(
        engine,
        debounce_s=debounce_s,
        retention_checkpoints_s=retention_checkpoints_s,
        retention_window_chars=retention_window_chars,
    )

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: ForgePilotServer, params: None) -> None:
        await ls.retention.aclose()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: ForgePilotServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.touch(params.text_document.uri)
        ls.prepare_soon(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: ForgePilotServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.touch(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: ForgePilotServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.recent.pop(params.text_document.uri, None)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: ForgePilotServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        result = await ls.suggest(params.text_document.uri, params.position)
        if result is None:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=result["text"],
            range=types.Range(params.position, params.position),
            command=_accept_command(result),
        )
        return types.InlineCompletionList(items=[item])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "]))
    async def completion(ls: ForgePilotServer, params: types.CompletionParams) -> types.CompletionList:
        result = await ls.suggest(params.text_document.uri, params.position)
        if result is None:
            return types.CompletionList(is_incomplete=True, items=[])
        text = result["text"]
        item = types.CompletionItem(
            label=text.strip().splitlines()[0][:60] if text.strip() else text,
            kind=types.CompletionItemKind.Text,
            detail=f"ForgePilot ({result.get('mode')})",
            insert_text=text,
            text_edit=types.TextEdit(types.Range(params.position, params.position), text),
            command=_accept_command(result),
            sort_text="0",
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION)
    def code_action(ls: ForgePilotServer, params: types.CodeActionParams) -> list[types.Command]:
        # Plain commands (the spec allows them as code actions): a CodeAction carrying a command is read back as a
        # Command by lsprotocol's own union hook, so clients built on it would lose the action.
        args = [params.text_document.uri, params.range]
        return [types.Command(f"ForgePilot: {title}", cmd, arguments=args) for cmd, title in _TITLES.items()]

    async def run_task(ls: ForgePilotServer, cmd: str, args: list[Any]) -> dict[str, Any]:
        uri, raw_range = args[0], args[1]
        rng = (
            types.Range(types.Position(**raw_range["start"]), types.Position(**raw_range["end"]))
            if isinstance(raw_range, dict)
            else raw_range
        )
        if uri not in ls.workspace.text_documents:
            raise JsonRpcInvalidParams(f"{uri} is not open: send textDocument/didOpen first")
        doc = ls.workspace.get_text_document(uri)
        code = doc.text_in_client_range(rng) if rng.start != rng.end else ""
        if not code.strip():  # no selection: the whole document
            code = doc.source
        result = await ls.engine.task(
            _TASK_OF[cmd], code, to_fs_path(uri) or uri, doc.language_id if _known(doc.language_id) else None
        )
        if cmd == CMD_EXPLAIN:
            ls.window_show_message(types.ShowMessageParams(types.MessageType.Info, result["text"]))
        return result

    @server.command(CMD_EXPLAIN)
    async def explain(ls: ForgePilotServer, *args: Any) -> dict[str, Any]:
        return await run_task(ls, CMD_EXPLAIN, list(args))

    @server.command(CMD_TESTS)
    async def tests(ls: ForgePilotServer, *args: Any) -> dict[str, Any]:
        return await run_task(ls, CMD_TESTS, list(args))

    @server.command(CMD_DOCUMENT)
    async def document(ls: ForgePilotServer, *args: Any) -> dict[str, Any]:
        return await run_task(ls, CMD_DOCUMENT, list(args))

    @server.command(CMD_ACCEPT)
    async def accept(ls: ForgePilotServer, *args: Any) -> dict[str, Any]:
        await ls.report("accepted", str(args[0]), int(args[1]) if len(args) > 1 else None)
        return {"recorded": "accepted"}

    @server.command(CMD_PARTIAL)
    async def partial(ls: ForgePilotServer, *args: Any) -> dict[str, Any]:
        await ls.report("partially_accepted", str(args[0]), int(args[1]) if len(args) > 1 else None)
        return {"recorded": "partially_accepted"}

    @server.command(CMD_STATUS)
    def status(ls: ForgePilotServer, *args: Any) -> dict[str, Any]:
        return {"degraded": ls.degraded, "retention_checks_pending": len(ls.retention)}

    @server.command(CMD_REJECT)
    async def reject(ls: ForgePilotServer, *args: Any) -> dict[str, Any]:
        await ls.report("rejected", str(args[0]), 0)
        return {"recorded": "rejected"}

    return server
