"""Which test framework a project uses, so generated tests look like the project's own.

Detected from the project's build and config files (pyproject/pytest.ini/conftest, pom.xml/build.gradle,
package.json, go.mod, Cargo.toml, .csproj) with a language default when nothing says otherwise.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULTS = {
    "python": "pytest",
    "java": "JUnit 5",
    "kotlin": "JUnit 5",
    "javascript": "jest",
    "typescript": "jest",
    "tsx": "jest",
    "go": "go test",
    "rust": "cargo test (#[test])",
    "csharp": "xUnit",
    "c": "a plain C test program with assert.h",
    "cpp": "GoogleTest",
}


@dataclass(frozen=True)
class Framework:
    name: str
    #: Where the evidence came from ("pyproject.toml", "default", ...).
    evidence: str
    #: A conventional path for the new test file.
    test_path: str


def _read(path: Path, limit: int = 200_000) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except OSError:
        return ""


def _python(root: Path) -> tuple[str, str] | None:
    if (root / "pytest.ini").is_file() or (root / "conftest.py").is_file():
        return "pytest", "pytest.ini" if (root / "pytest.ini").is_file() else "conftest.py"
    pyproject = _read(root / "pyproject.toml")
    if "[tool.pytest" in pyproject or re.search(r"[\"']pytest\b", pyproject):
        return "pytest", "pyproject.toml"
    if "[tool:pytest]" in _read(root / "setup.cfg"):
        return "pytest", "setup.cfg"
    for req in sorted(root.glob("requirements*.txt"))[:5]:
        if re.search(r"^pytest\b", _read(req), re.MULTILINE):
            return "pytest", req.name
    for tests_dir in ("tests", "test"):
        for test in sorted((root / tests_dir).glob("test_*.py"))[:20]:
            text = _read(test, 20_000)
            if "import pytest" in text:
                return "pytest", str(test.relative_to(root))
            if "import unittest" in text or "unittest.TestCase" in text:
                return "unittest", str(test.relative_to(root))
    return None


def _jvm(root: Path) -> tuple[str, str] | None:
    for name in ("pom.xml", "build.gradle", "build.gradle.kts"):
        text = _read(root / name)
        if "junit-jupiter" in text or "org.junit.jupiter" in text:
            return "JUnit 5", name
        if "junit" in text.lower():
            return "JUnit 4", name
        if "testng" in text.lower():
            return "TestNG", name
    return None


def _javascript(root: Path) -> tuple[str, str] | None:
    text = _read(root / "package.json")
    if not text:
        return None
    try:
        pkg = json.loads(text)
    except json.JSONDecodeError:
        return None
    deps = {**pkg.get("dependencies", {}), **pkg.get("devDependencies", {})}
    for name, label in (("vitest", "vitest"), ("jest", "jest"), ("mocha", "mocha"), ("ava", "ava")):
        if name in deps or name in json.dumps(pkg.get("scripts", {})):
            return label, "package.json"
    return None


def _csharp(root: Path) -> tuple[str, str] | None:
    for proj in sorted(root.rglob("*.csproj"))[:20]:
        text = _read(proj).lower()
        for name, label in (("xunit", "xUnit"), ("nunit", "NUnit"), ("mstest", "MSTest")):
            if name in text:
                return label, str(proj.relative_to(root))
    return None


def test_path_for(path: str, language: str) -> str:
    directory, base = posixpath.split(path)
    stem, ext = posixpath.splitext(base)
    if language == "python":
        return posixpath.join("tests", f"test_{stem}{ext}")
    if language in ("java", "kotlin"):
        return posixpath.join(directory.replace("src/main/", "src/test/"), f"{stem}Test{ext}")
    if language in ("javascript", "typescript", "tsx"):
        return posixpath.join(directory, f"{stem}.test{ext}")
    if language == "go":
        return posixpath.join(directory, f"{stem}_test.go")
    if language == "csharp":
        return posixpath.join(directory, f"{stem}Tests{ext}")
    return posixpath.join(directory, f"{stem}_test{ext}")


def import_path_for(path: str, test_path: str, language: str) -> str:
    """How the test at ``test_path`` names the code under test at ``path`` (both repository-relative): a dotted
    module for Python and the JVM, a path relative to the test's folder for JavaScript and TypeScript."""
    stem = posixpath.splitext(path)[0]
    if language == "python":
        parts = [p for p in stem.removeprefix("src/").split("/") if p]
        if parts and parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(parts) or stem
    if language in ("java", "kotlin"):
        for root in ("src/main/java/", "src/main/kotlin/", "src/"):
            if stem.startswith(root):
                stem = stem[len(root) :]
                break
        return stem.replace("/", ".")
    if language in ("javascript", "typescript", "tsx"):
        rel = posixpath.relpath(stem, posixpath.dirname(test_path) or ".")
        return rel if rel.startswith(".") else f"./{rel}"
    if language == "go":
        return posixpath.basename(posixpath.dirname(path)) or "main"
    return posixpath.relpath(path, posixpath.dirname(test_path) or ".")


def detect_framework(language: str, path: str, root: Path | None) -> Framework:
    found: tuple[str, str] | None = None
    if root is not None and root.is_dir():
        detector = {
            "python": _python,
            "java": _jvm,
            "kotlin": _jvm,
            "javascript": _javascript,
            "typescript": _javascript,
            "tsx": _javascript,
            "csharp": _csharp,
        }.get(language)
        if detector is not None:
            found = detector(root)
        elif language == "go" and (root / "go.mod").is_file():
            found = ("go test", "go.mod")
        elif language == "rust" and (root / "Cargo.toml").is_file():
            found = ("cargo test (#[test])", "Cargo.toml")
    name, evidence = found or (DEFAULTS.get(language, "the language's standard test framework"), "default")
    test_path = test_path_for(path, language)
    if language in ("javascript", "typescript", "tsx") and root is not None:
        # Projects that keep their tests in one folder (test/, tests/, __tests__/) get the new test there.
        folder = next((d for d in ("test", "tests", "__tests__") if (root / d).is_dir()), None)
        if folder is not None:
            test_path = posixpath.join(folder, posixpath.basename(test_path))
    return Framework(name, evidence, test_path)
