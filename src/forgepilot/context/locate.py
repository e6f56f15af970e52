"""Find where an edited document lives in the workspace index: its repository and its indexed file row."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath

from forgepilot.index.store import Repository, Store


@dataclass(frozen=True)
class Located:
    repository: Repository
    #: The document's path relative to the repository root (posix).
    path: str
    #: The file's id in the index, or None when the document is not indexed (new, or outside the index).
    file_id: int | None


def locate(store: Store, path: str, repository: str | None = None) -> Located | None:
    """The repository holding ``path`` (absolute, or relative to a repository root); None when none does."""
    repos = store.repositories()
    if repository:
        repos = [r for r in repos if repository in (r.name, r.root)] or repos
    candidates: list[tuple[Repository, str]] = []
    if os.path.isabs(path):
        for repo in repos:
            root = repo.root.rstrip("/") + "/"
            if path.startswith(root):
                candidates.append((repo, path[len(root) :]))
        candidates.sort(key=lambda c: -len(c[0].root))  # the innermost repository wins
    else:
        # normpath drops "./" and "a/.." parts; what still climbs out of the root names no file of a repository.
        rel = posixpath.normpath(PurePosixPath(path).as_posix())
        if rel == ".." or rel.startswith("../") or rel == ".":
            return None
        candidates = [(repo, rel) for repo in repos]
    first: Located | None = None
    for repo, rel in candidates:
        file_id = store.indexed_file_id(repo.id, rel)
        if file_id is not None:
            return Located(repo, rel, file_id)
        if first is None:
            first = Located(repo, rel, None)
    # An unindexed file of a single (or named) repository still gets that repository's context.
    return first if first is not None and (len(candidates) == 1 or os.path.isabs(path)) else None
