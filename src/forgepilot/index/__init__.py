"""Remembering repositories: scanning, the SQLite store, lexical and vector search, and the incremental indexer."""

from forgepilot.index.indexer import Indexer, IndexReport, Workspace
from forgepilot.index.scan import ScanSettings
from forgepilot.index.search import Filters, Hit, Searcher
from forgepilot.index.store import (
    Definition,
    FileProblem,
    FoundDefinition,
    ImportTarget,
    IndexedFile,
    Repository,
    RepositoryStatus,
)

__all__ = [
    "Definition",
    "FileProblem",
    "Filters",
    "FoundDefinition",
    "Hit",
    "ImportTarget",
    "IndexReport",
    "IndexedFile",
    "Indexer",
    "Repository",
    "RepositoryStatus",
    "ScanSettings",
    "Searcher",
    "Workspace",
]
