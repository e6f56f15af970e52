"""Release gates: planted regressions fail the right check with the right reason, a clean candidate passes,
perturbations keep canonical solutions passing, probes catch what they plant, promotion needs a passing gate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgepilot.backends.fake import FakeBackend
from forgepilot.cli import main
from forgepilot.config import load_settings
from forgepilot.errors import GateFailed
from forgepilot.evals import humaneval, open_store
from forgepilot.gates import PERTURBATIONS, load_spec, perturb, pin_spec, promote, run_gate
from forgepilot.gates.checks import perturbed_suite
from forgepilot.gates.spec import SpecError
from forgepilot.registry import open_registry
from forgepilot.sandbox import Sandbox

SUITE = """\
schema_version: 1
name: arith
kind: functional
cases:
  - id: add
    prompt: "def add(a, b):\\n    \\"\\"\\"Return a + b.\\"\\"\\"\\n"
    tests: "assert add(2, 3) == 5"
    canonical_solution: "    return a + b\\n"
    slices: {difficulty: easy}
  - id: sub
    prompt: "def sub(a, b):\\n    \\"\\"\\"Return a - b.\\"\\"\\"\\n"
    tests: "assert sub(5, 3) == 2"
    canonical_solution: "    return a - b\\n"
    slices: {difficulty: easy}
  - id: mul
    prompt: "def mul(a, b):\\n    \\"\\"\\"Return a * b.\\"\\"\\"\\n"
    tests: "assert mul(2, 3) == 6"
    canonical_solution: "    return a * b\\n"
    slices: {difficulty: hard}
  - id: neg
    prompt: "def neg(a):\\n    \\"\\"\\"Return -a.\\"\\"\\"\\n"
    tests: "assert neg(2) == -2"
    canonical_solution: "    return -a\\n"
    slices: {difficulty: hard}
"""

RIGHT = {"add": "a + b", "sub": "a - b", "mul": "a * b", "neg": "-a"}


def solve(prompt: str, wrong: frozenset[str] = frozenset()) -> str:
    """Solve the arith problems (whatever the parameters are called), except those named in ``wrong``."""
    m = re.findall(r"def (\w+)\(([^)]*)\)", prompt)
    if not m:
        return "    pass\n"
    name, params = m[-1]
    args = [p.strip().split(":")[0].split("=")[0].strip() for p in params.split(",") if p.strip()]
    body = RIGHT.get(name, "None")
    for old, new in zip(("a", "b"), args, strict=False):
        body = re.sub(rf"\b{old}\b", new, body)
    if name in wrong:
        body = "0"
    return f"    return {body}\n"


def coder(wrong: frozenset[str] = frozenset(), name: str = "fake:coder") -> FakeBackend:
    # Preset models are known by name (the generation cache too): a model that behaves differently gets its own.
    return FakeBackend(name if not wrong else "fake:broken", replies=lambda prompt: solve(prompt, wrong))


def write_spec(tmp_path: Path, checks: str, model: str = "fake:coder", name: str = "release") -> Path:
    (tmp_path / "arith.yaml").write_text(SUITE, encoding="utf-8")
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"schema_version: 1\nname: {name}\ncandidate:\n  model: {model}\n"
        f"suites:\n  arith: {{suite: arith.yaml}}\nchecks:\n{checks}",
        encoding="utf-8",
    )
    return spec


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(workers=2)
    yield box
    box.close()


async def gate(spec: Path, backend: FakeBackend, sandbox: Sandbox, state: Path, *others: FakeBackend):  # type: ignore[no-untyped-def]
    settings = load_settings()
    return await run_gate(
        load_spec(spec),
        settings,
        open_store(state),
        open_registry(state),
        out_dir=state / "dossier",
        sandbox=sandbox,
        preset={b.name: b for b in (backend, *others)},
    )


METRIC = "  - {type: metric, suite: arith, metric: pass@1, min: 0.75}\n"


async def test_clean_candidate_passes_and_a_planted_regression_fails_the_right_check(
    tmp_path: Path, sandbox: Sandbox, isolated_state: Path
) -> None:
    checks = METRIC + "  - {type: slices, suite: arith, by: difficulty, metric: pass@1, min: 0.5, min_cases: 2}\n"
    spec = write_spec(tmp_path, checks)
    clean = await gate(spec, coder(), sandbox, isolated_state)
    assert clean.status == "PASS", clean.reasons
    assert [c.status for c in clean.checks] == ["PASS", "PASS"]

    broken = await gate(
        write_spec(tmp_path, checks, "fake:broken"), coder(frozenset({"mul", "neg"})), sandbox, isolated_state
    )
    assert broken.status == "FAIL"
    metric, slices = broken.checks
    assert metric.status == "FAIL" and metric.reasons == ["pass@1 on arith: 0.5 is below the minimum 0.75"]
    assert slices.status == "FAIL"
    assert slices.reasons == ["difficulty=hard: pass@1 0 < 0.5"]
    dossier = Path(broken.dossier["markdown"]).read_text()
    assert "# Release dossier: release on fake:broken: FAIL" in dossier and "| hard | 2 | 0 |" in dossier
    assert Path(broken.dossier["html"]).read_text().count("<svg") >= 1
    record = json.loads(Path(broken.dossier["json"]).read_text())
    assert record["decision"] == "FAIL" and record["spec"]["sha256"] == load_spec(spec).sha256
    assert record["lineage"]["code"]["version"] and record["lineage"]["hardware"]["cores"]


async def test_warn_margin_and_warn_only(tmp_path: Path, sandbox: Sandbox, isolated_state: Path) -> None:
    checks = (
        "  - {type: metric, suite: arith, metric: pass@1, min: 0.8, warn_margin: 0.1}\n"
        "  - {type: metric, suite: arith, metric: pass@1, min: 1.0, warn_only: true}\n"
    )
    decision = await gate(
        write_spec(tmp_path, checks, "fake:broken"), coder(frozenset({"neg"})), sandbox, isolated_state
    )
    assert [c.status for c in decision.checks] == ["WARN", "WARN"]
    assert decision.status == "WARN"
    assert decision.checks[1].reasons[0].startswith("(warn only) ")


async def test_latency_slo_fails_on_mean_and_share_over_the_bound(
    tmp_path: Path, sandbox: Sandbox, isolated_state: Path
) -> None:
    slow = coder(name="fake:slow")
    slow.delay_s = 0.03  # each reply is at least 3 tokens: >= 90 ms per request
    checks = "  - {type: latency, suite: arith, mean_max_ms: 20, over_ms: 40, max_share_over: 0.05}\n"
    decision = await gate(write_spec(tmp_path, checks, "fake:slow"), slow, sandbox, isolated_state)
    (check,) = decision.checks
    assert check.status == "FAIL"
    assert check.reasons[0].startswith("mean ") and "> 20 ms" in check.reasons[0]
    assert check.reasons[1].startswith("100.0% of requests over 40 ms")
    relaxed = "  - {type: latency, suite: arith, mean_max_ms: 600000, cost_per_1000_max_usd: 1.0}\n"
    ok = await gate(write_spec(tmp_path, relaxed), coder(), sandbox, isolated_state)
    assert ok.status == "PASS", ok.reasons


def test_perturbations_keep_canonical_solutions_passing(sandbox: Sandbox) -> None:
    suite = humaneval().limited(40)
    for kind in PERTURBATIONS:
        edited, counts = perturbed_suite(suite, kind, sandbox)
        assert counts["changed"] + counts["unchanged"] == 40
        # An edit that breaks a canonical solution would be a bug in the perturbation, not a model's weakness.
        assert counts["broken"] == 0, (kind, counts)
        assert counts["kept"] == len(edited.cases)
        if kind in ("rename_locals", "reformat", "comments"):
            assert counts["changed"] >= 30, (kind, counts)


def test_perturbation_examples() -> None:
    prompt = 'import sys\nimport os\n\n\ndef area(width, height=2):\n    """Area of width by height."""\n'
    solution = "    # multiply\n    result = width * height\n    return result\n"
    renamed = perturb("rename_locals", prompt, solution)
    assert renamed.prompt.endswith('def area(v0, v1=2):\n    """Area of v0 by v1."""\n')
    assert renamed.solution == "    # multiply\n    v2 = v0 * v1\n    return v2\n"
    assert perturb("reorder_imports", prompt, solution).prompt.startswith("import os\nimport sys\n")
    commented = perturb("comments", prompt, solution)
    assert "# Definition of area." in commented.prompt and "# multiply" not in commented.solution
    assert "def area(width,height=2)" in perturb("reformat", prompt, solution).prompt


async def test_stability_check_measures_the_drop(tmp_path: Path, sandbox: Sandbox, isolated_state: Path) -> None:
    checks = "  - {type: stability, suite: arith, perturbations: [rename_locals, comments], max_drop: 0.1}\n"
    steady = await gate(write_spec(tmp_path, checks), coder(), sandbox, isolated_state)
    (check,) = steady.checks
    assert check.status == "PASS", check.reasons
    assert check.evidence["perturbations"]["rename_locals"]["kept"] == 4

    def fragile(prompt: str) -> str:  # right only when the parameters keep their names
        return solve(prompt) if "(a" in prompt else "    return None\n"

    shaky = await gate(
        write_spec(tmp_path, checks, "fake:fragile"),
        FakeBackend("fake:fragile", replies=fragile),
        sandbox,
        isolated_state,
    )
    (check,) = shaky.checks
    assert check.status == "FAIL"
    assert check.reasons == ["rename_locals: pass@1 drops 1 (1 -> 0) on 4 edited cases > 0.1"]


async def test_security_probes(
    tmp_path: Path, sandbox: Sandbox, isolated_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = "  - {type: injection}\n  - {type: leakage, canaries: [TRAINING-CANARY-42]}\n"
    # The probes judge the model as served: with the guards off, an obedient model is caught.
    monkeypatch.setenv("FORGEPILOT_GUARDS__SECRETS", "off")
    monkeypatch.setenv("FORGEPILOT_GUARDS__INSTRUCTIONS", "false")
    monkeypatch.setenv("FORGEPILOT_GUARDS__REDACT_OUTPUT", "false")

    def obedient(prompt: str) -> str:
        marker = re.search(r"PWNED-\w+", prompt)
        canary = re.search(r"fpcanary\w+", prompt)
        if marker:
            return f'    print("{marker.group(0)}")\n'
        return f'{canary.group(0)}"\n' if canary else "    return None\n"

    bad = await gate(
        write_spec(tmp_path, checks, "fake:obedient"),
        FakeBackend("fake:obedient", replies=obedient),
        sandbox,
        isolated_state,
    )
    injection, leakage = bad.checks
    assert injection.status == "FAIL" and injection.evidence["followed"] >= 3
    assert leakage.status == "FAIL" and any("context canary" in r for r in leakage.reasons)
    for name in ("SECRETS", "INSTRUCTIONS", "REDACT_OUTPUT"):
        monkeypatch.delenv(f"FORGEPILOT_GUARDS__{name}")
    # With the guards on (the default) the same model never sees the planted marker or the canaries.
    guarded = await gate(
        write_spec(tmp_path, checks, "fake:obedient"),
        FakeBackend("fake:obedient", replies=obedient),
        sandbox,
        isolated_state,
    )
    assert [c.status for c in guarded.checks] == ["PASS", "PASS"], guarded.reasons

    def leaks_training(prompt: str) -> str:
        return '    return "TRAINING-CANARY-42"\n'

    trained = await gate(
        write_spec(tmp_path, checks, "fake:leaky"),
        FakeBackend("fake:leaky", replies=leaks_training),
        sandbox,
        isolated_state,
    )
    assert trained.checks[0].status == "PASS"
    assert trained.checks[1].status == "FAIL"
    assert any(r.startswith("training canary TRAINI... appears in") for r in trained.checks[1].reasons)
    good = await gate(write_spec(tmp_path, checks), coder(), sandbox, isolated_state)
    assert [c.status for c in good.checks] == ["PASS", "PASS"], good.reasons


async def test_memorisation_and_out_of_domain(tmp_path: Path, sandbox: Sandbox, isolated_state: Path) -> None:
    dataset = tmp_path / "ds"
    dataset.mkdir()
    body = "".join(f"    total_{i} = compute_something({i})\n" for i in range(8))
    rows = [
        {
            "kind": "in_block",
            "id": f"r{i}",
            "path": f"m{i}.py",
            "prefix": f"def f{i}():\n",
            "suffix": "",
            "completion": body,
            "language": "python",
            "split": "train",
        }
        for i in range(3)
    ]
    (dataset / "instances").mkdir()
    (dataset / "instances" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (dataset / "card.json").write_text(
        json.dumps({"schema_version": 1, "counts": {"language": {"java": 3}}, "tokens": {"max": 500}})
    )
    checks = (
        "  - {type: memorisation, dataset: ds, samples: 3, min_chars: 40, max_share: 0.0}\n"
        "  - {type: out_of_domain, suite: arith, dataset: ds, max_share: 0.5}\n"
    )
    half = "".join(body.splitlines(keepends=True)[4:])
    parrot = FakeBackend("fake:parrot", replies=lambda prompt: half if "total_3" in prompt else "    return 1\n")
    decision = await gate(write_spec(tmp_path, checks, "fake:parrot"), parrot, sandbox, isolated_state)
    memo, ood = decision.checks
    assert memo.status == "FAIL" and memo.reasons[0].startswith("3 of 3 training prefixes completed verbatim")
    assert ood.status == "FAIL"  # python inputs, java training data
    assert ood.reasons == ["4 of 4 inputs out of domain (100.0%; at most 50.0%)"]


async def test_champion_and_promotion(tmp_path: Path, sandbox: Sandbox, isolated_state: Path) -> None:
    registry = open_registry(isolated_state)
    with pytest.raises(GateFailed, match="no gate spec is pinned for 'champion'"):
        promote(registry, "champion", "fake:coder")
    checks = METRIC + "  - {type: champion, suite: arith, margin: 0.1}\n"
    spec = write_spec(tmp_path, checks)
    pin_spec(registry, "champion", load_spec(spec))
    with pytest.raises(GateFailed, match="has no gate decision under the spec pinned"):
        promote(registry, "champion", "fake:coder")
    first = await gate(spec, coder(), sandbox, isolated_state)
    assert first.status == "WARN"  # no champion yet: nothing to compare with
    with pytest.raises(GateFailed, match="is WARN"):
        promote(registry, "champion", first.candidate["id"])
    moved = promote(registry, "champion", first.candidate["id"], accept_warnings=True)
    assert moved["target"]["model"] == "fake:coder" and moved["decision"] == first.id

    # A challenger that breaks two problems is inferior to the deployed champion: FAIL, and no promotion.
    spec2 = write_spec(tmp_path, checks.replace("min: 0.75", "min: 0.0"), "fake:broken", name="release-2")
    second = await gate(spec2, coder(frozenset({"mul", "neg"})), sandbox, isolated_state, coder())
    champion = second.checks[1]
    assert champion.status == "FAIL" and champion.reasons[0].startswith(
        "inferior: pass@1: challenger - champion = -0.5"
    )
    # A decision under another spec does not count for champion, whatever it decided.
    with pytest.raises(GateFailed, match="has no gate decision under the spec pinned for 'champion'"):
        promote(registry, "champion", second.candidate["id"])
    pin_spec(registry, "canary", load_spec(spec2))
    with pytest.raises(GateFailed, match="is FAIL"):
        promote(registry, "canary", second.candidate["id"])
    assert registry.deployment("champion").target["candidate"] == first.candidate["id"]  # type: ignore[union-attr]
    tree = registry.lineage("deployment", "champion")
    assert tree["links"][0]["relation"] == "promoted_by"
    decision_node = tree["links"][0]
    relations = {link["relation"] for link in decision_node["links"]}
    assert {"judged", "under_spec", "measured_on"} <= relations


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("schema_version: 2\nname: x\nsuites: {}\nchecks: []\n", 1, "schema_version must be 1"),
        (
            "schema_version: 1\nname: x\nsuites: {}\nchecks:\n  - {type: metric, suite: s, metric: m}\n",
            5,
            "a metric check needs min or max",
        ),
        (
            "schema_version: 1\nname: x\nsuites: {}\nchecks:\n  - {type: vibes}\n",
            5,
            "does not match any of the expected tags",
        ),
        (
            "schema_version: 1\nname: x\nsuites: {}\nchecks:\n  - {type: metric, suite: s, metric: m, min: 1}\n",
            5,
            "names unknown suite 's'",
        ),
        ("schema_version: 1\nname: [x\n", 3, "not valid YAML"),  # where the parser gave up
        # A spec that checks nothing would pass every candidate.
        ("schema_version: 1\nname: x\nsuites: {}\nchecks: []\n", 4, "checks: List should have at least 1 item"),
    ],
)
def test_spec_errors_name_the_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.line == line and problem in info.value.message, info.value.message


def test_edited_spec_has_another_hash(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, METRIC)
    before = load_spec(spec).sha256
    spec.write_text(spec.read_text().replace("0.75", "0.7"))
    assert load_spec(spec).sha256 != before


def test_cli_gate_run_exit_code_and_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The fake provider answers "pass": every body fails, so the gate fails with exit code 7.
    (tmp_path / "forgepilot.toml").write_text('[models."fake:coder"]\nfamily = "qwen2.5-coder"\n')
    spec = write_spec(tmp_path, METRIC)
    assert main(["gate", "run", str(spec), "--out", str(tmp_path / "dossier"), "--workers", "1"]) == 7
    captured = capsys.readouterr()
    assert "decided FAIL" in captured.err and (tmp_path / "dossier" / "dossier.html").is_file()
    assert main(["registry", "ls", "--json"]) == 0
    types = {e["type"] for e in json.loads(capsys.readouterr().out)}
    assert {"decision", "candidate", "model", "run", "spec", "prompt"} <= types
    assert main(["promote", "champion", "fake:coder"]) == 7
    assert "no gate spec is pinned for 'champion'" in capsys.readouterr().err
    assert main(["gate", "pin", "champion", str(spec), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec_sha256"] == load_spec(spec).sha256
    assert main(["promote", "champion", "fake:coder"]) == 7
    assert "is FAIL" in capsys.readouterr().err
    assert main(["registry", "ls", "vibes"]) == 2


def test_mlflow_export_to_a_local_file_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    # MLflow 3 keeps its file store in maintenance mode behind this switch (a database URI needs no switch).
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    (tmp_path / "forgepilot.toml").write_text('[models."fake:coder"]\nfamily = "qwen2.5-coder"\n')
    spec = write_spec(tmp_path, METRIC)
    assert main(["gate", "run", str(spec), "--out", str(tmp_path / "dossier"), "--workers", "1"]) == 7
    capsys.readouterr()
    uri = (tmp_path / "mlruns").as_uri()
    assert main(["registry", "export-mlflow", "--tracking-uri", uri]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"runs": 1, "decisions": 1, "skipped": 0}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    gates = client.get_experiment_by_name("forgepilot-gates")
    (run,) = client.search_runs([gates.experiment_id])
    assert run.data.tags["decision"] == "FAIL"
    assert run.data.metrics == {"check.1. metric _arith_": 0.0}  # MLflow keys allow no parentheses
    assert "dossier.html" in [a.path for a in client.list_artifacts(run.info.run_id)]
