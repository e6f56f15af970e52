from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Fixture repositories hold their own test files (test_*.py): they are data for datagen, not tests to collect.
collect_ignore = ["fixtures"]


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own state dir and no stray config from the environment or the working directory."""
    state = tmp_path / "state"
    monkeypatch.setenv("FORGEPILOT_STATE_DIR", str(state))
    monkeypatch.delenv("FORGEPILOT_CONFIG", raising=False)
    monkeypatch.delenv("FORGEPILOT_DEFAULT_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    yield state
