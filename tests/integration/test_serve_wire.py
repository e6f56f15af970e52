"""The real wire: `forgepilot serve` on a free loopback port, driven by the official openai package."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.helpers.serve import serve_process

FAKE_CONFIG = """
default_model = "fake:coder"

[models."fake:coder"]
family = "qwen2.5-coder"
provider = "fake"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "forgepilot.toml"
    config.write_text(FAKE_CONFIG)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "util.py").write_text("def add(a, b):\n    return a + b\n")
    env = {**os.environ, "FORGEPILOT_CONFIG": str(config), "FORGEPILOT_STATE_DIR": str(tmp_path / "state")}
    with serve_process(env, str(repo)) as (proc, url):
        yield url
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("serve did not stop on SIGTERM")
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says what stopped it.
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        assert proc.returncode in (0, -15) and "Traceback" not in stderr, stderr


def test_openai_sdk_completions_chat_streaming_and_errors(served: str) -> None:
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0)
    assert "fake:coder" in [m.id for m in client.models.list().data]

    done = client.completions.create(
        model="fake:coder", prompt="def add(a, b):\n    return ", suffix="\n", max_tokens=8, temperature=0
    )
    assert done.choices[0].text == "pass\n" and done.usage is not None and done.usage.completion_tokens == 2

    chat = client.chat.completions.create(
        model="fake:coder", messages=[{"role": "user", "content": "say hi"}], max_tokens=8
    )
    assert chat.choices[0].message.content == "pass\n"

    pieces = [
        c.choices[0].text
        for c in client.completions.create(model="fake:coder", prompt="x = ", max_tokens=8, stream=True)
    ]
    assert "".join(pieces) == "pass\n" and len(pieces) >= 2

    deltas = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="fake:coder", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    ]
    assert "".join(deltas) == "pass\n"

    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="nope:none", prompt="x")
    assert missing.value.status_code == 404
    assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "model_not_found"
    assert "fake:coder" in missing.value.body["message"]

    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="fake:coder", prompt="x", n=2)
    assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "n"


def test_assist_endpoint_over_the_socket(served: str) -> None:
    import httpx

    r = httpx.post(
        f"{served}/v1/assist/complete",
        json={
            "text": "from util import add\n\ndef twice(x):\n    \n",
            "path": "main.py",
            "cursor": {"line": 3, "character": 4},
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "in-block" and body["text"] == "pass"
    assert body["why"]["template_id"] == "complete"
    health = httpx.get(f"{served}/healthz").json()
    assert health["repositories"] == ["repo"]
