"""Test-generation instances: a focal function paired with the test that exercises it.

- Python (pytest / unittest): ``test_foo[_case]`` in ``test_*.py`` / ``*_test.py`` <-> ``foo`` defined in a module
  the test file imports (resolved through the repository's imports).
- Java / Kotlin (JUnit): ``FooTest`` <-> ``Foo`` (same package, any source root); ``testBar`` / ``bar...`` <-> ``bar``.
- JavaScript / TypeScript (jest): ``foo.test.ts`` / ``foo.spec.js`` / ``__tests__/foo.ts`` <-> ``foo.ts``; each
  ``it``/``test`` block <-> the focal file's function it calls.
- Go: ``TestBar`` / ``TestType_Bar`` in ``x_test.go`` <-> ``Bar`` in the same package directory.

The prompt is the ``tests`` chat task's own template (framework detected as the task does); the target is the
test's code in a fenced block, checked against the test smells first.
"""

from __future__ import annotations

import posixpath
import re
import textwrap
from collections.abc import Callable, Iterator

from forgepilot.context.frameworks import detect_framework, import_path_for
from forgepilot.datagen.builders import RenderKit, stable_rank
from forgepilot.datagen.source import SourceFile
from forgepilot.datagen.types import Instance, Rejections
from forgepilot.syntax.imports import RepoFiles, resolve
from forgepilot.syntax.metrics import smells_of_test
from forgepilot.syntax.symbols import Symbol

Loader = Callable[[str], SourceFile | None]
_JS_TEST_CALL = re.compile(r"^[ \t]*(?:it|test)(?:\.\w+)?[ \t]*\(", re.MULTILINE)
_JS_LANGS = frozenset({"javascript", "typescript", "tsx"})


def is_test_file(path: str, language: str) -> bool:
    name = posixpath.basename(path)
    stem = name.rsplit(".", 1)[0]
    if language == "python":
        return stem.startswith("test_") or stem.endswith("_test")
    if language in ("java", "kotlin"):
        return stem.endswith(("Test", "Tests")) or stem.startswith("Test")
    if language in _JS_LANGS:
        return ".test." in name or ".spec." in name or "/__tests__/" in f"/{path}"
    if language == "go":
        return name.endswith("_test.go")
    return False


def _focal_candidates(test: SourceFile, files: RepoFiles) -> list[str]:
    path, lang = test.path, test.language.name
    directory, name = posixpath.split(path)
    if lang == "python":
        out: list[str] = []
        for imp in test.syntax.imports:
            out += resolve(imp, path, "python", files)
        return list(dict.fromkeys(out))
    if lang in ("java", "kotlin"):
        stem, ext = posixpath.splitext(name)
        base = re.sub(r"(Tests?)$", "", stem) if not stem.startswith("Test") else stem[4:]
        rel = posixpath.join(directory, base + ext)
        guesses = [rel, rel.replace("/test/", "/main/")]
        return [g for g in guesses if g in files.paths] or [p for p in files.paths if p.endswith(f"/{base}{ext}")]
    if lang in _JS_LANGS:
        base = re.sub(r"\.(test|spec)(?=\.[jt]sx?$)", "", name)
        stem = base.rsplit(".", 1)[0]
        dirs = [directory, posixpath.dirname(directory) if directory.endswith("__tests__") else directory]
        out = []
        for d in dirs:
            for ext in (".ts", ".tsx", ".js", ".jsx", ".mjs"):
                cand = posixpath.join(d, stem + ext)
                if cand in files.paths and cand != path:
                    out.append(cand)
        return out
    if lang == "go":
        return [
            p
            for p in files.paths
            if posixpath.dirname(p) == directory and p.endswith(".go") and p != path and not p.endswith("_test.go")
        ]
    return []


def _match(test_name: str, lang: str, focal: dict[str, Symbol]) -> Symbol | None:
    """The focal function a test's name points to: the longest focal name the test name starts with."""
    if lang == "python":
        key = test_name.removeprefix("test_").removeprefix("test")
    elif lang == "go":
        key = test_name.removeprefix("Test").rpartition("_")[2] or test_name.removeprefix("Test")
    else:
        key = test_name.removeprefix("test").removeprefix("Test")
    key = key.lower()
    best = None
    for name, sym in focal.items():
        n = name.lower()
        if (
            key == n
            or (key.startswith(n) and key[len(n) : len(n) + 1] in ("_", ""))
            or (lang in ("java", "kotlin") and key.startswith(n))
        ):
            if best is None or len(name) > len(best.name):
                best = sym
    return best


def _tests_in(test: SourceFile) -> list[tuple[str, int, int, str]]:
    """(name, start_line, end_line, text) of each test in a test file."""
    lang = test.language.name
    out = []
    if lang in _JS_LANGS:
        lines = test.text.split("\n")
        for m in _JS_TEST_CALL.finditer(test.text):
            start = test.text.count("\n", 0, m.start())
            indent = len(lines[start]) - len(lines[start].lstrip())
            end = start
            for j in range(start + 1, len(lines)):
                if lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) <= indent:
                    end = j
                    break
            block = textwrap.dedent("\n".join(lines[start : end + 1]))
            out.append((block, start + 1, end + 1, block))
        return out
    for sym in test.functions:
        name = sym.name
        if lang == "python" and not name.startswith("test"):
            continue
        if lang == "go" and not name.startswith("Test"):
            continue
        text = test.block_text(sym)
        if lang in ("java", "kotlin"):
            # The annotations above the method carry @Test / @Disabled.
            line_start = test.line_start(test.char(sym.start_byte))
            above = test.text[:line_start].rstrip("\n").split("\n")[-3:]
            annotations = "\n".join(a for a in above if a.strip().startswith("@"))
            if "@Test" not in annotations and "@Test" not in text:
                continue
            text = (annotations + "\n" if annotations else "") + text
        out.append((name, sym.start_line, sym.end_line, text))
    return out


def test_pairs(
    test: SourceFile, files: RepoFiles, load: Loader, kit: RenderKit, rejected: Rejections
) -> Iterator[Instance]:
    lang = test.language.name
    focal_files = [f for f in (load(p) for p in _focal_candidates(test, files)) if f is not None]
    if not focal_files:
        return
    focal: dict[str, tuple[SourceFile, Symbol]] = {}
    for f in focal_files:
        for sym in f.functions:
            if not sym.name.startswith(("test", "Test", "_")) or sym.name == "__init__":
                focal.setdefault(sym.name, (f, sym))
    focal = {k: v for k, v in focal.items() if not k.startswith("_")}
    made = 0
    for name, start, end, text in sorted(_tests_in(test), key=lambda t: stable_rank(test.path, t[1])):
        if made >= kit.settings.per_file:
            break
        if lang in _JS_LANGS:
            called = [n for n in focal if re.search(rf"\b{re.escape(n)}\s*\(", text)]
            sym_pair = focal[max(called, key=len)] if called else None
        else:
            matched = _match(name, lang, {k: v[1] for k, v in focal.items()})
            sym_pair = focal.get(matched.name) if matched else None
        if sym_pair is None:
            continue
        smells = smells_of_test(text)
        if smells:
            rejected.add(f"test_smell:{smells[0]}", "tests")
            continue
        focal_file, focal_sym = sym_pair
        reason = focal_file.unit_gates(focal_sym, kit.settings)
        if reason:
            rejected.add(reason, "tests")
            continue
        framework = detect_framework(lang, focal_file.path, focal_file.root)
        # As serving does, but the test's real place is known here: the import is named from where it lives.
        module = import_path_for(focal_file.path, test.path, lang)
        code = focal_file.block_text(focal_sym)
        inst = kit.chat(
            focal_file,
            "tests",
            "tests",
            {"code": code, "framework": framework.name, "module": module, "test_path": test.path, "example": ""},
            f"```{lang}\n{text.strip(chr(10))}\n```",
        )
        inst.start_line, inst.end_line = focal_sym.start_line, focal_sym.end_line
        inst.related_paths = [test.path]
        inst.unit = code + "\n" + text
        inst.meta = {"test_path": test.path, "test_lines": [start, end], "framework": framework.name}
        made += 1
        yield inst.finish()
