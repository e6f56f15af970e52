"""BM25 search over chunks with tantivy, tokenised for code.

Identifiers are expanded before indexing and querying: ``parseHttpRequest`` is indexed as
``parsehttprequest parse http request`` and ``MAX_RETRY_COUNT`` as ``max_retry_count max retry count``, so a
query matches both the whole name and its words. Queries are built from term queries (never parsed), so any
text a user types is a valid query. One document per chunk, with fields for path, symbol names and content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_WORD_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_FIELD_BOOSTS = {"symbols": 3.0, "path": 2.0, "content": 1.0}
_WRITER_HEAP = 64_000_000


def code_terms(text: str) -> list[str]:
    """Lower-cased terms of ``text``: every identifier, plus its camelCase / snake_case parts."""
    terms: list[str] = []
    for match in _IDENTIFIER.finditer(text):
        ident = match.group(0)
        lowered = ident.lower()
        terms.append(lowered)
        if len(ident) > 2:
            parts = [p.lower() for piece in ident.split("_") for p in _WORD_PARTS.findall(piece)]
            if len(parts) > 1 or (parts and parts[0] != lowered):
                terms.extend(p for p in parts if p != lowered)
    return terms


def _expanded(text: str) -> str:
    return " ".join(code_terms(text))


@dataclass(frozen=True)
class LexicalDoc:
    chunk_id: int
    file_id: int
    repo_id: int
    path: str
    language: str
    kinds: str  # space-separated symbol kinds defined in the chunk
    symbols: str  # space-separated symbol names
    content: str


class LexicalIndex:
    """A tantivy index in ``directory``; readers may search while a writer adds documents."""

    def __init__(self, directory: Path) -> None:
        import tantivy

        self._tantivy = tantivy
        directory.mkdir(parents=True, exist_ok=True)
        builder = tantivy.SchemaBuilder()
        builder.add_integer_field("chunk_id", stored=True, indexed=True, fast=True)
        builder.add_integer_field("file_id", stored=False, indexed=True)
        builder.add_integer_field("repo_id", stored=False, indexed=True)
        builder.add_text_field("language", stored=False, tokenizer_name="raw")
        builder.add_text_field("kinds", stored=False, tokenizer_name="code")
        for name in _FIELD_BOOSTS:
            builder.add_text_field(name, stored=False, tokenizer_name="code")
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema, path=str(directory))
        analyzer = (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).filter(tantivy.Filter.lowercase()).build()
        )
        self.index.register_tokenizer("code", analyzer)
        self._writer: Any = None

    # -- writing ----------------------------------------------------------------------------------------------

    def writer(self) -> Any:
        if self._writer is None:
            self._writer = self.index.writer(heap_size=_WRITER_HEAP, num_threads=1)
        return self._writer

    def replace_files(self, file_ids: Iterable[int], docs: Iterable[LexicalDoc]) -> None:
        """Drop every document of ``file_ids`` and add ``docs`` (not visible until ``commit``)."""
        writer = self.writer()
        for file_id in file_ids:
            writer.delete_documents_by_term("file_id", file_id)
        for d in docs:
            writer.add_document(
                self._tantivy.Document(
                    chunk_id=d.chunk_id,
                    file_id=d.file_id,
                    repo_id=d.repo_id,
                    language=d.language,
                    kinds=d.kinds,
                    path=_expanded(d.path.replace("/", " ").replace(".", " ")),
                    symbols=_expanded(d.symbols),
                    content=_expanded(d.content),
                )
            )

    def delete_files(self, file_ids: Iterable[int]) -> None:
        writer = self.writer()
        for file_id in file_ids:
            writer.delete_documents_by_term("file_id", file_id)

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()
            self._writer = None

    # -- searching --------------------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        limit: int = 20,
        *,
        repo_ids: Sequence[int] | None = None,
        language: str | None = None,
        kind: str | None = None,
    ) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the best chunks for ``query``, best first."""
        t = self._tantivy
        terms = list(dict.fromkeys(code_terms(query)))
        if not terms:
            return []
        should = [
            (t.Occur.Should, t.Query.boost_query(t.Query.term_query(self.schema, field, term), boost))
            for term in terms
            for field, boost in _FIELD_BOOSTS.items()
        ]
        clauses = [(t.Occur.Must, t.Query.boolean_query(should))]
        if repo_ids:
            repos = [(t.Occur.Should, t.Query.term_query(self.schema, "repo_id", r)) for r in repo_ids]
            clauses.append((t.Occur.Must, t.Query.boolean_query(repos)))
        if language:
            clauses.append((t.Occur.Must, t.Query.term_query(self.schema, "language", language)))
        if kind:
            clauses.append((t.Occur.Must, t.Query.term_query(self.schema, "kinds", kind.lower())))
        self.index.reload()
        searcher = self.index.searcher()
        hits = searcher.search(t.Query.boolean_query(clauses), limit).hits
        return [(int(searcher.doc(address)["chunk_id"][0]), float(score)) for score, address in hits]

    def count(self) -> int:
        self.index.reload()
        return int(self.index.searcher().num_docs)
