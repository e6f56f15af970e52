from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from forgepilot.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "repos"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_index_status_search_symbols(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = shutil.copytree(FIXTURES / "rust", tmp_path / "rs")
    (repo / "blob.bin").write_bytes(b"\0\1\2")
    code, out, err = run(capsys, "index", str(repo), "--no-embeddings", "--json")
    assert code == 0, err
    report = json.loads(out)[0]
    assert report["parsed"] == 3 and report["skipped"] == {"binary": 1}

    code, out, _ = run(capsys, "index", "status", "--json")
    status = json.loads(out)["repositories"][0]
    assert status["name"] == "rs" and status["files"]["indexed"] == 3 and status["skipped_by_reason"] == {"binary": 1}
    assert status["symbols"] >= 6 and status["embedded_chunks"] == 0
    assert any(p["path"] == "blob.bin" and p["reason"] == "binary" for p in status["problems"])

    code, out, _ = run(capsys, "search", "charge item", "--lang", "rust", "--json")
    hits = json.loads(out)
    assert code == 0 and hits[0]["path"] == "src/payments/mod.rs" and hits[0]["ranks"]["lexical"] == 1

    code, out, _ = run(capsys, "search", "model.rs", "--mode", "path", "--json")
    assert json.loads(out)[0]["path"] == "src/model.rs"

    code, out, _ = run(capsys, "symbols", str(repo / "src/model.rs"), "--json")
    symbols = json.loads(out)["symbols"]
    assert [(s["kind"], s["qualified_name"]) for s in symbols] == [("struct", "Item"), ("method", "Item.new")]


def test_index_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "index", str(tmp_path / "missing"))
    assert code == 2 and "is not a directory" in err
    code, _, err = run(capsys, "search", "x", "--mode", "telepathy")
    assert code == 2 and "unknown search mode" in err
    code, _, err = run(capsys, "search", "x", "--repo", "nope")
    assert code == 2 and "no indexed repository named nope" in err
    (tmp_path / "a.xyz").write_text("?")
    code, _, err = run(capsys, "symbols", str(tmp_path / "a.xyz"))
    assert code == 2 and "no parser for this file type" in err


def test_index_limits_come_from_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = shutil.copytree(FIXTURES / "go", tmp_path / "go")
    (tmp_path / "forgepilot.toml").write_text("[index]\nmax_file_bytes = 200\n", encoding="utf-8")
    code, out, err = run(capsys, "index", str(repo), "--no-embeddings", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["skipped"] == {"too_large": 2, "unsupported": 1}  # cart.go, main.go; go.mod
