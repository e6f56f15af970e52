"""Fixtures on real parts: the embedded GGUF models (prepared by `make test`) and a real llama.cpp HTTP server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from forgepilot.backends import EMBEDDED_MODELS, LlamaCppBackend, ModelStore, fim_template
from forgepilot.config import LlamaSettings, default_state_dir
from forgepilot.errors import ForgePilotError

# Captured at import, before the per-test isolation points FORGEPILOT_STATE_DIR at a temporary directory.
REAL_MODELS_DIR = Path(os.environ.get("FORGEPILOT_STATE_DIR") or default_state_dir()) / "models"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid:
            item.add_marker(pytest.mark.integration)


def model_path(key: str) -> Path:
    """The verified model file; a missing model fails the test (with the command to fix it) rather than skipping."""
    try:
        return ModelStore(REAL_MODELS_DIR).ensure(EMBEDDED_MODELS[key])
    except ForgePilotError as exc:
        pytest.fail(f"embedded model {key} unavailable: {exc.one_line()}")


@pytest.fixture(scope="session")
def real_models_dir() -> Path:
    return REAL_MODELS_DIR


@pytest.fixture(scope="session")
def qwen_path() -> Path:
    return model_path("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return model_path("gemma-3-270m")


@pytest.fixture(scope="session")
def gemma(gemma_path: Path) -> LlamaCppBackend:
    return LlamaCppBackend(
        "llamacpp:gemma-3-270m", path=gemma_path, template=fim_template("gemma3"), settings=LlamaSettings(n_ctx=1024)
    )


@pytest.fixture(scope="session")
def qwen(qwen_path: Path) -> LlamaCppBackend:
    return LlamaCppBackend(
        "llamacpp:qwen2.5-coder-0.5b",
        path=qwen_path,
        template=fim_template("qwen2.5-coder"),
        settings=LlamaSettings(n_ctx=2048),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """`python -m llama_cpp.server` on a free loopback port."""

    def __init__(self, model: Path, alias: str, log_dir: Path, n_ctx: int = 2048) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = (log_dir / f"server-{self.port}.log").open("w+b")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                str(n_ctx),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read()[-2000:].decode(errors='replace')}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError("llama_cpp.server did not start within 120 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def qwen_server(qwen_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(qwen_path, "qwen", tmp_path_factory.mktemp("qwen-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gemma_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer(gemma_path, "gemma", tmp_path_factory.mktemp("gemma-server"), n_ctx=2048)
    yield server
    server.stop()
