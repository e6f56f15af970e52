"""Train / valid / test splits that never put one file (or one repository) on two sides.

Files an instance draws on together (a focal file and its test file) form one group, so a test pair cannot leak
one half into train and the other into test; a commit touching files of different groups goes with the group of
its first file only when all of them agree, otherwise it is dropped (``split:mixed_files``). The assignment is a
stable hash of the group's smallest path (or the repository), so adding files does not move the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from forgepilot.datagen.types import Instance


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller name is the root: the group's name does not depend on the order files were seen.
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def _bucket(key: str, seed: int, test: float, valid: float) -> str:
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    x = int.from_bytes(digest[:8], "big") / 2**64
    if x < test:
        return "test"
    if x < test + valid:
        return "valid"
    return "train"


def assign_splits(
    instances: Sequence[Instance], *, by: str, test: float, valid: float, seed: int
) -> tuple[list[Instance], int]:
    """Set each instance's ``split``; returns the instances kept and how many were dropped as mixed."""
    if by == "repository":
        for inst in instances:
            inst.split = _bucket(inst.repository, seed, test, valid)
        return list(instances), 0
    groups = _Groups()
    for inst in instances:
        if inst.kind == "commit":
            continue
        key = f"{inst.repository}\x00{inst.path}"
        groups.find(key)
        for other in inst.related_paths:
            groups.union(key, f"{inst.repository}\x00{other}")
    kept, mixed = [], 0
    for inst in instances:
        paths = [inst.path, *inst.related_paths] if inst.kind == "commit" else [inst.path]
        buckets = {_bucket(groups.find(f"{inst.repository}\x00{p}"), seed, test, valid) for p in paths}
        if len(buckets) != 1:
            mixed += 1
            continue
        inst.split = buckets.pop()
        kept.append(inst)
    return kept, mixed
