"""Runs through the serving path with a scripted model: functional, completion and prompt suites; the generation
cache; errors recorded per case; interrupted runs resumed to the same result; reports and the CLI."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from forgepilot.backends.fake import FakeBackend
from forgepilot.cli import main
from forgepilot.config import load_settings
from forgepilot.errors import BackendUnavailable
from forgepilot.evals import EvalRunner, GenerationParams, RunConfig, load_suite, open_store
from forgepilot.evals.report import write_run_report
from forgepilot.evals.store import EvalStore
from forgepilot.sandbox import Sandbox

SUITE = """\
schema_version: 1
name: arith
kind: functional
cases:
  - id: add
    prompt: |
      def add(a, b):
          \"\"\"Return a + b.\"\"\"
    tests: |
      assert add(2, 3) == 5
  - id: sub
    prompt: |
      def sub(a, b):
          \"\"\"Return a - b.\"\"\"
    tests: |
      assert sub(5, 3) == 2
  - id: mul
    prompt: |
      def mul(a, b):
          \"\"\"Return a * b.\"\"\"
    tests: |
      assert mul(2, 3) == 6
  - id: neg
    prompt: |
      def neg(a):
          \"\"\"Return -a.\"\"\"
    tests: |
      assert neg(2) == -2
"""

BODIES = {
    "add": "    return a + b\n",
    "sub": "    return a + b\n",
    "mul": "    return a * b\n",
    "neg": "    return -a\n",
}


def body_for(prompt: str) -> str:
    # The last function the prompt defines is the one at the cursor (FIM prompts end with the suffix markers).
    name = re.findall(r"def (\w+)\(", prompt)[-1]
    return BODIES[name]


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(workers=2)


def suite_file(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "arith.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def runner(store: EvalStore, backend: FakeBackend, sandbox: Sandbox, **kw: object) -> EvalRunner:
    return EvalRunner(load_settings(), store, sandbox=sandbox, preset={backend.name: backend}, **kw)  # type: ignore[arg-type]


async def test_functional_run_executes_samples_in_the_sandbox(tmp_path: Path, sandbox: Sandbox) -> None:
    store = open_store(tmp_path / "state")
    backend = FakeBackend("fake:coder", replies=body_for)
    suite = load_suite(suite_file(tmp_path))
    row = await runner(store, backend, sandbox).run(suite, RunConfig("fake:coder"))
    assert row.status == "complete" and row.cases_done == 4
    assert row.summary is not None
    assert row.summary["metrics"]["pass@1"] == pytest.approx(0.75)  # sub's body is wrong
    results = {r["case_id"]: r for r in store.results(row.id)}
    assert results["sub"]["samples"][0]["status"] == "failed"
    assert "AssertionError" in results["sub"]["samples"][0]["stderr_tail"]
    assert results["add"]["samples"][0]["text"] == "    return a + b"  # post-processed: the block ends there
    # The serving path rendered the prompt: nothing follows the cursor, so left to right, without FIM tokens.
    assert backend.prompts[0] == 'def add(a, b):\n    """Return a + b."""\n'

    lat = row.summary["latency"]
    assert lat["requests"] == 4 and lat["cached"] == 0 and lat["latency_s"]["p50"] > 0
    assert lat["cost_usd"]["per_1000_requests"] is not None
    assert row.config["templates"]["complete"]


async def test_generations_are_cached_across_runs(tmp_path: Path, sandbox: Sandbox) -> None:
    store = open_store(tmp_path / "state")
    backend = FakeBackend("fake:coder", replies=body_for)
    suite = load_suite(suite_file(tmp_path))
    first = await runner(store, backend, sandbox).run(suite, RunConfig("fake:coder"))
    second = await runner(store, backend, sandbox).run(suite, RunConfig("fake:coder"), fresh=True)
    assert first.id != second.id and first.identity == second.identity
    assert len(backend.prompts) == 4  # the second run made no model call
    assert second.summary is not None and first.summary is not None
    assert second.summary["latency"]["cached"] == 4
    assert second.summary["metrics"] == first.summary["metrics"]
    # Another generation parameter is another identity and new model calls.
    other = await runner(store, backend, sandbox).run(suite, RunConfig("fake:coder", GenerationParams(max_tokens=99)))
    assert other.identity != first.identity and len(backend.prompts) == 8


async def test_model_error_on_one_case_is_recorded_and_the_run_goes_on(tmp_path: Path, sandbox: Sandbox) -> None:
    def flaky(prompt: str) -> str:
        if "def mul" in prompt:
            raise BackendUnavailable("connection refused", backend="fake:coder", retryable=True)
        return body_for(prompt)

    store = open_store(tmp_path / "state")
    row = await runner(store, FakeBackend("fake:coder", replies=flaky), sandbox).run(
        load_suite(suite_file(tmp_path)), RunConfig("fake:coder")
    )
    assert row.status == "complete" and row.summary is not None
    assert row.summary["errors"] == 1
    assert row.summary["error_examples"][0]["case_id"] == "mul"
    assert "connection refused" in row.summary["error_examples"][0]["error"]
    assert row.summary["metrics"]["pass@1"] == pytest.approx(0.5)  # the errored case counts as failed


async def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path: Path, sandbox: Sandbox) -> None:
    suite = load_suite(suite_file(tmp_path))
    clean_store = open_store(tmp_path / "clean")
    clean = await runner(clean_store, FakeBackend("fake:coder", replies=body_for), sandbox).run(
        suite, RunConfig("fake:coder")
    )

    store = open_store(tmp_path / "state")
    task: asyncio.Task[object] | None = None

    def progress(done: int, total: int) -> None:
        if done == 2 and task is not None:
            task.cancel()  # what Ctrl-C does to `asyncio.run`: the running task is cancelled

    interrupted = runner(store, FakeBackend("fake:coder", replies=body_for, delay_s=0.01), sandbox, progress=progress)
    task = asyncio.ensure_future(interrupted.run(suite, RunConfig("fake:coder")))
    with pytest.raises(asyncio.CancelledError):
        await task
    (stopped,) = store.runs()
    assert stopped.status == "interrupted" and stopped.cases_done == 2
    backend = FakeBackend("fake:coder", replies=body_for)
    resumed = await runner(store, backend, sandbox).run(suite, RunConfig("fake:coder"))
    assert resumed.id == stopped.id and resumed.status == "complete"
    assert len(backend.prompts) == 2  # only the two missing cases were generated
    assert resumed.summary is not None and clean.summary is not None
    assert resumed.summary["metrics"] == clean.summary["metrics"]
    strip = [{k: v for k, v in r.items() if k != "samples"} for r in store.results(resumed.id)]
    assert strip == [{k: v for k, v in r.items() if k != "samples"} for r in clean_store.results(clean.id)]


async def test_n_samples_and_unbiased_pass_at_k(tmp_path: Path, sandbox: Sandbox) -> None:
    replies = iter(["    return a - b\n", "    return a + b\n", "    return 0\n"] * 2)

    def sampled(prompt: str) -> str:
        return next(replies)

    text = SUITE.split("  - id: sub")[0]  # only `add`
    store = open_store(tmp_path / "state")
    row = await runner(store, FakeBackend("fake:coder", replies=sampled), sandbox).run(
        load_suite(suite_file(tmp_path, text)),
        RunConfig("fake:coder", GenerationParams(n=3, temperature=0.8), ks=(1, 2)),
    )
    assert row.summary is not None
    assert row.summary["metrics"]["pass@1"] == pytest.approx(1 / 3)
    assert row.summary["metrics"]["pass@2"] == pytest.approx(2 / 3)  # 1 - C(2,2)/C(3,2)
    seeds = [s["passed"] for s in store.results(row.id)[0]["samples"]]
    assert seeds == [False, True, False]


async def test_completion_suite_scores_holes(tmp_path: Path) -> None:
    rows = [
        {"suite": {"schema_version": 1, "name": "holes", "kind": "completion"}},
        {"id": "h1", "path": "m.py", "prefix": "def total(xs):\n    return ", "suffix": "\n", "target": "sum(xs)"},
        {"id": "h2", "path": "m.py", "prefix": "def first(xs):\n    return ", "suffix": "\n", "target": "xs[0]"},
    ]
    path = tmp_path / "holes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    backend = FakeBackend("fake:coder", replies=lambda p: "sum(xs)" if "total" in p else "xs[-1]")
    store = open_store(tmp_path / "state")
    row = await EvalRunner(load_settings(), store, preset={backend.name: backend}).run(
        load_suite(path), RunConfig("fake:coder")
    )
    assert row.summary is not None
    m = row.summary["metrics"]
    assert m["em"] == pytest.approx(0.5)
    assert m["es"] == pytest.approx((1.0 + 4 / 6) / 2)  # "xs[-1]" vs "xs[0]": 2 edits over 6 characters
    assert row.summary["slices"]["language"]["python"]["cases"] == 2


async def test_prompt_suite_accuracy_self_consistency_and_validity(tmp_path: Path) -> None:
    (tmp_path / "classify.j2").write_text(
        "{% block user %}{% for s in shots %}{{ s.input.text }} => {{ s.output }}\n{% endfor %}"
        "{{ text }} =>{% endblock %}",
        encoding="utf-8",
    )
    (tmp_path / "suite.yaml").write_text(
        """\
schema_version: 1
name: sentiment
kind: prompt
template: classify.j2
answer: {type: label, labels: [good, bad], pattern: "(?i)answer:\\\\s*(\\\\w+)"}
shots:
  - {input: {text: "great"}, output: good}
cases:
  - {id: h1, input: {text: "awful"}, expected: bad}
  - {id: h2, input: {text: "lovely"}, expected: good}
  - {id: h3, input: {text: "meh"}, expected: bad}
""",
        encoding="utf-8",
    )
    answers = {
        "great": ["Answer: good"] * 3,
        "awful": ["Answer: bad"] * 3,
        "lovely": ["Answer: bad", "Answer: good", "Answer: good"],
        "meh": ["no idea"] * 3,
    }
    counters: dict[str, int] = {}

    def reply(prompt: str) -> str:
        text = prompt.rsplit("\n", 1)[-1].split(" =>")[0]
        i = counters.get(text, 0)
        counters[text] = i + 1
        return answers[text][i % 3]

    backend = FakeBackend("fake:chat", replies=reply)
    store = open_store(tmp_path / "state")
    row = await EvalRunner(load_settings(), store, preset={backend.name: backend}).run(
        load_suite(tmp_path / "suite.yaml"), RunConfig("fake:chat", GenerationParams(n=3, temperature=0.7))
    )
    assert row.summary is not None
    m = row.summary["metrics"]
    assert m["accuracy"] == pytest.approx(2 / 3)  # majority of 3 samples: h1 right, h2 right, h3 unanswered
    assert m["first_sample_accuracy"] == pytest.approx(1 / 3)
    assert m["valid"] == pytest.approx(2 / 3)
    assert m["shots"]["accuracy"] == 1.0
    assert "great => good" in backend.prompts[0]


async def test_reports_are_written(tmp_path: Path, sandbox: Sandbox) -> None:
    store = open_store(tmp_path / "state")
    row = await runner(store, FakeBackend("fake:coder", replies=body_for), sandbox).run(
        load_suite(suite_file(tmp_path)), RunConfig("fake:coder")
    )
    paths = write_run_report(row, store.results(row.id), tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "| pass@1 | 0.75 |" in md and "## Latency (ms) and cost" in md and "| sub | ok | 0 |" in md
    html = paths["html"].read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    assert json.loads(paths["json"].read_text())["run"]["id"] == row.id


def test_cli_run_list_show_compare_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = suite_file(tmp_path)
    (tmp_path / "forgepilot.toml").write_text('[models."fake:coder"]\nfamily = "qwen2.5-coder"\n', encoding="utf-8")
    assert main(["eval", "run", str(suite), "--model", "fake:coder", "--json", "--workers", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    # The fake provider answers "pass": every body fails its tests, and the run says so.
    assert first["status"] == "complete" and first["summary"]["metrics"]["pass@1"] == 0.0
    assert main(["eval", "run", str(suite), "--model", "fake:coder", "--limit", "2", "--label", "two"]) == 0
    listed = capsys.readouterr().out
    assert "two" in listed
    assert main(["eval", "list", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 2
    assert main(["eval", "show", first["id"][:18]]) == 0
    assert "pass@1" in capsys.readouterr().out
    assert main(["eval", "compare", runs[1]["id"], runs[0]["id"], "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["paired_cases"] == 2 and cmp["mcnemar"]["p_value"] == 1.0
    assert main(["eval", "export", first["id"], "-o", str(tmp_path / "run.json")]) == 0
    assert len(json.loads((tmp_path / "run.json").read_text())["results"]) == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nname: x\nkind: functional\ncases: 3\n", encoding="utf-8")
    assert main(["eval", "run", str(bad), "--model", "fake:coder"]) == 2
    assert f"{bad}:" in capsys.readouterr().err
    assert main(["eval", "show", "nope"]) == 2


def test_cli_ray_without_a_cluster_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray")
    suite = suite_file(tmp_path)
    (tmp_path / "forgepilot.toml").write_text('[models."fake:coder"]\nfamily = "qwen2.5-coder"\n', encoding="utf-8")
    from tests.helpers.postgres import free_port

    assert main(["eval", "run", str(suite), "--model", "fake:coder", "--ray", f"127.0.0.1:{free_port()}"]) == 2
    assert "no Ray cluster at 127.0.0.1" in capsys.readouterr().err
    assert main(["eval", "run", str(suite), "--model", "fake:coder", "--ray", "nowhere"]) == 2
    assert "bad Ray address 'nowhere'" in capsys.readouterr().err


def test_concurrent_cases_keep_suite_order(tmp_path: Path, sandbox: Sandbox) -> None:
    store = open_store(tmp_path / "state")
    backend = FakeBackend("fake:coder", replies=body_for, delay_s=0.002)
    row = asyncio.run(
        runner(store, backend, sandbox, concurrency=4).run(load_suite(suite_file(tmp_path)), RunConfig("fake:coder"))
    )
    assert [r["case_id"] for r in store.results(row.id)] == ["add", "sub", "mul", "neg"]


def test_cli_context_ablation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"suite": {"schema_version": 1, "name": "holes", "kind": "completion"}},
        {"id": "h1", "path": "m.py", "prefix": "def total(xs):\n    return ", "suffix": "\n", "target": "sum(xs)"},
    ]
    path = tmp_path / "holes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (tmp_path / "forgepilot.toml").write_text('[models."fake:coder"]\nfamily = "qwen2.5-coder"\n', encoding="utf-8")
    assert main(["eval", "run", str(path), "--model", "fake:coder", "--ablate", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in runs] == [
        None,
        "ablation: -related",
        "ablation: -imports",
        "ablation: -similar",
        "ablation: -retrieved",
        "ablation: in-file only",
    ]
    assert [r["config"]["sources"] for r in runs] == [
        ["related", "imports", "similar", "retrieved"],
        ["imports", "similar", "retrieved"],
        ["related", "similar", "retrieved"],
        ["related", "imports", "retrieved"],
        ["related", "imports", "similar"],
        [],
    ]
    # The text report says what each source is worth: the change without it, and the holes it won or lost.
    assert main(["eval", "run", str(path), "--model", "fake:coder", "--ablate"]) == 0
    assert "ablation: -imports" in (err := capsys.readouterr().err) and "holes the source(s) won 0, lost 0" in err
    assert main(["eval", "run", "humaneval", "--model", "fake:coder", "--ablate"]) == 2
    assert "needs a completion suite" in capsys.readouterr().err


async def test_runs_share_the_callers_workspace(tmp_path: Path) -> None:
    from forgepilot.index.indexer import Indexer, Workspace

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def double(x):\n    return 2 * x\n", encoding="utf-8")
    workspace = Workspace(tmp_path / "index")
    Indexer(workspace, embeddings=False).index(repo)
    rows = [
        {"suite": {"schema_version": 1, "name": "holes", "kind": "completion"}},
        {
            "id": "h1",
            "path": "main.py",
            "prefix": "from calc import double\n\nx = ",
            "suffix": "\n",
            "target": "double(2)",
            "repository": "repo",
        },
    ]
    path = tmp_path / "holes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    backend = FakeBackend("fake:coder", replies=["double(2)"])
    store = open_store(tmp_path / "state")
    for sources in (("related", "similar", "retrieved"), ()):
        runner = EvalRunner(load_settings(), store, workspace=workspace, preset={backend.name: backend})
        row = await runner.run(load_suite(path), RunConfig("fake:coder", sources=sources))
        assert row.status == "complete" and row.summary is not None and row.summary["errors"] == 0
    assert workspace.store.repositories()  # still open for whoever runs next
