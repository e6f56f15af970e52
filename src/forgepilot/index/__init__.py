"""Remembering repositories: scanning, the SQLite store, lexical and vector search, and the incremental indexer."""

from forgepilot.index.indexer import Indexer, IndexReport, Workspace
from forgepilot.index.scan import ScanSettings
from forgepilot.index.search import Filters, Hit, Searcher
from forgepilot.index.store import FileProblem, Repository, RepositoryStatus

__all__ = [
    "FileProblem",
    "Filters",
    "Hit",
    "IndexReport",
    "Indexer",
    "Repository",
    "RepositoryStatus",
    "ScanSettings",
    "Searcher",
    "Workspace",
]
