"""`forgepilot serve` in a subprocess on a free loopback port, stopped (SIGTERM, then kill) at the end."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def serve_process(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The process and the URL it printed; fails the test when it does not start within 90 s."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "forgepilot", "serve", "--port", "0", "--no-embeddings", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    url = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        found = re.search(r"serving \S+ on (http://127\.0\.0\.1:\d+)", line)
        if found:
            url = found.group(1)
            break
    try:
        if url is None:
            proc.kill()
            pytest.fail(f"serve did not start: {proc.communicate()[1]}")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
