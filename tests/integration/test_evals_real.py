"""The evaluation harness on real parts: the embedded Qwen model through the serving path, the real sandbox."""

from __future__ import annotations

from pathlib import Path

from forgepilot.backends import LlamaCppBackend
from forgepilot.config import load_settings
from forgepilot.evals import EvalRunner, RunConfig, humaneval, open_store
from forgepilot.sandbox import Sandbox


async def test_humaneval_problems_through_the_serving_path(qwen: LlamaCppBackend, tmp_path: Path) -> None:
    store = open_store(tmp_path)
    sandbox = Sandbox(workers=2)
    runner = EvalRunner(load_settings(), store, sandbox=sandbox, preset={qwen.name: qwen})
    try:
        row = await runner.run(humaneval().limited(3), RunConfig(qwen.name))
    finally:
        sandbox.close()
    assert row.status == "complete" and row.summary is not None
    assert row.summary["errors"] == 0 and row.summary["cases"] == 3
    results = store.results(row.id)
    samples = [r["samples"][0] for r in results]
    assert all(s["text"].strip() and s["completion_tokens"] > 0 for s in samples)
    assert all(s["status"] in ("passed", "failed") for s in samples)
    # Greedy decoding is deterministic: HumanEval/2 (`return number % 1.0`) is solved by this model.
    assert results[2]["samples"][0]["passed"], results[2]["samples"][0]
    # The model was stopped at the end of each function body, not at the token limit.
    assert all(s["completion_tokens"] < 256 for s in samples)
