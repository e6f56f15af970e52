"""Search the workspace index: lexical (BM25), vector (cosine), symbol names, paths, and their fusion.

Hybrid search fuses the ranked lists of the lexical, vector and symbol-name searches by reciprocal rank
(score = sum of 1 / (k + rank), k = 60), which needs no score calibration between them. Each hit says which
searches found it and at which rank.
"""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from forgepilot.errors import UserError
from forgepilot.index.indexer import Workspace

RRF_K = 60
Mode = Literal["hybrid", "lexical", "vector", "symbol"]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")


@dataclass(frozen=True)
class Filters:
    repos: tuple[str, ...] = ()  # repository names or roots
    language: str | None = None
    kind: str | None = None


@dataclass
class Hit:
    chunk_id: int
    repository: str
    path: str
    language: str | None
    start_line: int
    end_line: int
    text: str
    context: str | None
    score: float
    symbols: list[str]
    #: search name -> 1-based rank in that search's list
    ranks: dict[str, int] = field(default_factory=dict)


class Searcher:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vector-search")

    def _repo_ids(self, filters: Filters) -> list[int] | None:
        if not filters.repos:
            return None
        ids = [r.id for r in self.ws.store.repositories() if r.name in filters.repos or r.root in filters.repos]
        if not ids:
            raise UserError(
                f"no indexed repository named {', '.join(filters.repos)}", hint="see `forgepilot index status`"
            )
        return ids

    def _allowed(self, chunk_ids: list[int], filters: Filters, repo_ids: list[int] | None) -> set[int]:
        """The chunk ids among ``chunk_ids`` that pass the filters (asked in batches: SQLite bounds parameters)."""
        allowed: set[int] = set()
        for i in range(0, len(chunk_ids), 500):
            part = chunk_ids[i : i + 500]
            where = ["chunks.id IN ({})".format(",".join("?" * len(part)))]
            params: list[object] = list(part)
            if repo_ids:
                where.append("files.repo_id IN ({})".format(",".join("?" * len(repo_ids))))
                params += repo_ids
            if filters.language:
                where.append("files.language = ?")
                params.append(filters.language)
            if filters.kind:
                where.append("(' ' || chunks.symbol_names || ' ') LIKE ?")
                params.append(f"%:{filters.kind} %")
            sql = f"SELECT chunks.id FROM chunks JOIN files ON files.id = chunks.file_id WHERE {' AND '.join(where)}"
            allowed.update(r[0] for r in self.ws.store.conn.execute(sql, params))
        return allowed

    def lexical(self, query: str, limit: int = 20, filters: Filters = Filters()) -> list[tuple[int, float]]:
        return self.ws.lexical.search(
            query, limit, repo_ids=self._repo_ids(filters), language=filters.language, kind=filters.kind
        )

    def vector(self, query: str, limit: int = 20, filters: Filters = Filters()) -> list[tuple[int, float]]:
        if len(self.ws.vectors) == 0:
            return []
        vector = self.ws.embedder.encode_query(query)
        repo_ids = self._repo_ids(filters)
        if not (repo_ids or filters.language or filters.kind):
            return self.ws.vectors.search(vector, limit)
        # Filtered: search deeper until ``limit`` hits pass the filters or the whole index was searched, so a
        # filter that keeps few chunks loses none of the nearest ones (a fixed over-fetch would).
        total = len(self.ws.vectors)
        want = limit * 8
        while True:
            hits = self.ws.vectors.search(vector, min(want, total))
            allowed = self._allowed([cid for cid, _ in hits], filters, repo_ids)
            kept = [h for h in hits if h[0] in allowed]
            if len(kept) >= limit or want >= total:
                return kept[:limit]
            want *= 4

    def symbol(self, query: str, limit: int = 20, filters: Filters = Filters()) -> list[tuple[int, float]]:
        """Chunks defining a symbol named like an identifier in the query (exact name first, then prefix)."""
        words = _IDENT.findall(query)
        # Only words that look like code name symbols: in "return the list of open sockets", "list" and "open"
        # are English, and matching them to functions named list() or open() only adds noise to the fusion.
        code_like = [w for w in words if len(words) == 1 or "_" in w or _CAMEL.search(w)]
        # "user service" also means UserService / user_service: joined forms of short phrases are tried first.
        joined = ["".join(words), "_".join(words)] if 1 < len(words) <= 4 else []
        names = list(dict.fromkeys(joined + code_like))
        if not names:
            return []
        repo_ids = self._repo_ids(filters)
        found: dict[int, float] = {}
        for exact in (True, False):
            for name in names:
                if not exact and (len(name) < 3 or name in joined):
                    continue
                sql = (
                    "SELECT chunks.id FROM symbols JOIN files ON files.id = symbols.file_id "
                    "JOIN chunks ON chunks.file_id = symbols.file_id "
                    "AND symbols.start_line BETWEEN chunks.start_line AND chunks.end_line WHERE "
                    + ("symbols.name = ? COLLATE NOCASE" if exact else "symbols.name LIKE ? ESCAPE '\\'")
                )
                params: list[object] = [name if exact else name.replace("_", "\\_") + "%"]
                if repo_ids:
                    sql += " AND files.repo_id IN ({})".format(",".join("?" * len(repo_ids)))
                    params += repo_ids
                if filters.language:
                    sql += " AND files.language = ?"
                    params.append(filters.language)
                if filters.kind:
                    sql += " AND symbols.kind = ?"
                    params.append(filters.kind)
                sql += " ORDER BY length(symbols.qualified_name) LIMIT ?"
                params.append(limit)
                for (chunk_id,) in self.ws.store.conn.execute(sql, params):
                    found.setdefault(chunk_id, (3.0 if name in joined else 2.0) if exact else 1.0)
            if len(found) >= limit:
                break
        return sorted(found.items(), key=lambda kv: -kv[1])[:limit]

    def paths(self, query: str, limit: int = 20, filters: Filters = Filters()) -> list[tuple[str, str, float]]:
        """(repository, path, score) of files whose path fuzzily matches ``query``."""
        from rapidfuzz import fuzz, process

        repo_ids = self._repo_ids(filters)
        sql = (
            "SELECT repositories.name, files.path FROM files JOIN repositories ON repositories.id = repo_id "
            "WHERE status = 'indexed'"
        )
        params: list[object] = []
        if repo_ids:
            sql += " AND repo_id IN ({})".format(",".join("?" * len(repo_ids)))
            params += repo_ids
        rows = self.ws.store.conn.execute(sql, params).fetchall()
        choices = [r[1] for r in rows]
        matches = process.extract(query, choices, scorer=fuzz.WRatio, limit=limit)
        return [(rows[i][0], path, float(score)) for path, score, i in matches]

    def search(
        self, query: str, limit: int = 10, filters: Filters = Filters(), mode: Mode = "hybrid", vectors: bool = True
    ) -> list[Hit]:
        if not _IDENT.search(query) and mode != "vector":
            return []
        lists: dict[str, list[tuple[int, float]]] = {}
        depth = max(limit * 3, 30)
        # The query embedding dominates hybrid latency and releases the GIL: run it beside the other searches.
        pending = None
        if mode in ("hybrid", "vector") and vectors:
            pending = self._pool.submit(self.vector, query, depth, filters)
        if mode in ("hybrid", "lexical"):
            lists["lexical"] = self.lexical(query, depth, filters)
        if mode in ("hybrid", "symbol"):
            lists["symbol"] = self.symbol(query, depth, filters)
        if pending is not None:
            lists["vector"] = pending.result()
        fused: dict[int, float] = defaultdict(float)
        ranks: dict[int, dict[str, int]] = defaultdict(dict)
        for name, hits in lists.items():
            for rank, (chunk_id, _score) in enumerate(hits, start=1):
                fused[chunk_id] += 1.0 / (RRF_K + rank)
                ranks[chunk_id][name] = rank
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return self._hits(best, ranks)

    def _hits(self, scored: list[tuple[int, float]], ranks: dict[int, dict[str, int]]) -> list[Hit]:
        if not scored:
            return []
        ids = [cid for cid, _ in scored]
        rows = {
            r["id"]: r
            for r in self.ws.store.conn.execute(
                "SELECT chunks.*, files.path, files.language, repositories.name AS repo FROM chunks "
                "JOIN files ON files.id = chunks.file_id JOIN repositories ON repositories.id = files.repo_id "
                "WHERE chunks.id IN ({})".format(",".join("?" * len(ids))),
                ids,
            )
        }
        hits = []
        for chunk_id, score in scored:
            r = rows.get(chunk_id)
            if r is None:  # deleted since the derived index was written
                continue
            hits.append(
                Hit(
                    chunk_id=chunk_id,
                    repository=r["repo"],
                    path=r["path"],
                    language=r["language"],
                    start_line=r["start_line"],
                    end_line=r["end_line"],
                    text=r["text"],
                    context=r["context"],
                    score=score,
                    symbols=[p.rsplit(":", 1)[0] for p in r["symbol_names"].split()],
                    ranks=ranks.get(chunk_id, {}),
                )
            )
        return hits
