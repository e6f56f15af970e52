"""Gates judge on measurements of this run: latencies measured now, cached generations reused only for the same
weights (a model server by the fingerprint of its answers), specs that check something, promotion under the pinned
spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgepilot.config import load_settings
from forgepilot.evals import EvalRunner, RunConfig, load_suite, open_store
from forgepilot.sandbox import Sandbox
from tests.helpers.openai_server import TinyOpenAIServer
from tests.unit.test_evals_runner import SUITE
from tests.unit.test_gates import coder, gate, write_spec


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(workers=2)


async def test_latency_is_measured_in_this_run_not_replayed_from_the_cache(
    tmp_path: Path, sandbox: Sandbox, isolated_state: Path
) -> None:
    # The first gate run meets a slow deployment of fake:model; its generations are cached with their latencies.
    slow = coder(name="fake:model")
    slow.delay_s = 0.05  # each reply is at least 3 tokens: >= 150 ms per request
    relaxed = "  - {type: latency, suite: arith, mean_max_ms: 600000}\n"
    first = await gate(write_spec(tmp_path, relaxed, "fake:model"), slow, sandbox, isolated_state)
    assert first.status == "PASS" and first.checks[0].evidence["mean_ms"] > 100
    # The same model, now fast: the gate times it again instead of judging the old (slow) latencies.
    fast = coder(name="fake:model")
    strict = "  - {type: latency, suite: arith, mean_max_ms: 100}\n"
    second = await gate(write_spec(tmp_path, strict, "fake:model", name="strict"), fast, sandbox, isolated_state)
    assert second.status == "PASS", second.reasons
    assert second.checks[0].evidence["mean_ms"] < 100
    assert len(fast.prompts) == 4  # every case went to the model


async def test_a_model_server_serving_other_weights_is_not_answered_from_the_cache(
    tmp_path: Path, sandbox: Sandbox, isolated_state: Path
) -> None:
    suite_path = tmp_path / "arith.yaml"
    suite_path.write_text(SUITE, encoding="utf-8")
    suite = load_suite(suite_path)
    store = open_store(isolated_state)
    texts = []
    # One URL, one model name: a redeployment behind them is told apart only by what it answers.
    server = TinyOpenAIServer(lambda prompt: "    return a + b\n")
    config = tmp_path / "forgepilot.toml"
    config.write_text(f'[models."vllm:coder"]\nfamily = "qwen2.5-coder"\nbase_url = "{server.url}"\n', encoding="utf-8")
    with server.running():
        for body in ("    return a + b\n", "    return 0\n"):
            server.answer = lambda prompt, body=body: body
            runner = EvalRunner(load_settings(config), store, sandbox=sandbox)
            try:
                row = await runner.run(suite, RunConfig("vllm:coder"), fresh=True)
            finally:
                await runner.aclose()
            texts.append({r["case_id"]: r["samples"][0]["text"] for r in store.results(row.id)})
            assert row.config["model"]["fingerprint"]
    assert texts[0]["add"] == "    return a + b" and texts[1]["add"] == "    return 0"
