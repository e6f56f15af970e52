"""*Imports* context: the API a file can reach through its imports, as one signature stub per imported file."""

from __future__ import annotations

import shutil
from pathlib import Path

from forgepilot.context import Document
from forgepilot.context.locate import locate
from forgepilot.context.reachable import ImportedSignatures
from forgepilot.index import Indexer, Workspace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "repos"


def test_each_imported_file_becomes_a_stub_of_what_the_file_takes_from_it(tmp_path: Path) -> None:
    repo = shutil.copytree(FIXTURES / "python", tmp_path / "python")
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=False).index(repo)
    path = repo / "src/shop/payments/checkout.py"
    text = path.read_text()
    cursor = text.index("tax.tax_cents(subtotal, region)")
    doc = Document.at(str(path), text[:cursor] + "\n", offset=cursor, language="python")
    located = locate(ws.store, doc.path)
    assert located is not None
    snippets = ImportedSignatures(ws.store).collect(doc, located, 4)
    by_path = {s.path: s for s in snippets}
    assert set(by_path) == {"src/shop/models.py", "src/shop/payments/tax.py"}
    assert all(s.source == "imports" for s in snippets)
    # From models.py the file takes Cart and Item: their classes, with their public methods, one line each.
    models = by_path["src/shop/models.py"].text.splitlines()
    assert models[0].startswith("class Item") or models[0].startswith("class Cart")
    assert any(line.startswith("    def total_cents(self)") for line in models)
    # ``from . import tax`` takes the module: its public definitions.
    assert by_path["src/shop/payments/tax.py"].text == "def tax_cents(amount: int, region: str) -> int:"
    # Cart is used just above the cursor: its file comes first.
    assert snippets[0].path == "src/shop/models.py"
    ws.close()
