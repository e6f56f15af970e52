"""Exact and near-duplicate removal: a content hash, then MinHash over token 5-gram shingles with LSH (datasketch).

Duplicates are found per kind over each instance's *unit* (the function, test or diff it was cut from), so one
copied function gives one in-block instance, not one per copy. The first instance seen (in file order) is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from forgepilot.datagen.types import LINE_KINDS, Instance
from forgepilot.errors import MissingExtra

_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|[^\s\w]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def shingles(text: str, n: int) -> set[bytes]:
    toks = tokens(text)
    if len(toks) < n:
        return {" ".join(toks).encode()} if toks else set()
    return {" ".join(toks[i : i + n]).encode() for i in range(len(toks) - n + 1)}


def deduplicate(
    instances: Sequence[Instance], *, threshold: float, permutations: int, shingle: int
) -> tuple[list[Instance], dict[str, int]]:
    """The instances kept, and how many were removed as ``dedup:exact`` and ``dedup:near`` per kind."""
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError as exc:
        raise MissingExtra("datasketch", "datagen") from exc

    # Drawing 256 permutations costs more than hashing a function's shingles: draw them once, share them.
    template = MinHash(num_perm=permutations, seed=1)
    scheme = template.scheme
    kept: list[Instance] = []
    removed: dict[str, int] = {}
    exact: set[tuple[str, str]] = set()
    lsh: dict[str, MinHashLSH] = {}
    bands: tuple[int, int] | None = None  # LSH picks its bands by numeric integration: once, not once per kind
    for inst in instances:
        unit = inst.unit or inst.completion
        normalized = " ".join(tokens(unit))
        digest = hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()
        if (inst.kind, digest) in exact:
            removed[f"{inst.kind}:dedup:exact"] = removed.get(f"{inst.kind}:dedup:exact", 0) + 1
            continue
        # Line holes are many per function by design: the exact check above is enough for them.
        if inst.kind not in LINE_KINDS:
            grams = shingles(unit, shingle)
            if grams:
                mh = MinHash(num_perm=permutations, seed=1, permutations=template.permutations, scheme=scheme)
                mh.update_batch(list(grams))
                index = lsh.get(inst.kind)
                if index is None:
                    index = lsh[inst.kind] = MinHashLSH(threshold=threshold, num_perm=permutations, params=bands)
                    bands = (index.b, index.r)
                if index.query(mh):
                    removed[f"{inst.kind}:dedup:near"] = removed.get(f"{inst.kind}:dedup:near", 0) + 1
                    continue
                index.insert(inst.id or str(len(kept)), mh)
        exact.add((inst.kind, digest))
        kept.append(inst)
    return kept, removed
