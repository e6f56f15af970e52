"""``forgepilot dataset build``: repositories in, a clean, split, formatted dataset and its card out.

Stages: index (so related and retrieved context come from the same index as serving), licence, scan (file gates:
size, vendored, generated, minified, binary), per file: redact -> parse -> build instances -> gates; then commits
from history; then over the whole set: secret scrub of the final texts, dedup, decontamination, token gate, splits,
formats, card.

Per-file work runs here, or on a Ray cluster (``fanout``), and is journaled (``OUT/.work/journal.jsonl``: one line
per file holding its instances and rejections), so an interrupted build resumes where it stopped, and a file that
fails is recorded with its error and the build goes on.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from forgepilot.config import Settings
from forgepilot.context import ContextBuilder
from forgepilot.datagen import builders, card, history
from forgepilot.datagen.crossfile import CROSSFILE_KINDS, crossfile
from forgepilot.datagen.formats import FORMATS, write_all
from forgepilot.datagen.hygiene import StageTimer, clean
from forgepilot.datagen.licences import detect as detect_licence
from forgepilot.datagen.pairs import is_test_file, test_pairs
from forgepilot.datagen.secrets import Redactor
from forgepilot.datagen.source import SourceFile
from forgepilot.datagen.types import DEFAULT_KINDS, KINDS, Instance, Rejections
from forgepilot.errors import UserError
from forgepilot.index.indexer import Indexer, Workspace
from forgepilot.index.scan import Candidate, ScanSettings, Skipped, content_skip, scan
from forgepilot.syntax.imports import RepoFiles

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)
JOURNAL = ".work/journal.jsonl"


@dataclass
class BuildOptions:
    out: Path
    kinds: Sequence[str] = DEFAULT_KINDS
    formats: Sequence[str] = FORMATS
    suites: Sequence[Path] = ()
    resume: bool = True
    max_files: int | None = None  # per repository (benchmarks and trials)
    measure_memory: bool = False


@dataclass
class BuildReport:
    out: Path
    instances: int
    rejections: Rejections
    failures: list[dict[str, str]]
    files: dict[str, Path]
    seconds: dict[str, float]
    counts: dict[str, dict[str, int]]
    resumed_files: int = 0
    peak_memory_mib: float | None = None
    card: dict[str, Any] = field(default_factory=dict)


@dataclass
class FileResult:
    """What one file gave: its instances, its rejections, its error; from a worker elsewhere also the secret values
    it found (the build scrubs them from every text) and its seconds per stage."""

    instances: list[Instance]
    rejections: Rejections
    error: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def journal(self, repo_name: str, cand: Candidate) -> dict[str, Any]:
        return {
            "repository": repo_name,
            "path": cand.path,
            "mtime_ns": cand.mtime_ns,
            "instances": [m.record() | {"unit": m.unit} for m in self.instances],
            "rejections": self.rejections.by_kind,
            "error": self.error,
        }


class FileFanout(Protocol):
    """Builds files elsewhere (a Ray cluster) and yields each one's result as it finishes."""

    def files(
        self, root: Path, repo_name: str, todo: Sequence[tuple[int, Candidate]], max_files: int | None,
        kinds: Sequence[str],
    ) -> Iterator[tuple[int, Candidate, FileResult]]: ...  # fmt: skip


class DatasetBuilder:
    def __init__(
        self,
        settings: Settings,
        workspace: Workspace,
        kit_factory: Callable[[ContextBuilder], builders.RenderKit],
        eos: str,
        progress: StageProgress | None = None,
        fanout: FileFanout | None = None,
    ) -> None:
        self.settings = settings
        self.ds = settings.dataset
        self.workspace = workspace
        self.context = ContextBuilder(workspace, settings.context)
        self.kit = kit_factory(self.context)
        self.eos = eos
        self.progress = progress or (lambda stage, done, total: None)
        #: Where files are built when not here (``datagen.ray_fanout``); the rest of the build stays here.
        self.fanout = fanout

    # -- per repository --------------------------------------------------------------------------------------
    def scan_settings(self) -> ScanSettings:
        return ScanSettings(max_file_bytes=self.ds.max_file_bytes, max_line_chars=self.settings.index.max_line_chars)

    def _index(self, root: Path, timer: StageTimer) -> None:
        with timer.stage("index"):
            Indexer(
                self.workspace,
                embeddings=self.settings.context.retrieved_vectors,
                scan_settings=ScanSettings(
                    max_file_bytes=self.settings.index.max_file_bytes,
                    max_line_chars=self.settings.index.max_line_chars,
                ),
                chunk_target=self.settings.index.chunk_target,
                chunk_hard_max=self.settings.index.chunk_hard_max,
            ).index(root)

    def build(self, roots: Sequence[Path], options: BuildOptions) -> BuildReport:
        unknown = sorted(set(options.kinds) - set(KINDS))
        if unknown:
            raise UserError(f"unknown instance kinds {unknown}", hint=f"choose from: {', '.join(KINDS)}")
        for root in roots:
            if not root.is_dir():
                raise UserError(f"{root} is not a directory", hint="pass repository folders")
        timer = StageTimer()
        if options.measure_memory:
            tracemalloc.start()
        out = options.out
        out.mkdir(parents=True, exist_ok=True)
        journal_path = out / JOURNAL
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        done: dict[tuple[str, str], dict[str, Any]] = {}
        if options.resume and journal_path.exists():
            done = _read_journal(journal_path)
        elif journal_path.exists():
            journal_path.unlink()
        redactor = Redactor()
        rejected = Rejections()
        failures: list[dict[str, str]] = []
        instances: list[Instance] = []
        lineage: list[dict[str, Any]] = []
        kinds = set(options.kinds)
        resumed = 0
        with journal_path.open("a", encoding="utf-8") as journal:
            for root in roots:
                root = root.resolve()
                self._index(root, timer)
                repo_name = root.name
                licence, licence_file = detect_licence(root)
                commit, dirty = history.head_commit(root)
                lineage.append(
                    {"repository": repo_name, "root": str(root), "commit": commit, "dirty": dirty, "licence": licence}
                )
                with timer.stage("scan"):
                    entries = list(scan(root, self.scan_settings()))
                candidates = [e for e in entries if isinstance(e, Candidate)]
                if options.max_files is not None:
                    candidates = candidates[: options.max_files]
                if licence not in self.ds.licence_allow:
                    rejected.add(f"licence:{licence}", "file", len(candidates))
                    continue
                for e in entries:
                    if isinstance(e, Skipped) and e.reason != "unsupported":
                        rejected.add(f"file:{e.reason}", "file")
                per_file: dict[int, list[Instance]] = {}
                todo: list[tuple[int, Candidate]] = []
                for i, cand in enumerate(candidates):
                    previous = done.get((repo_name, cand.path))
                    if previous is not None and previous.get("mtime_ns") == cand.mtime_ns:
                        resumed += 1
                        per_file[i] = [Instance.from_record(r) for r in previous["instances"]]
                        rejected.merge(_rejections(previous["rejections"]))
                        if previous.get("error"):
                            failures.append({"path": f"{repo_name}/{cand.path}", "error": previous["error"]})
                    else:
                        todo.append((i, cand))
                finished = len(candidates) - len(todo)
                self.progress(f"files {repo_name}", finished, len(candidates))
                results = (
                    self.fanout.files(root, repo_name, todo, options.max_files, sorted(kinds))
                    if self.fanout is not None
                    else self._files_here(root, repo_name, todo, candidates, redactor, kinds, timer)
                )
                for i, cand, result in results:
                    per_file[i] = result.instances
                    rejected.merge(result.rejections)
                    redactor.learn(result.secrets)
                    for stage, seconds in result.seconds.items():
                        timer.seconds[stage] = timer.seconds.get(stage, 0.0) + seconds
                    if result.error:
                        failures.append({"path": f"{repo_name}/{cand.path}", "error": result.error})
                    journal.write(json.dumps(result.journal(repo_name, cand), ensure_ascii=False) + "\n")
                    journal.flush()
                    finished += 1
                    self.progress(f"files {repo_name}", finished, len(candidates))
                # In the scan's order, however the files finished: the same dataset from a local or a fanned-out run.
                for i in sorted(per_file):
                    instances += per_file[i]
                if "commit" in kinds:
                    with timer.stage("history"):
                        for inst in history.commit_instances(root, repo_name, self.ds, self.kit.prompts, rejected):
                            inst.tokens = (
                                self.kit.count(inst.system)
                                + self.kit.count(inst.prompt)
                                + self.kit.count(inst.completion)
                            )
                            instances.append(inst)
                lineage[-1]["licence_file"] = licence_file
        instances = self._finish(instances, options, rejected, redactor, timer)
        with timer.stage("write"):
            files = write_all(instances, out, formats=options.formats, eos=self.eos)
        peak = None
        if options.measure_memory:
            peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
            tracemalloc.stop()
        report = BuildReport(
            out=out,
            instances=len(instances),
            rejections=rejected,
            failures=failures,
            files=files,
            seconds=timer.seconds,
            counts=card.counts(instances),
            resumed_files=resumed,
            peak_memory_mib=peak,
        )
        report.card = card.write_card(
            out, instances, report, settings=self.ds, lineage=lineage, family=self.kit.template.family
        )
        return report

    def _files_here(
        self,
        root: Path,
        repo_name: str,
        todo: Sequence[tuple[int, Candidate]],
        candidates: Sequence[Candidate],
        redactor: Redactor,
        kinds: set[str],
        timer: StageTimer,
    ) -> Iterator[tuple[int, Candidate, FileResult]]:
        """Each file of ``todo`` built in this process (with the build's own redactor and timer)."""
        paths = RepoFiles(c.path for c in candidates)
        load = self.loader(root, repo_name, redactor)
        for i, cand in todo:
            yield i, cand, self.file_result(root, repo_name, cand, paths, load, redactor, kinds, timer)

    def file_result(
        self,
        root: Path,
        repo_name: str,
        cand: Candidate,
        paths: RepoFiles,
        load: Callable[[str], SourceFile | None],
        redactor: Redactor,
        kinds: set[str],
        timer: StageTimer,
    ) -> FileResult:
        """One file's instances and rejections; a failure is the file's result (the build goes on)."""
        file_rejected = Rejections()
        try:
            made = self._file(root, repo_name, cand, paths, load, redactor, kinds, file_rejected, timer)
        except Exception as exc:
            return FileResult([], file_rejected, f"{type(exc).__name__}: {exc}")
        return FileResult(made, file_rejected)

    def loader(self, root: Path, repo_name: str, redactor: Redactor) -> Callable[[str], SourceFile | None]:
        """Files a test file points at (its focal files), loaded on demand and kept in a small cache."""
        cache: dict[str, SourceFile | None] = {}

        def load(path: str) -> SourceFile | None:
            if path not in cache:
                cache[path] = self._load(root, repo_name, path, redactor)
                if len(cache) > 256:
                    cache.pop(next(iter(cache)))
            return cache[path]

        return load

    def _load(self, root: Path, repo_name: str, path: str, redactor: Redactor) -> SourceFile | None:
        from forgepilot.syntax.languages import detect_language

        language = detect_language(path)
        if language is None or language.grammar is None:
            return None
        try:
            data = (root / path).read_bytes()
        except OSError:
            return None
        if len(data) > self.ds.max_file_bytes or content_skip(data, self.scan_settings()) is not None:
            return None
        text = data.decode("utf-8", errors="replace")
        if self.ds.redact_secrets:
            text = redactor.redact(text).text
        return SourceFile.read(repo_name, root, path, text, language)

    def _file(
        self,
        root: Path,
        repo_name: str,
        cand: Candidate,
        files: RepoFiles,
        load: Callable[[str], SourceFile | None],
        redactor: Redactor,
        kinds: set[str],
        rejected: Rejections,
        timer: StageTimer,
    ) -> list[Instance]:
        if cand.language.grammar is None:
            return []
        data = (root / cand.path).read_bytes()
        skip = content_skip(data, self.scan_settings())
        if skip is not None:
            rejected.add(f"file:{skip[0]}", "file")
            return []
        with timer.stage("redact"):
            text = data.decode("utf-8", errors="replace")
            if "\ufffd" in text and b"\xef\xbf\xbd" not in data:
                rejected.add("file:undecodable", "file")
                return []
            if self.ds.redact_secrets:
                text = redactor.redact(text).text
        with timer.stage("parse"):
            sf = SourceFile.read(repo_name, root, cand.path, text, cand.language)
        if sf.syntax.has_errors:
            rejected.add("file:parse_errors", "file")
            return []
        out: list[Instance] = []
        kit = self.kit
        test_file = is_test_file(cand.path, cand.language.name)

        def run(kind: str, made: Iterable[Instance]) -> None:
            # Builders are generators: the time of a kind is the time to draw its instances.
            with timer.stage(f"build:{kind}"):
                out.extend(made)

        if test_file:
            if "tests" in kinds:
                run("tests", test_pairs(sf, files, load, kit, rejected))
        else:
            if "inline" in kinds:
                run("inline", builders.inline(sf, kit, rejected))
            if "in_block" in kinds:
                run("in_block", builders.in_block(sf, kit, rejected))
            if "after_block" in kinds:
                run("after_block", builders.after_block(sf, kit, rejected))
            if kinds & set(CROSSFILE_KINDS):
                run("crossfile", crossfile(sf, files, load, kit, rejected, kinds))
            doc_kinds = kinds & {"code_to_doc", "doc_to_code"}
            if doc_kinds:
                run("documentation", builders.documentation(sf, kit, rejected, doc_kinds))
        return out

    # -- over the whole set ----------------------------------------------------------------------------------
    def _finish(
        self,
        instances: list[Instance],
        options: BuildOptions,
        rejected: Rejections,
        redactor: Redactor,
        timer: StageTimer,
    ) -> list[Instance]:
        return clean(instances, self.ds, rejected, redactor=redactor, suites=options.suites, timer=timer)


def _read_journal(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    done: dict[tuple[str, str], dict[str, Any]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line an interrupted build was writing
            done[(row["repository"], row["path"])] = row
    return done


def _rejections(by_kind: dict[str, dict[str, int]]) -> Rejections:
    r = Rejections()
    for kind, reasons in by_kind.items():
        for reason, n in reasons.items():
            r.add(reason, kind, n)
    return r


def open_builder(
    settings: Settings,
    model: str | None = None,
    progress: StageProgress | None = None,
    fanout: FileFanout | None = None,
) -> DatasetBuilder:
    """A builder that renders for ``model`` (default: the completion tier's model) with its own tokenizer."""
    from forgepilot.backends.fim import FimTemplate, fim_template
    from forgepilot.backends.resolve import open_backend
    from forgepilot.prompts import builtin_registry

    name = model or settings.assist.fast or settings.default_model
    backend = open_backend(name, settings)
    template = getattr(backend, "template", None)
    if not isinstance(template, FimTemplate):
        template = fim_template("plain")
    workspace = Workspace(settings.state_dir / "index")

    def kit(context: ContextBuilder) -> builders.RenderKit:
        return builders.RenderKit(
            builder=context,
            template=template,
            count=backend.token_counter(),
            max_context=backend.max_context,
            prompts=builtin_registry(),
            assist=settings.assist,
            settings=settings.dataset,
        )

    eos = template.stop[0] if template.stop else ""
    return DatasetBuilder(settings, workspace, kit, eos, progress, fanout)
