from __future__ import annotations

from pathlib import Path

import pytest

import forgepilot.backends as backends


def test_backends_exports() -> None:
    assert sorted(backends.__all__) == sorted(
        [
            "EMBEDDED_MODELS",
            "PROVIDERS",
            "Backend",
            "CancelToken",
            "ChatMessage",
            "ChatRequest",
            "Completion",
            "CompletionChunk",
            "CompletionRequest",
            "Cost",
            "EmbeddedModel",
            "Endpoint",
            "EndpointPool",
            "EndpointStatus",
            "FakeBackend",
            "FimTemplate",
            "LlamaCppBackend",
            "ModelEntry",
            "ModelStatus",
            "ModelStore",
            "OpenAICompatibleBackend",
            "Price",
            "PriceTable",
            "Priority",
            "ProviderProfile",
            "RepoFile",
            "Segment",
            "Timings",
            "TrainedModel",
            "Usage",
            "builtin_price_table",
            "defang",
            "find_trained",
            "embedded_model",
            "fim_template",
            "known_families",
            "list_models",
            "list_trained",
            "open_backend",
            "prompt_text",
            "provider_profile",
        ]
    )
    for name in backends.__all__:
        assert getattr(backends, name) is not None


def test_importing_the_cli_does_not_load_heavy_modules() -> None:
    import subprocess
    import sys

    code = "import sys, forgepilot.cli; print(','.join(m for m in ('llama_cpp', 'torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_llama_backend_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from forgepilot.backends import LlamaCppBackend, fim_template
    from forgepilot.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an install without [llama] looks like
    backend = LlamaCppBackend("llamacpp:x", path=tmp_path / "x.gguf", template=fim_template("plain"))
    with pytest.raises(MissingExtra) as info:
        _ = backend.host
    assert info.value.one_line().endswith("(pip install 'forgepilot[llama]')")
    assert info.value.exit_code == 3


def test_evals_gates_registry_exports() -> None:
    import forgepilot.evals as evals
    import forgepilot.gates as gates
    import forgepilot.registry as registry

    expected = {
        evals: [
            "HUMANEVAL",
            "Case",
            "CaseFanout",
            "CaseJudge",
            "CaseResult",
            "EvalRunner",
            "EvalStore",
            "GenerationParams",
            "RayFanout",
            "RunConfig",
            "RunRow",
            "Suite",
            "SuiteError",
            "compare_results",
            "edit_similarity",
            "exact_match",
            "humaneval",
            "identifier_match",
            "load_suite",
            "mcnemar",
            "open_store",
            "paired_bootstrap",
            "pass_at_k",
            "summarize",
        ],
        gates: [
            "PERTURBATIONS",
            "CheckResult",
            "Decision",
            "LoadedSpec",
            "Spec",
            "SpecError",
            "Target",
            "latest_decision",
            "load_spec",
            "perturb",
            "pin_spec",
            "promote",
            "run_gate",
        ],
        registry: [
            "ENTITY_TYPES",
            "Deployment",
            "Edge",
            "Entity",
            "EntityType",
            "PinnedSpec",
            "Registry",
            "Rollout",
            "RolloutDecision",
            "RolloutState",
            "content_id",
            "open_registry",
        ],
    }
    for module, names in expected.items():
        assert sorted(module.__all__) == sorted(names)
        for name in names:
            assert getattr(module, name) is not None
