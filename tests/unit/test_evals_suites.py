"""Suites: YAML and JSONL files, dataset instances as completion suites, HumanEval, and clear errors with lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgepilot.evals.suites import SuiteError, humaneval, load_suite

FUNCTIONAL = """\
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
    test: |
      def check(f):
          assert f(5, 3) == 2
    entry_point: sub
    slices: {difficulty: easy}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_functional_yaml_suite(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, "arith.yaml", FUNCTIONAL))
    assert (suite.name, suite.kind, [c.id for c in suite.cases]) == ("arith", "functional", ["add", "sub"])
    assert suite.cases[1].tests.endswith("check(sub)\n")
    assert suite.cases[1].slices == {"language": "python", "task": "functional", "difficulty": "easy"}
    assert len(suite.sha256) == 64
    assert suite.limited(1).cases == suite.cases[:1] and suite.limited(1).sha256 != suite.sha256


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (FUNCTIONAL.replace("    tests: |\n      assert add(2, 3) == 5\n", ""), 5, "needs `tests`"),
        (FUNCTIONAL.replace("  - id: sub\n", "  - idx: sub\n"), 11, "id: Field required"),
        (FUNCTIONAL.replace("schema_version: 1", "schema_version: 7"), 1, "schema_version must be 1"),
        (FUNCTIONAL.replace("kind: functional", "kind: vibes"), 1, "kind: Input should be"),
        (FUNCTIONAL + "  - id: add\n    prompt: x\n    tests: y\n", 20, "duplicate case id 'add'"),
        ("schema_version: 1\nname: x\nkind: functional\ncases:\n  - id: [unclosed\n", 6, "not valid YAML"),
        ("- just\n- a list\n", 1, "a suite file is a mapping"),
    ],
)
def test_malformed_yaml_names_file_and_line(tmp_path: Path, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert info.value.line == line, info.value.message
    assert info.value.message.startswith(f"{path}:{line}: ")
    assert problem in info.value.message
    assert info.value.exit_code == 2


def test_jsonl_suite_and_its_errors(tmp_path: Path) -> None:
    header = {"suite": {"schema_version": 1, "name": "holes", "kind": "completion"}}
    case = {"id": "c1", "path": "a.py", "prefix": "x = ", "suffix": "\n", "target": "1", "language": "python"}
    good = write(tmp_path, "holes.jsonl", "\n".join(json.dumps(r) for r in (header, case)) + "\n")
    suite = load_suite(good)
    assert suite.kind == "completion" and suite.cases[0].expected == "1"
    bad = write(tmp_path, "bad.jsonl", json.dumps(header) + "\n\n{not json}\n")
    with pytest.raises(SuiteError, match=r"bad\.jsonl:3: not JSON"):
        load_suite(bad)
    missing = write(tmp_path, "missing.jsonl", json.dumps(header) + "\n" + json.dumps({"id": "c"}) + "\n")
    with pytest.raises(SuiteError, match=r"missing\.jsonl:2: path: Field required"):
        load_suite(missing)


def test_dataset_instances_are_a_completion_suite(tmp_path: Path) -> None:
    rows = [
        {
            "kind": "in_block",
            "schema_version": 1,
            "id": "i1",
            "path": "pkg/m.py",
            "prefix": "def f():\n",
            "suffix": "",
            "completion": "    return 1\n",
            "language": "python",
            "repository": "repo",
            "split": "test",
        },
        {"kind": "commit", "schema_version": 1, "id": "c1", "completion": "Fix the thing"},
    ]
    path = tmp_path / "ds" / "instances" / "test.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    suite = load_suite(path)
    assert suite.name == "ds/test" and [c.id for c in suite.cases] == ["i1"]
    whole = load_suite(tmp_path / "ds")  # the dataset folder: every split
    assert whole.name == "ds" and [c.id for c in whole.cases] == ["i1"]
    assert suite.cases[0].input["mode"] == "in-block"
    assert suite.cases[0].slices == {"language": "python", "repository": "repo", "task": "in-block", "split": "test"}


def test_prompt_suite_with_shots_and_variants(tmp_path: Path) -> None:
    write(tmp_path, "direct.j2", "{% for s in shots %}{{ s.input.text }} -> {{ s.output }}\n{% endfor %}{{ text }} ->")
    text = """\
schema_version: 1
name: sentiment
kind: prompt
template: direct.j2
answer: {type: label, labels: [good, bad]}
shots:
  - {input: {text: "great"}, output: good}
cases:
  - {id: h1, input: {text: "awful"}, expected: bad}
"""
    suite = load_suite(write(tmp_path, "s.yaml", text))
    assert [(c.id, c.split) for c in suite.cases] == [("shot-1", "shot"), ("h1", "heldout")]
    assert suite.prompt is not None and list(suite.prompt.variants) == ["default"]
    before = suite.sha256
    write(tmp_path, "direct.j2", "changed {{ text }}")
    assert load_suite(tmp_path / "s.yaml").sha256 != before  # the template is part of the suite
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(write(tmp_path, "t.yaml", text.replace("direct.j2", "nope.j2")))


def test_humaneval_comes_from_the_package() -> None:
    suite = humaneval()
    assert len(suite.cases) == 164 and suite.cases[0].id == "HumanEval/0"
    assert suite.cases[0].tests.rstrip().endswith("check(has_close_elements)")
    assert suite.cases[0].canonical.strip()


def test_unknown_suite_reference(tmp_path: Path) -> None:
    from forgepilot.errors import UserError

    with pytest.raises(UserError, match="no suite"):
        load_suite("mbpp")
    with pytest.raises(SuiteError, match="unknown suite format"):
        load_suite(write(tmp_path, "suite.txt", "x"))
