"""Team scale on real parts: two `forgepilot serve` processes on one real PostgreSQL database share keys, rate
limits, deployments and events; PostgreSQL restarted under load loses no acknowledged event and answers 503 while
it is down."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from forgepilot.monitor import MonitorStore
from forgepilot.registry import Registry
from tests.helpers.postgres import database, pg_bin, start_server
from tests.helpers.serve import serve_process

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

CONFIG = """
default_model = "fake:coder"

[models."fake:coder"]
family = "qwen2.5-coder"
provider = "fake"

[models."fake:tuned"]
family = "qwen2.5-coder"
provider = "fake"
"""
BODY = {"text": "def add(a, b):\n    ", "path": "m.py", "cursor": {"offset": 19}}


def _env(tmp_path: Path, url: str, name: str) -> dict[str, str]:
    config = tmp_path / "forgepilot.toml"
    config.write_text(CONFIG)
    return {
        **os.environ,
        "FORGEPILOT_CONFIG": str(config),
        "FORGEPILOT_STATE_DIR": str(tmp_path / f"state-{name}"),  # nothing shared on disk: only the database
        "FORGEPILOT_DATABASE_URL": url,
        "FORGEPILOT_DEPLOY__POLL_S": "0.2",
        "FORGEPILOT_GATEWAY__RATE_LIMIT_PER_MINUTE": "1000",
    }


@contextmanager
def gateway(env: dict[str, str], *args: str) -> Iterator[str]:
    with serve_process(env, *args) as (_, url):
        yield url


def test_two_gateways_share_keys_limits_deployments_and_events(tmp_path: Path, postgres_admin_url: str) -> None:
    with database(postgres_admin_url) as url:
        env_a, env_b = _env(tmp_path, url, "a"), _env(tmp_path, url, "b")
        made = subprocess.run(
            [sys.executable, "-m", "forgepilot", "keys", "create", "ci", "--rate", "8"],
            env=env_a,
            capture_output=True,
            text=True,
            check=True,
        )
        key = made.stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        with gateway(env_a, "--auth", "on") as a, gateway(env_b, "--auth", "on") as b:
            # A key made through one host's CLI works on both gateways; the limit of 8 a minute holds across both.
            codes = [httpx.post(f"{(a, b)[i % 2]}/v1/assist/complete", json=BODY, headers=headers) for i in range(12)]
            assert [c.status_code for c in codes].count(200) == 8
            assert {c.status_code for c in codes[8:]} == {429}
            served = codes[0].json()
            assert served["model"] == "fake:coder"

        # The limit spent, a key of a higher rate for the rest.
        headers = {"Authorization": f"Bearer {_key(env_a, 'team', 1000)}"}
        with gateway(env_a, "--auth", "on") as a, gateway(env_b, "--auth", "on") as b:
            # A completion served by A, its events reported to B: B finds it (enriched, known), and each lands once.
            first = httpx.post(f"{a}/v1/assist/complete", json=BODY, headers=headers).json()
            events = [
                {"type": "shown", "completion_id": first["id"], "shown_chars": 12},
                {"type": "accepted", "completion_id": first["id"], "accepted_chars": 12},
            ]
            recorded = httpx.post(f"{b}/v1/events", json={"events": events}, headers=headers).json()
            assert recorded["recorded"] == 2 and recorded["unknown_completions"] == 0
            # A promotion written to the shared registry moves both gateways within their poll.
            registry = Registry(url)
            registry.set_deployment("champion", {"model": "fake:tuned"}, None)
            registry.close()
            deadline = time.monotonic() + 10
            models: set[str] = set()
            while time.monotonic() < deadline:
                models = {
                    httpx.post(f"{g}/v1/assist/complete", json=BODY, headers=headers).json()["model"] for g in (a, b)
                }
                if models == {"fake:tuned"}:
                    break
                time.sleep(0.2)
            assert models == {"fake:tuned"}
        store = MonitorStore(url)
        rows = store.acceptance(0, time.time() + 10, by=["model"])
        store.close()
        assert [(r.group["model"], r.shown, r.accepted) for r in rows] == [("fake:coder", 1, 1)]


def _key(env: dict[str, str], name: str, rate: int) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "forgepilot", "keys", "create", name, "--rate", str(rate)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


@pytest.mark.skipif(pg_bin("initdb") is None, reason="needs a PostgreSQL server of its own to restart")
def test_postgres_restarted_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="fp-pg-restart-"))
    server = start_server(base)
    try:
        with gateway(_env(tmp_path, server.url, "a")) as url:
            acknowledged = 0
            statuses: list[int] = []
            client = httpx.Client(timeout=30)

            def send(n: int) -> None:
                nonlocal acknowledged
                for _ in range(n):
                    r = client.post(f"{url}/v1/events", json={"events": [{"type": "shown", "shown_chars": 3}]})
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        acknowledged += 1
                    else:
                        assert r.status_code == 503, r.text
                        error = r.json()["error"]
                        assert error["code"] == "database_unavailable" and "Retry-After" in r.headers

            send(20)
            server.stop()
            send(5)  # down: every one refused with a clear 503, none acknowledged
            assert statuses[-5:] == [503] * 5
            server.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the pool notices the new server on its own
                r = client.post(f"{url}/v1/events", json={"events": [{"type": "shown", "shown_chars": 3}]})
                if r.status_code == 200:
                    acknowledged += 1
                    break
                time.sleep(0.5)
            send(20)
            client.close()
        store = MonitorStore(server.url)
        counted = store.event_counts().get("shown", 0)
        store.close()
        assert acknowledged >= 41 and counted == acknowledged
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
