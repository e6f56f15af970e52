"""BM25 search over chunks with tantivy, tokenised for code.

Every text field is indexed twice by tantivy's own (Rust) tokenizers: once as whole identifiers
(``parseHttpRequest``, ``max_retry_count``) and once as their word parts (``parse http request``, ``max retry
count``), both lower-cased, so a query matches a whole name or the words in it. Queries are cut into terms by the
same analyzers, so the two sides always agree, and are built from term queries (never parsed), so any text a user
types is a valid query. One document per chunk, with fields for path, symbol names and content.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Whole identifiers and numbers.
_IDENT_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+"
# Word parts: camelCase humps, snake_case pieces, digit runs (an acronym stays with the word after it).
_PART_PATTERN = r"[A-Z]+[a-z]*|[a-z]+|[0-9]+"
_FIELD_BOOSTS = {"symbols": 3.0, "path": 2.0, "content": 1.0}
_WRITER_HEAP = 64_000_000


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
        builder.add_text_field("kinds", stored=False, tokenizer_name="code_ident")
        for name in _FIELD_BOOSTS:
            builder.add_text_field(f"{name}_ident", stored=False, tokenizer_name="code_ident")
            builder.add_text_field(f"{name}_part", stored=False, tokenizer_name="code_part")
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema, path=str(directory))
        self.analyzers = {"ident": self._analyzer(_IDENT_PATTERN), "part": self._analyzer(_PART_PATTERN)}
        for kind, analyzer in self.analyzers.items():
            self.index.register_tokenizer(f"code_{kind}", analyzer)
        self._writer: Any = None

    def _analyzer(self, pattern: str) -> Any:
        t = self._tantivy
        return t.TextAnalyzerBuilder(t.Tokenizer.regex(pattern)).filter(t.Filter.lowercase()).build()

    def query_terms(self, text: str) -> dict[str, list[str]]:
        """The terms of ``text`` per analyzer ("ident", "part"), as the index saw them, without duplicates."""
        return {kind: list(dict.fromkeys(a.analyze(text))) for kind, a in self.analyzers.items()}

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
                    path_ident=d.path,
                    path_part=d.path,
                    symbols_ident=d.symbols,
                    symbols_part=d.symbols,
                    content_ident=d.content,
                    content_part=d.content,
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
        should = [
            (t.Occur.Should, t.Query.boost_query(t.Query.term_query(self.schema, f"{field}_{kind}", term), boost))
            for kind, kind_terms in self.query_terms(query).items()
            for term in kind_terms
            for field, boost in _FIELD_BOOSTS.items()
        ]
        if not should:
            return []
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
        # Equal scores are common in repetitive code; tantivy orders them by segment layout, which depends on
        # the history of writes. Fetch a margin and break ties by chunk id so the same index ranks the same way.
        hits = searcher.search(t.Query.boolean_query(clauses), limit * 2 + 10).hits
        scored = [(int(searcher.doc(address)["chunk_id"][0]), float(score)) for score, address in hits]
        scored.sort(key=lambda hit: (-round(hit[1], 5), hit[0]))
        return scored[:limit]

    def count(self) -> int:
        self.index.reload()
        return int(self.index.searcher().num_docs)
