"""Dataset generation on small fixture repositories (Python, Java, TypeScript, Go): goldens, hygiene, splits, gates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from forgepilot.config import DatasetSettings, ModelConfig, Settings
from forgepilot.datagen import builders, history
from forgepilot.datagen.dedup import deduplicate
from forgepilot.datagen.licences import detect as detect_licence
from forgepilot.datagen.licences import identify
from forgepilot.datagen.pipeline import JOURNAL, BuildOptions, BuildReport, open_builder
from forgepilot.datagen.secrets import Redactor
from forgepilot.datagen.source import SourceFile
from forgepilot.datagen.types import Instance, Rejections
from forgepilot.index.scan import ScanSettings, content_skip
from forgepilot.prompts import builtin_registry
from forgepilot.syntax.languages import detect_language
from forgepilot.syntax.metrics import smells_of_test

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPOS = FIXTURES / "datagen"
GOLDEN = FIXTURES / "golden" / "datagen" / "instances.json"
SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dcQ9vXw2"
EMAIL = "billing-team@acme-shop.com"
LANGUAGES = ("python", "java", "typescript", "go")


def _git(root: Path, *args: str, author: str = "Dev <dev@example.org>") -> None:
    name, _, email = author.partition(" <")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email.rstrip(">"),
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email.rstrip(">"),
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00",
    }
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)


def make_repos(base: Path) -> list[Path]:
    roots = []
    for lang in LANGUAGES:
        root = base / lang
        shutil.copytree(REPOS / lang, root)
        _git(root, "init", "-q", "-b", "main")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", "Initial commit")
        roots.append(root)
    py = base / "python"
    pricing = py / "shop" / "pricing.py"
    text = pricing.read_text()
    pricing.write_text(text.replace("base = 4.5 + 1.25 * weight_kg", "base = 4.75 + 1.25 * weight_kg"))
    _git(py, "commit", "-qam", "Raise the base shipping cost to cover the new carrier's fee")
    pricing.write_text(pricing.read_text() + "\n\nFREE_SHIPPING_OVER = 50\n")
    _git(py, "commit", "-qam", "wip")
    pricing.write_text(pricing.read_text() + "\nRETURNS_DAYS = 30\n")
    _git(py, "commit", "-qam", "Bump the returns window to thirty days", author="dependabot[bot] <bot@github.com>")
    return roots


def settings_for(tmp: Path, **dataset: object) -> Settings:
    return Settings(
        state_dir=tmp / "state",
        default_model="fake:coder",
        models={"fake:coder": ModelConfig(family="qwen2.5-coder", provider="fake")},
        dataset=DatasetSettings(**dataset),  # type: ignore[arg-type]
    )


def build(tmp: Path, roots: list[Path], out: Path, **dataset: object) -> BuildReport:
    s = settings_for(tmp, **dataset)
    return open_builder(s).build(roots, BuildOptions(out=out))


def read_instances(out: Path) -> list[dict[str, object]]:
    from forgepilot.datagen.formats import instance_from_row

    rows = []
    for path in sorted((out / "instances").glob("*.jsonl")):
        rows += [instance_from_row(json.loads(line)) for line in path.read_text().splitlines()]
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], BuildReport]:
    tmp = tmp_path_factory.mktemp("datagen")
    roots = make_repos(tmp / "repos")
    report = build(tmp, roots, tmp / "out")
    return tmp, roots, report


def _projection(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    keep = ("kind", "language", "repository", "path", "start_line", "end_line", "completion", "format")
    out = [{k: r[k] for k in keep} for r in rows]
    return sorted(out, key=lambda r: (str(r["repository"]), str(r["kind"]), str(r["path"]), int(r["start_line"])))  # type: ignore[call-overload]


def test_golden_instances(built: tuple[Path, list[Path], BuildReport]) -> None:
    _, _, report = built
    got = _projection(read_instances(report.out))
    if os.environ.get("FORGEPILOT_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_every_language_yields_test_pairs_and_completions(built: tuple[Path, list[Path], BuildReport]) -> None:
    rows = read_instances(built[2].out)
    kinds = {(r["language"], r["kind"]) for r in rows}
    for lang in LANGUAGES:
        assert (lang, "tests") in kinds, lang
        assert (lang, "in_block") in kinds or (lang, "inline") in kinds, lang
    tests = {r["path"]: r for r in rows if r["kind"] == "tests"}
    assert "ship" in str(tests["src/main/java/com/acme/Inventory.java"]["prompt"])
    assert "shipFailsWhenStockIsShort" in str(tests["src/main/java/com/acme/Inventory.java"]["completion"])
    assert "TestBalance" in str(tests["ledger.go"]["completion"]) or "TestWithdraw" in str(
        tests["ledger.go"]["completion"]
    )
    kinds_py = {r["kind"] for r in rows if r["language"] == "python"}
    assert {"inline", "in_block", "after_block", "code_to_doc", "doc_to_code", "tests"} <= kinds_py
    commits = [r for r in rows if r["kind"] == "commit"]
    assert [c["completion"] for c in commits] == ["Raise the base shipping cost to cover the new carrier's fee"]


def test_completion_instances_render_through_the_serving_path(built: tuple[Path, list[Path], BuildReport]) -> None:
    rows = read_instances(built[2].out)
    block = next(r for r in rows if r["kind"] == "in_block" and r["language"] == "python")
    prompt = str(block["fim_prompt"])
    # Qwen2.5-Coder's repository-level format as serving lays it out (suffix-first): the serving context builder's
    # snippets, then the text after the hole as a file of its own, then the file down to the hole.
    assert prompt.startswith("<|repo_name|>") and "<|fim_middle|>" not in prompt
    assert f"<|file_sep|>{block['path']} (after the cursor)\n" in prompt
    before = str(block["prefix"])
    assert prompt.endswith(before[: len(before) - len(str(block["fim_indent"]))][-40:])
    assert block["template"]["template_id"] == "complete"  # type: ignore[index]
    assert block["template"]["template_version"] == builtin_registry().get("complete").version  # type: ignore[index]
    cart = next(r for r in rows if r["kind"] in ("in_block", "inline") and r["path"] == "shop/cart.py")
    assert any(c["source"] == "related" and c["path"] == "shop/pricing.py" for c in cart["context"])  # type: ignore[union-attr]
    inline = [r for r in rows if r["kind"] == "inline"]
    assert inline and all(len(str(r["completion"])) >= 10 and "\n" not in str(r["completion"]) for r in inline)


def test_planted_secret_and_email_never_appear(built: tuple[Path, list[Path], BuildReport]) -> None:
    out = built[2].out
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 7  # five formats, the card and its Markdown
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert SECRET not in text, path
        assert EMAIL not in text, path
    rows = read_instances(out)
    assert any("<KEY>" in str(r["fim_prompt"]) + str(r["prompt"]) or "<PASSWORD>" in str(r["prompt"]) for r in rows)


def test_planted_humaneval_solution_is_decontaminated(built: tuple[Path, list[Path], BuildReport]) -> None:
    report = built[2]
    assert report.rejections.by_reason.get("decontam:humaneval", 0) >= 1
    for row in read_instances(report.out):
        assert "distance = abs(elem - elem2)" not in str(row["completion"])


def test_no_file_crosses_splits(built: tuple[Path, list[Path], BuildReport]) -> None:
    splits: dict[tuple[str, str], set[str]] = {}
    for r in read_instances(built[2].out):
        for path in [r["path"], *r["related_paths"]]:  # type: ignore[misc]
            splits.setdefault((str(r["repository"]), str(path)), set()).add(str(r["split"]))
    assert splits and all(len(v) == 1 for v in splits.values()), splits


def test_every_format_loads_with_datasets(built: tuple[Path, list[Path], BuildReport]) -> None:
    datasets = pytest.importorskip("datasets")
    out = built[2].out
    for fmt in ("instances", "chat", "alpaca", "deepseek", "fim"):
        files = sorted(str(p) for p in (out / fmt).glob("*.jsonl"))
        assert files, fmt
        loaded = datasets.load_dataset("json", data_files=files, split="train", cache_dir=str(built[0] / "hf"))
        assert loaded.num_rows > 0
        # Split by split, as trainers load them: the first split's schema must fit the others.
        by_split = {Path(f).stem: f for f in files}
        splits = datasets.load_dataset("json", data_files=by_split, cache_dir=str(built[0] / "hf"))
        assert sum(d.num_rows for d in splits.values()) == loaded.num_rows
    deepseek = json.loads((out / "deepseek" / "train.jsonl").read_text().splitlines()[0])
    assert "### Instruction:\n" in deepseek["text"] and deepseek["text"].endswith("<|EOT|>")
    fim = json.loads((out / "fim" / "train.jsonl").read_text().splitlines()[0])
    assert fim["text"] == fim["prompt"] + fim["completion"] + "<|endoftext|>"


def test_card_has_counts_rejections_and_lineage(built: tuple[Path, list[Path], BuildReport]) -> None:
    out = built[2].out
    card = json.loads((out / "card.json").read_text())
    assert card["instances"] == built[2].instances == sum(card["counts"]["kind"].values())
    assert card["rejections"]["by_reason"]["smell:long_parameter_list"] >= 1
    assert {s["repository"] for s in card["sources"]} == set(LANGUAGES)
    assert all(len(s["commit"]) == 40 for s in card["sources"])
    assert "complete" in card["templates"] and "tests" in card["templates"]
    assert all(len(f["sha256"]) == 64 for f in card["files"].values())
    assert "## Rejections" in (out / "README.md").read_text()


def test_interrupted_build_resumes_to_the_same_dataset(tmp_path: Path) -> None:
    roots = make_repos(tmp_path / "repos")[:2]
    whole = build(tmp_path, roots, tmp_path / "whole")
    partial_out = tmp_path / "partial"
    build(tmp_path, roots, partial_out)
    journal = partial_out / JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    # An interruption: half the files journaled, the last line cut in the middle.
    journal.write_text("".join(lines[: len(lines) // 2]) + lines[len(lines) // 2][:40])
    resumed = build(tmp_path, roots, partial_out)
    assert 0 < resumed.resumed_files < len(lines)
    assert resumed.card["dataset_sha256"] == whole.card["dataset_sha256"]
    assert resumed.rejections.by_reason == whole.rejections.by_reason


def test_one_failing_file_is_recorded_and_the_build_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    roots = make_repos(tmp_path / "repos")[:1]
    real = builders.in_block

    def boom(sf: SourceFile, kit: builders.RenderKit, rejected: Rejections):  # type: ignore[no-untyped-def]
        if sf.path.endswith("cart.py"):
            raise RuntimeError("parser exploded")
        return real(sf, kit, rejected)

    monkeypatch.setattr(builders, "in_block", boom)
    report = build(tmp_path, roots, tmp_path / "out")
    assert [f["path"] for f in report.failures] == ["python/shop/cart.py"]
    assert report.instances > 0


# -- gates ---------------------------------------------------------------------------------------------------
def _source(path: str, text: str) -> SourceFile:
    lang = detect_language(path)
    assert lang is not None
    return SourceFile.read("r", Path("/r"), path, text, lang)


def _gate(text: str, name: str, **settings: int) -> str | None:
    sf = _source("m.py", text)
    sym = next(s for s in sf.syntax.symbols if s.name == name)
    return sf.unit_gates(sym, DatasetSettings(**settings))  # type: ignore[arg-type]


BRANCHY = "def f(x):\n" + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(8)) + "    return -1\n"
NESTED = (
    "def f(x):\n    if x:\n        for a in x:\n            while a:\n                if a > 1:\n"
    "                    if a > 2:\n                        return a\n                a -= 1\n    return 0\n"
)
LONG = "def f(x):\n" + "".join(f"    x += {i}\n" for i in range(30)) + "    return x\n"
GOD = "class G:\n" + "".join(f"    def m{i}(self):\n        return {i}\n" for i in range(6)) + "\n"
DATA = (
    "class D:\n    def __init__(self):\n"
    + "".join(f"        self.f{i} = {i}\n" for i in range(7))
    + "    def get_f0(self):\n        return self.f0\n"
)


@pytest.mark.parametrize(
    ("text", "name", "reject", "admit", "reason"),
    [
        (BRANCHY, "f", {"max_complexity": 5}, {"max_complexity": 9}, "gate:complexity"),
        (LONG, "f", {"max_function_lines": 20}, {"max_function_lines": 40}, "smell:long_method"),
        (
            "def f(a, b, c, d):\n    return a\n",
            "f",
            {"max_parameters": 3},
            {"max_parameters": 4},
            "smell:long_parameter_list",
        ),
        (NESTED, "f", {"max_nesting": 3}, {"max_nesting": 5}, "smell:deep_nesting"),
        (GOD, "m0", {"max_class_methods": 5}, {"max_class_methods": 6}, "smell:god_class"),
        (GOD, "m0", {"max_class_lines": 10}, {"max_class_lines": 20}, "smell:god_class"),
        (DATA, "get_f0", {"data_class_min_fields": 7}, {"data_class_min_fields": 8}, "smell:data_class"),
    ],
)
def test_each_code_gate_rejects_and_admits(
    text: str, name: str, reject: dict[str, int], admit: dict[str, int], reason: str
) -> None:
    assert _gate(text, name, **reject) == reason
    assert _gate(text, name, **admit) is None


@pytest.mark.parametrize(
    ("test", "smell"),
    [
        ("def test_a():\n    x = compute()\n", "no_assertion"),
        ("def test_a():\n    pass\n", "empty"),
        ("@pytest.mark.skip\ndef test_a():\n    assert f() == 1\n", "skipped"),
        ("@Disabled\nvoid a() { assertEquals(1, f()); }", "skipped"),
        ("def test_a():\n    time.sleep(1)\n    assert f()\n", "sleep"),
        ("it('a', () => { console.log(f()); expect(f()).toBe(1); });", "print"),
        ("def test_a():\n    assert f() == 1\n    assert f() == 1\n", "duplicate_assert"),
    ],
)
def test_each_test_smell_rejects(test: str, smell: str) -> None:
    assert smell in smells_of_test(test)


def test_clean_tests_have_no_smells() -> None:
    assert smells_of_test("def test_a():\n    assert f() == 1\n    assert g() == 2\n") == []
    assert smells_of_test('func TestA(t *testing.T) {\n\tif f() != 1 {\n\t\tt.Errorf("bad")\n\t}\n}') == []
    assert smells_of_test("it('a', () => {\n  expect(f()).toBe(1);\n});") == []


def test_token_and_size_gates_apply_their_thresholds(tmp_path: Path) -> None:
    roots = make_repos(tmp_path / "repos")[:1]
    tight = build(tmp_path, roots, tmp_path / "tight", max_instance_tokens=40, commits=0)
    assert tight.rejections.by_reason.get("gate:tokens", 0) > 0
    assert tight.instances < build(tmp_path, roots, tmp_path / "loose", commits=0).instances
    small = build(tmp_path, roots, tmp_path / "small", max_file_bytes=300, commits=0)
    assert small.rejections.by_reason.get("file:too_large", 0) >= 2


def test_generated_minified_and_vendored_files_are_rejected(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "index.js").write_text("function a() { return 1; }\n")
    (root / "gen.py").write_text("# Code generated by protoc. DO NOT EDIT.\ndef a():\n    return 1\n")
    (root / "min.js").write_text("function a(){return 1}" + ";" * 2000 + "\n")
    (root / "ok.py").write_text("def add(a, b):\n    total = a + b\n    return total\n")
    report = build(tmp_path, [root], tmp_path / "out", commits=0)
    by = report.rejections.by_reason
    assert by.get("file:vendored") == 1 and by.get("file:generated") == 1 and by.get("file:minified") == 1
    assert content_skip(b"def a():\n    return 1\n", ScanSettings()) is None


def test_licence_allowlist(tmp_path: Path) -> None:
    gpl = tmp_path / "gpl"
    gpl.mkdir()
    (gpl / "LICENSE").write_text("GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n")
    (gpl / "a.py").write_text("def add(a, b):\n    total = a + b\n    return total\n")
    mit = tmp_path / "mit"
    mit.mkdir()
    (mit / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge, to any person\n")
    (mit / "a.py").write_text("def mul(a, b):\n    product = a * b\n    return product\n")
    assert detect_licence(gpl)[0] == "GPL-3.0" and detect_licence(mit)[0] == "MIT"
    report = build(tmp_path, [gpl, mit], tmp_path / "out", commits=0)
    assert report.rejections.by_reason.get("licence:GPL-3.0") == 1
    assert {r["repository"] for r in read_instances(report.out)} == {"mit"}
    assert identify("Apache License\nVersion 2.0, January 2004") == "Apache-2.0"


# -- hygiene -------------------------------------------------------------------------------------------------
def test_redactor_replaces_secrets_and_pii_with_placeholders() -> None:
    r = Redactor()
    text = (
        'AWS_KEY = "AKIAZ3MSJV4WWNKWW7UQ"\n'
        'db_password = "Tr0ub4dor&3x"\n'
        f'SUPPORT = "{EMAIL}"\n'
        'DB = "postgres://admin:hunter22@10.20.30.40:5432/app"\n'
        'LOCAL = "127.0.0.1"\n'
        "def add(a, b):\n    return a + b\n"
    )
    out = r.redact(text).text
    assert "AKIAZ3MSJV4WWNKWW7UQ" not in out and "<KEY>" in out
    assert "Tr0ub4dor&3x" not in out and "<PASSWORD>" in out
    assert EMAIL not in out and "<EMAIL>" in out
    assert "hunter22" not in out and "10.20.30.40" not in out and "<IP>" in out
    assert "127.0.0.1" in out and "def add(a, b):\n    return a + b\n" in out
    # A value found once is scrubbed from any later text.
    assert r.scrub("key was AKIAZ3MSJV4WWNKWW7UQ") == "key was <KEY>"


def _inst(kind: str, unit: str, path: str = "a.py") -> Instance:
    return Instance(kind, "python", "r", path, 1, 2, "", "p", unit, {}, unit=unit).finish()


def test_exact_and_near_duplicates_are_removed() -> None:
    body = (
        "def total(prices, rate):\n    subtotal = sum(prices)\n    tax = subtotal * rate\n"
        "    return round(subtotal + tax, 2)\n"
    )
    near = body.replace("round(subtotal + tax, 2)", "round(subtotal + tax, 3)")
    other = "def shout(text):\n    return text.upper() + '!'\n"
    kept, removed = deduplicate(
        [
            _inst("in_block", body),
            _inst("in_block", body.replace("    ", "  "), "b.py"),
            _inst("in_block", near, "c.py"),
            _inst("in_block", other, "d.py"),
        ],
        threshold=0.7,
        permutations=256,
        shingle=5,
    )
    assert [i.path for i in kept] == ["a.py", "d.py"]
    assert removed == {"in_block:dedup:exact": 1, "in_block:dedup:near": 1}


def test_commit_filters_count_their_reasons(built: tuple[Path, list[Path], BuildReport]) -> None:
    by = built[2].rejections.by_kind["commit"]
    assert by.get("commit:trivial_message") == 5  # "wip" and the four "Initial commit"
    assert by.get("commit:bot") == 1  # dependabot


def test_commit_instances_use_the_commit_task_template(tmp_path: Path) -> None:
    root = make_repos(tmp_path / "repos")[0]
    rejected = Rejections()
    found = list(history.commit_instances(root, "python", DatasetSettings(), builtin_registry(), rejected))
    assert len(found) == 1
    assert found[0].template["template_id"] == "commit"
    assert "base = 4.75" in found[0].prompt and found[0].source_commit


def test_fim_targets_match_the_serving_prompt(built: tuple[Path, list[Path], BuildReport]) -> None:
    # A hole after a space: the serving prompt holds it back (ContextResult.indent), so the target starts with it,
    # and prompt + completion is exactly what the model sees and writes.
    rows = [r for r in read_instances(built[2].out) if r["fim_prompt"] and r["fim_indent"]]
    assert rows
    fim = {}
    for path in (built[2].out / "fim").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            fim[row["prompt"]] = row
    checked = 0
    for r in rows:
        prompt = str(r["fim_prompt"])
        before = str(r["prefix"])
        assert r["fim_indent"] == " " and before.endswith(" ") and prompt.endswith(before[:-1][-40:]), prompt[-80:]
        if prompt in fim:
            assert fim[prompt]["completion"] == str(r["fim_indent"]) + str(r["completion"])
            checked += 1
    assert checked
