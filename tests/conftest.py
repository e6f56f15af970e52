from __future__ import annotations

from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A real PostgreSQL server for the session: FORGEPILOT_TEST_DATABASE_URL, or one started here (initdb)."""
    import os
    import shutil
    import tempfile

    from tests.helpers.postgres import pg_bin, start_server

    given = os.environ.get("FORGEPILOT_TEST_DATABASE_URL")
    if given:
        yield given
        return
    if pg_bin("initdb") is None:
        if os.environ.get("FORGEPILOT_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (FORGEPILOT_REQUIRE_POSTGRES=1) but initdb is not installed")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="fp-pg-"))
    server = start_server(base)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Path | str]]:
    """Where a store lives, per backend: ``where("monitor.db")`` is a file under tmp_path for SQLite, and the URL
    of a database of this test's own for PostgreSQL (every store in the test shares it, as a team's would)."""
    if request.param == "sqlite":
        yield lambda name: tmp_path / name
        return
    from tests.helpers.postgres import database

    admin = request.getfixturevalue("postgres_admin_url")
    with database(admin) as url:
        yield lambda name: url
