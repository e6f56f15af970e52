"""Resolve imports to files of the same repository, per language family.

Works on repository-relative POSIX paths only (no I/O), so it can re-resolve a whole repository cheaply whenever
files appear or disappear. An import that points outside the repository (the standard library, a package)
resolves to nothing; that is an answer, not an error.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable, Mapping

from forgepilot.syntax.symbols import ImportRef

_JS_EXTENSIONS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".d.ts")
_JVM_EXTENSIONS = (".java", ".kt", ".kts")


class RepoFiles:
    """What resolution needs to know about a repository: its paths, declared packages and module roots."""

    def __init__(
        self,
        paths: Iterable[str],
        packages: Mapping[str, str] | None = None,
        go_modules: Mapping[str, str] | None = None,
    ) -> None:
        """``packages`` maps path -> declared package/namespace; ``go_modules`` maps a go.mod's dir -> module."""
        self.paths = set(paths)
        self.by_package: dict[str, list[str]] = defaultdict(list)
        for path, package in (packages or {}).items():
            self.by_package[package].append(path)
        self.by_dir: dict[str, list[str]] = defaultdict(list)
        self.by_basename: dict[str, list[str]] = defaultdict(list)
        for path in self.paths:
            self.by_dir[posixpath.dirname(path)].append(path)
            self.by_basename[posixpath.basename(path)].append(path)
        self.go_modules = dict(go_modules or {})
        self.python_roots = self._python_roots()

    def _python_roots(self) -> list[str]:
        """Directories absolute imports start from: the repository root and the parent of every top package."""
        roots = {""}
        for path in self.paths:
            if path.endswith("/__init__.py"):
                package_dir = posixpath.dirname(path)
                parent = posixpath.dirname(package_dir)
                if posixpath.join(parent, "__init__.py") not in self.paths:
                    roots.add(parent)
        return sorted(roots, key=lambda r: (r.count("/"), r))

    def first(self, candidates: Iterable[str]) -> list[str]:
        for candidate in candidates:
            if not candidate:
                continue
            # normpath drops "./" and "a/.." (a leading dot of a name, as in ".github", stays); what still climbs
            # out of the root is outside the repository, never the same path inside it.
            candidate = posixpath.normpath(candidate)
            if candidate == ".." or candidate.startswith("../"):
                continue
            if candidate in self.paths:
                return [candidate]
        return []


def resolve(imp: ImportRef, from_path: str, language: str, repo: RepoFiles) -> list[str]:
    """Repository files the import refers to (several for packages and wildcards), or none."""
    resolver = _RESOLVERS.get(language)
    if resolver is None:
        return []
    found = resolver(imp, from_path, repo)
    return sorted(set(p for p in found if p != from_path))


def _python(imp: ImportRef, from_path: str, repo: RepoFiles) -> list[str]:
    module = imp.module
    dots = len(module) - len(module.lstrip("."))
    rest = module[dots:].replace(".", "/")
    if dots:
        base = posixpath.dirname(from_path)
        for _ in range(dots - 1):
            base = posixpath.dirname(base)
        bases = [posixpath.join(base, rest) if rest else base]
    else:
        bases = [posixpath.join(root, rest) if root else rest for root in repo.python_roots]
    found: list[str] = []
    for base in bases:
        for name in imp.names:  # `from pkg import module` names a submodule first
            found += repo.first([f"{base}/{name}.py", f"{base}/{name}/__init__.py"])
        if not found:
            found += repo.first([f"{base}.py", f"{base}/__init__.py"] if base else [])
        if found:
            return found
    return found


def _jvm(imp: ImportRef, from_path: str, repo: RepoFiles) -> list[str]:
    module = imp.module.removesuffix(".*")
    if imp.kind == "wildcard" or imp.module.endswith(".*"):
        return list(repo.by_package.get(module, [])) or [
            p for p in repo.by_dir.get(_dir_matching(repo, module.replace(".", "/")), [])
        ]
    parts = module.split(".")
    # `import a.b.C` or a static `import a.b.C.member`: try the class, then its outer names.
    for cut in range(len(parts), 1, -1):
        package, name = ".".join(parts[: cut - 1]), parts[cut - 1]
        in_package = [p for p in repo.by_package.get(package, []) if _stem(p) == name]
        if in_package:
            return in_package
        suffix = "/".join(parts[:cut])
        by_path = [p for p in repo.by_basename.get(name + ".java", []) + repo.by_basename.get(name + ".kt", [])]
        by_path = [p for p in by_path if p.rsplit(".", 1)[0].endswith(suffix)]
        if by_path:
            return by_path
    return []


def _dir_matching(repo: RepoFiles, suffix: str) -> str:
    for directory in repo.by_dir:
        if directory == suffix or directory.endswith("/" + suffix):
            return directory
    return "\0"


def _stem(path: str) -> str:
    return posixpath.basename(path).split(".", 1)[0]


def _javascript(imp: ImportRef, from_path: str, repo: RepoFiles) -> list[str]:
    if not imp.module.startswith("."):
        return []  # a package from node_modules
    base = posixpath.normpath(posixpath.join(posixpath.dirname(from_path), imp.module))
    candidates = [base] + [base + ext for ext in _JS_EXTENSIONS]
    candidates += [f"{base}/index{ext}" for ext in _JS_EXTENSIONS]
    if base.endswith(".js"):  # TypeScript ESM imports name the compiled .js file
        candidates += [base[:-3] + ext for ext in (".ts", ".tsx")]
    return repo.first(candidates)


def _go(imp: ImportRef, from_path: str, repo: RepoFiles) -> list[str]:
    directory: str | None = None
    for mod_dir, module in sorted(repo.go_modules.items(), key=lambda kv: -len(kv[1])):
        if imp.module == module or imp.module.startswith(module + "/"):
            directory = posixpath.normpath(posixpath.join(mod_dir, imp.module[len(module) :].lstrip("/")))
            directory = "" if directory == "." else directory
            break
    if directory is None:
        parts = imp.module.split("/")
        directory = _dir_matching(repo, "/".join(parts[-2:])) if len(parts) > 1 else "\0"
        if directory == "\0":
            return []
    return sorted(p for p in repo.by_dir.get(directory, []) if p.endswith(".go") and not p.endswith("_test.go"))


def _rust_module_dir(from_path: str) -> str:
    """The directory holding the submodules of the module defined by ``from_path``."""
    directory, name = posixpath.split(from_path)
    if name in ("mod.rs", "lib.rs", "main.rs"):
        return directory
    return posixpath.join(directory, name[:-3])


def _rust_crate_root(from_path: str, repo: RepoFiles) -> str:
    directory = posixpath.dirname(from_path)
    while True:
        if any(posixpath.join(directory, n) in repo.paths for n in ("lib.rs", "main.rs")):
            return directory
        if not directory:
            return posixpath.dirname(from_path)
        directory = posixpath.dirname(directory)


def _rust(imp: ImportRef, from_path: str, repo: RepoFiles) -> list[str]:
    if imp.kind == "mod":
        base = posixpath.join(_rust_module_dir(from_path), imp.module)
        return repo.first([base + ".rs", base + "/mod.rs"])
    path = imp.module.split("{", 1)[0].rstrip(":").replace(" ", "")
    parts = [p for p in path.split("::") if p]
    if not parts:
        return []
    head = parts[0]
    if head == "crate":
        base, parts = _rust_crate_root(from_path, repo), parts[1:]
    elif head == "self":
        base, parts = _rust_module_dir(from_path), parts[1:]
    elif head == "super":
        base = posixpath.dirname(_rust_module_dir(from_path))
        parts = parts[1:]
        while parts and parts[0] == "super":
            base, parts = posixpath.dirname(base), parts[1:]
    else:
        return []  # another crate
    for cut in range(len(parts), 0, -1):
        target = posixpath.join(base, *parts[:cut])
        found = repo.first([target + ".rs", target + "/mod.rs"])
        if found:
            return found
    return []


def _c_family(imp: ImportRef, from_path: str, repo: RepoFiles) -> list[str]:
    local = posixpath.normpath(posixpath.join(posixpath.dirname(from_path), imp.module))
    found = repo.first([local])
    if found:
        return found
    # An include directory: any file whose path ends with the included path, nearest to the includer first.
    name = posixpath.basename(imp.module)
    matches = [p for p in repo.by_basename.get(name, []) if p == imp.module or p.endswith("/" + imp.module)]
    if not matches:
        return []
    top = from_path.split("/", 1)[0]
    return [min(matches, key=lambda p: (p.split("/", 1)[0] != top, p.count("/"), p))]


def _csharp(imp: ImportRef, from_path: str, repo: RepoFiles) -> list[str]:
    return list(repo.by_package.get(imp.module.replace(" ", ""), []))


_RESOLVERS = {
    "python": _python,
    "java": _jvm,
    "kotlin": _jvm,
    "javascript": _javascript,
    "typescript": _javascript,
    "tsx": _javascript,
    "go": _go,
    "rust": _rust,
    "c": _c_family,
    "cpp": _c_family,
    "csharp": _csharp,
}
