"""The prompt registry: content-hash versions, chat blocks, metadata, strict variables, namespaced actions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from forgepilot.errors import ConfigError, UserError
from forgepilot.prompts import PromptRegistry, builtin_registry
from forgepilot.prompts.registry import BUILTIN_DIR


def test_every_builtin_template_has_a_content_hash_version() -> None:
    registry = builtin_registry()
    assert set(registry.names()) >= {"complete", "explain", "tests", "review", "commit", "refactor", "document", "ask"}
    for name in registry.names():
        t = registry.get(name)
        assert t.version == hashlib.sha256((BUILTIN_DIR / f"{name}.j2").read_bytes()).hexdigest()[:16]
        assert t.tier in ("large", "fast") and t.description


def test_chat_blocks_render_to_system_and_user() -> None:
    p = builtin_registry().render("commit", {"diff": "-a\n+b"})
    assert p.template_id == "commit" and p.system and p.system.startswith("You write git commit messages")
    assert p.user.startswith("Write the commit message") and "-a\n+b" in p.user
    assert p.record() == {"template_id": "commit", "template_version": builtin_registry().get("commit").version}


def test_an_edit_is_a_new_version(tmp_path: Path) -> None:
    (tmp_path / "greet.j2").write_text("Hello {{ name }}\n")
    before = PromptRegistry([tmp_path]).get("greet").version
    (tmp_path / "greet.j2").write_text("Hello, {{ name }}!\n")
    after = PromptRegistry([tmp_path]).get("greet")
    assert after.version != before and after.variables == frozenset({"name"})
    assert PromptRegistry([tmp_path]).render("greet", {"name": "Ada"}).text == "Hello, Ada!\n"


def test_missing_variable_and_unknown_template_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "greet.j2").write_text("Hello {{ name }}\n")
    registry = PromptRegistry([tmp_path], namespace="actions")
    assert registry.names() == ["actions/greet"]
    with pytest.raises(UserError, match="needs a value"):
        registry.render("actions/greet", {})
    with pytest.raises(UserError, match="no prompt template named 'greet'"):
        registry.get("greet")


def test_broken_template_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("line one\n{% if x %}\nunclosed\n")
    with pytest.raises(ConfigError, match=r"bad.j2:\d+"):
        PromptRegistry([tmp_path])
