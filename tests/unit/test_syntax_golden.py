"""Golden files per language: symbols, imports resolved to files of the fixture repository, and chunks.

Regenerate after an intended change with FORGEPILOT_UPDATE_GOLDEN=1, then read the diff before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from forgepilot.syntax import analyze, detect_language
from forgepilot.syntax.chunking import chunk_text
from forgepilot.syntax.imports import RepoFiles, resolve

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPOS = sorted(p.name for p in (FIXTURES / "repos").iterdir() if p.is_dir())


def describe(repo: Path) -> dict[str, Any]:
    files = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    analyses = {}
    for rel in files:
        language = detect_language(rel)
        if language is not None and language.grammar:
            analyses[rel] = (language, (repo / rel).read_bytes())
    results = {rel: analyze(data, language) for rel, (language, data) in analyses.items()}
    go_modules = {}
    if (repo / "go.mod").is_file():
        go_modules[""] = (repo / "go.mod").read_text().split()[1]
    repo_files = RepoFiles(results, {p: r.package for p, r in results.items() if r.package}, go_modules)
    out: dict[str, Any] = {}
    for rel, result in results.items():
        language, data = analyses[rel]
        text = data.decode("utf-8")
        out[rel] = {
            "language": language.name,
            "package": result.package,
            "parse_errors": result.has_errors,
            "symbols": [
                [s.kind, s.qualified_name, s.start_line, s.end_line, s.signature, s.doc] for s in result.symbols
            ],
            "imports": [[i.module, i.line, resolve(i, rel, language.name, repo_files)] for i in result.imports],
            "chunks": [
                [c.start_line, c.end_line, c.context] for c in chunk_text(text, language, target=300, hard_max=600)
            ],
        }
    return out


@pytest.mark.parametrize("name", REPOS)
def test_golden(name: str) -> None:
    actual = describe(FIXTURES / "repos" / name)
    golden = FIXTURES / "golden" / f"{name}.json"
    if os.environ.get("FORGEPILOT_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(actual, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert golden.is_file(), f"no golden file for {name}: run with FORGEPILOT_UPDATE_GOLDEN=1"
    assert actual == json.loads(golden.read_text(encoding="utf-8"))


def test_every_parsed_language_has_a_fixture() -> None:
    from forgepilot.syntax import PARSED_LANGUAGES

    covered = set()
    for name in REPOS:
        covered |= {v["language"] for v in describe(FIXTURES / "repos" / name).values()}
    assert set(PARSED_LANGUAGES) <= covered
