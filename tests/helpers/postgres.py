"""A real, throwaway PostgreSQL server for the tests: ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
loopback port, one database per test (created from the server's template, dropped after).

``FORGEPILOT_TEST_DATABASE_URL`` names a server to use instead (CI starts one with ``.ci/run``). Without either,
the PostgreSQL tests skip, unless ``FORGEPILOT_REQUIRE_POSTGRES=1`` says they must run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in PG_BIN_DIRS:
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    user: str
    run_as: list[str]
    #: Off for tests (nothing to keep); on for benchmarks, where a commit must reach the disk as SQLite's does.
    fsync: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl is not None
        subprocess.run(
            [*self.run_as, pg_ctl, "-D", str(self.data_dir), "-w", "-t", "60", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        log = self.data_dir.parent / "server.log"
        fsync = "on" if self.fsync else "off"
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync={fsync}"
        self.ctl("-l", str(log), "-o", options, "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


def start_server(base: Path, *, fsync: bool = False) -> PostgresServer:
    """A new cluster under ``base`` (C collation, trust auth on loopback), started."""
    initdb = pg_bin("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    # PostgreSQL refuses to run as root: as root, the cluster belongs to the 'postgres' user.
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    data = base / "data"
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "forgepilot", "--auth=trust", "--locale=C", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    server = PostgresServer(data, free_port(), "forgepilot", run_as, fsync)
    server.start()
    return server


@contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A new empty database on the server at ``admin_url``, dropped at the end; yields its URL."""
    import psycopg

    name = "fp_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    """``python tests/helpers/postgres.py start DIR`` prints the URL; ``stop DIR`` stops it (for .ci/run)."""
    import sys

    command, where = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        where.mkdir(parents=True, exist_ok=True)
        server = start_server(Path(tempfile.mkdtemp(dir=where)))
        (where / "server").write_text(f"{server.data_dir}\n{server.port}\n", encoding="utf-8")
        print(server.url)
    else:
        data_dir, port = (where / "server").read_text(encoding="utf-8").split()
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        PostgresServer(Path(data_dir), int(port), "forgepilot", run_as).stop()


if __name__ == "__main__":
    main()
