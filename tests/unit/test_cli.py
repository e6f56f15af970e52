"""The CLI in-process through ``main``: JSON output, one-line errors and documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgepilot.cli import main
from forgepilot.cli.complete import cursor_offset
from forgepilot.errors import UserError


@pytest.fixture
def fake_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "forgepilot.toml"  # picked up from the working directory (conftest chdirs to tmp_path)
    cfg.write_text('default_model = "fake:coder"\n[models."fake:coder"]\nfamily = "qwen2.5-coder"\n', encoding="utf-8")
    return cfg


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_complete_file_at_cursor_json(fake_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.py"
    src.write_text("def add(a, b):\n    \n\nprint(add(1, 2))\n", encoding="utf-8")
    code, out, err = run(capsys, "complete", str(src), "--at", "2:5", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["model"] == "fake:coder" and data["text"] == "pass\n"
    assert data["usage"]["completion_tokens"] == 2 and data["cost"]["usd"] == 0.0


def test_complete_streams_plain_text(fake_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.py"
    src.write_text("x = 1\n", encoding="utf-8")
    code, out, _ = run(capsys, "complete", str(src))
    assert (code, out) == (0, "pass\n\n")


@pytest.mark.parametrize(
    ("content", "args", "fragment"),
    [
        (b"\x00\x01binary", [], "looks binary"),
        (b"caf\xe9 = 1\n", [], "is not UTF-8 text"),
        (b"x = 1\n", ["--at", "9:1"], "line 9 is outside the text"),
        (b"x = 1\n", ["--at", "1:99"], "column 99 is outside line 1"),
        (b"x = 1\n", ["--at", "one"], "is not LINE:COL"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    fake_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    args: list[str],
    fragment: str,
) -> None:
    src = tmp_path / "in.py"
    src.write_bytes(content)
    code, out, err = run(capsys, "complete", str(src), *args)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1


def test_missing_file(capsys: pytest.CaptureFixture[str], fake_config: Path) -> None:
    code, _, err = run(capsys, "complete", "nope.py")
    assert code == 2 and "cannot read nope.py" in err


def test_unknown_model_is_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x\n", encoding="utf-8")
    code, _, err = run(capsys, "complete", "a.py", "--model", "vllm:nothing")
    assert code == 3
    assert "unknown model 'vllm:nothing'" in err and '[models."vllm:nothing"]' in err


def test_unknown_family_is_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "forgepilot.toml").write_text('[models."vllm:x"]\nfamily = "mystery"\n', encoding="utf-8")
    (tmp_path / "a.py").write_text("x\n", encoding="utf-8")
    code, _, err = run(capsys, "complete", "a.py", "--model", "vllm:x")
    assert code == 3 and "unknown model family 'mystery'" in err


def test_dead_backend_is_exit_5(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "forgepilot.toml").write_text(
        "[http]\nmax_retries = 0\nconnect_timeout_s = 2\n"
        '[models."vllm:x"]\nfamily = "qwen2.5-coder"\nbase_url = "http://127.0.0.1:9/v1"\n',
        encoding="utf-8",
    )
    (tmp_path / "a.py").write_text("x\n", encoding="utf-8")
    code, _, err = run(capsys, "complete", "a.py", "--model", "vllm:x")
    assert code == 5 and "cannot connect to vllm:x at http://127.0.0.1:9/v1" in err


def test_chat_one_shot_json(fake_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "chat", "hello", "--system", "be brief", "--json")
    assert code == 0 and json.loads(out)["text"] == "pass\n"


def test_models_list_json(capsys: pytest.CaptureFixture[str], fake_config: Path) -> None:
    code, out, _ = run(capsys, "models", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["llamacpp:qwen2.5-coder-0.5b"]["family"] == "qwen2.5-coder"
    assert rows["llamacpp:qwen2.5-coder-0.5b"]["state"] in {"ready to prepare", "parts missing"}
    assert rows["fake:coder"]["default"] is True and rows["fake:coder"]["source"] == "config"


def test_models_verify_unprepared_is_exit_4(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "models", "verify", "gemma-3-270m")
    assert code == 4 and "forgepilot models prepare gemma-3-270m" in err


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "complete", "--max-tokens", "0")
    assert code == 2


def test_doctor_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--json")
    data = json.loads(out)
    names = [c["name"] for c in data["checks"]]
    assert {"python", "cpu", "llama.cpp", "state dir", "model qwen2.5-coder-0.5b"} <= set(names)
    assert code in (0, 1)  # 1 only when a check fails (e.g. models not prepared in this isolated state dir)
    assert (code == 1) == any(c["status"] == "fail" for c in data["checks"])


def test_cursor_offset_counts_characters_not_bytes() -> None:
    text = "é = 1\nπ = 2\n"
    assert text[cursor_offset(text, "2:2") :] == " = 2\n"
    assert cursor_offset(text, None) == len(text)
    with pytest.raises(UserError):
        cursor_offset(text, "0:1")


def test_keys_create_list_revoke(capsys: pytest.CaptureFixture[str]) -> None:
    code, key, _ = run(capsys, "keys", "create", "laptop", "--rate", "30")
    assert code == 0 and key.strip().startswith("fp-")
    code, out, _ = run(capsys, "keys", "list", "--json")
    listed = json.loads(out)
    assert [(k["name"], k["rate_per_minute"], k["revoked_at"]) for k in listed] == [("laptop", 30, None)]
    assert key.strip() not in out  # never shown again
    assert run(capsys, "keys", "revoke", "laptop")[0] == 0
    code, _, err = run(capsys, "keys", "revoke", "laptop")
    assert code == 2 and "no active API key named 'laptop'" in err


def test_suggest_uses_the_serving_path(fake_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "a.py"
    src.write_text("def add(a, b):\n    \n\nprint(add(1, 2))\n", encoding="utf-8")
    code, out, err = run(capsys, "suggest", str(src), "--at", "2:5", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["text"] == "pass" and data["why"]["mode"] == "in-block" and data["why"]["template_id"] == "complete"
    assert run(capsys, "suggest", str(src), "--mode", "sideways")[0] == 2


def test_task_commit_from_stdin_and_missing_input(
    fake_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"--- a/x\n+++ b/x\n-a\n+b\n")))
    code, out, _ = run(capsys, "task", "commit", "-", "--json")
    assert code == 0 and json.loads(out)["template"]["template_id"] == "commit"
    code, _, err = run(capsys, "task", "explain")
    assert code == 2 and "needs a non-empty 'code'" in err
