"""Remembering repositories: scanning, the SQLite store, lexical and vector search, and the incremental indexer."""

from forgepilot.index.indexer import Indexer, IndexReport, Workspace
from forgepilot.index.scan import ScanSettings
from forgepilot.index.search import Filters, Hit, Searcher

__all__ = ["Filters", "Hit", "IndexReport", "Indexer", "ScanSettings", "Searcher", "Workspace"]
