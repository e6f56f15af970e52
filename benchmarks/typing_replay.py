"""Typing replay: the real edits of a repository's recent commits typed again against the serving path.

For each recent commit (no merges) that adds source lines, the repository is checked out at the commit's parent and
indexed (incrementally: consecutive commits re-index a few files), so context never holds the code being typed.
Each added block (a diff hunk, up to ``--max-chars``) is then typed into the commit's version of its file (with the
block taken out), in real time: the editor opens the file (the LSP server's ``didOpen`` warms the model's cache,
``--open-s`` before the typist reaches the spot), the typist types ``--cps`` characters a second, and where they
pause (after a space, a bracket, a dot, a comma, an operator or a line break) the LSP client's debounce
(``--debounce-ms``) turns the pause into a request, which the typist waits for. The part of a suggestion that the
typist then types (cut at a word's end) is accepted: its characters are saved and skipped. Background work
(warming) runs while the typist types, as it would in an editor.

Reports per model tier, with and without repository context: latency p50 / p95 after a keystroke, the first
request at a new spot (cold), and characters saved per 100 typed. Latencies are the serving path's own
(context, model, post-processing), from the request to its answer, on this machine.

    python benchmarks/typing_replay.py --repo PATH [--commits 40] [--hunks 20] [--max-chars 240]
                                [--models M1,M2] [--context both|on|off] [--cps 5] [--debounce-ms 75]
                                [--open-s 2] [--label NAME] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = (".py", ".js", ".ts", ".go", ".java")
PAUSES = set(" \t\n(.,=:[{")
_WORD_END = re.compile(r"\W")
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass
class Hunk:
    commit: str
    parent: str
    path: str
    before: str  # the commit's file up to the block
    block: str  # the lines the commit added there, as typed
    after: str  # the rest of the commit's file


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def hunks_of(repo: Path, commits: int, limit: int, max_chars: int) -> list[Hunk]:
    """Added blocks of the ``commits`` most recent commits, newest first, up to ``limit`` (tests left out)."""
    out: list[Hunk] = []
    for commit in git(repo, "log", "--no-merges", f"-{commits}", "--format=%H").split():
        parents = git(repo, "log", "-1", "--format=%P", commit).split()
        if len(parents) != 1:
            continue
        diff = git(repo, "diff", "-U0", "--no-color", parents[0], commit, "--", *(f"*{e}" for e in EXTENSIONS))
        for section in re.split(r"(?m)^(?=diff --git )", diff):
            m = re.search(r"(?m)^\+\+\+ b/(.+)$", section)
            if not m or "/test" in f"/{m.group(1)}" or not m.group(1).endswith(EXTENSIONS):
                continue
            path = m.group(1)
            lines = git(repo, "show", f"{commit}:{path}").split("\n")
            for hm in re.finditer(_HUNK.pattern, section, re.M):
                start, count = int(hm.group(1)) - 1, int(hm.group(2) or 1)
                full = "\n".join(lines[start : start + count])
                if count == 0 or len(full.strip()) < 20:
                    continue
                block = full[:max_chars]
                before = "".join(line + "\n" for line in lines[:start])
                rest = lines[start + count :]
                # What the cut at max_chars leaves of the block stays in the file, untyped.
                after = full[len(block) :] + ("\n" + "\n".join(rest) if rest else "")
                out.append(Hunk(commit, parents[0], path, before, block, after))
                if len(out) >= limit:
                    return out
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))], 4)


@dataclass
class Tally:
    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    typed: int = 0
    saved: int = 0
    accepted: int = 0
    whole: int = 0
    #: Requests answered from the short in-file prompt (``cold_start``), and those whose prompt held repository
    #: context (any snippet): whether "context on" was in use while typing.
    short: int = 0
    with_context: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "requests": len(self.cold) + len(self.warm),
            "accepted": self.accepted,
            "accepted_whole": self.whole,
            "latency_p50_s": percentile(self.warm, 50),
            "latency_p95_s": percentile(self.warm, 95),
            "cold_p50_s": percentile(self.cold, 50),
            "cold_p95_s": percentile(self.cold, 95),
            "chars_typed": self.typed,
            "chars_saved": self.saved,
            "saved_per_100_typed": round(100 * self.saved / max(self.typed, 1), 2),
            "answered_short": self.short,
            "answered_with_context": self.with_context,
        }


def open_files(tree: Path, path: str) -> list[Any]:
    """What an editor would have open beside the file: the other files of its folder (up to five)."""
    from forgepilot.context import OpenFile

    here = tree / path
    siblings = sorted(p for p in here.parent.glob(f"*{here.suffix}") if p.name != here.name)[:5]
    return [OpenFile(str(p), p.read_text(encoding="utf-8", errors="replace")) for p in siblings]


def accepted_part(suggestion: str, upcoming: str) -> int:
    """How much of ``suggestion`` the typist takes: all of it when they type all of it next, else the part they
    then type, up to the end of its last whole word (an editor's accept-word), when that is 3 characters or more."""
    if upcoming.startswith(suggestion):
        return len(suggestion)
    n = 0
    while n < min(len(suggestion), len(upcoming)) and suggestion[n] == upcoming[n]:
        n += 1
    while n > 0 and not _WORD_END.match(suggestion[n]) and not _WORD_END.match(suggestion[n - 1]):
        n -= 1  # inside a word: back to its start
    return n if n >= 3 else 0


async def replay(
    assistant: Any, hunks: list[Hunk], tree: Path, model: str, context: bool, tally: Tally, pace: Pace
) -> None:
    """Type each hunk in real time, asking at every pause; accept what of a suggestion the typist then types."""
    from forgepilot.assist import CompletionInput
    from forgepilot.context import Document

    opened: set[str] = set()
    for hunk in hunks:
        recent = open_files(tree, hunk.path)
        target = hunk.block
        path = str(tree / hunk.path)
        if path not in opened and pace.open_s > 0:
            opened.add(path)
            # The editor opens the file (LSP didOpen: the server warms the cache at the top of the file) and the
            # typist moves to the spot.
            warm = getattr(assistant.completions, "warm_later", None)
            if warm is not None and context:
                doc = Document.at(path, hunk.before + hunk.after, offset=0)
                warm(CompletionInput(document=doc, recent=recent, model=model, context=context))
            await asyncio.sleep(pace.open_s)
        i, first = 0, True
        while i < len(target):
            await asyncio.sleep(pace.debounce_s)
            doc = Document.at(path, hunk.before + target[:i] + hunk.after, offset=len(hunk.before) + i)
            t = time.perf_counter()
            result = await assistant.completions.complete(
                CompletionInput(document=doc, recent=recent, model=model, context=context)
            )
            (tally.cold if first else tally.warm).append(time.perf_counter() - t)
            first = False
            tally.short += "cold_start" in result.steps
            tally.with_context += bool(result.snippets)
            taken = accepted_part(result.text, target[i:]) if result.text else 0
            if taken:
                tally.accepted += 1
                tally.whole += taken == len(result.text)
                tally.saved += taken
                i += taken
                continue
            j = i + 1  # the typist types on to the next pause
            while j < len(target) and target[j - 1] not in PAUSES:
                j += 1
            tally.typed += j - i
            await asyncio.sleep((j - i) / pace.cps)
            i = j


@dataclass(frozen=True)
class Pace:
    cps: float = 5.0
    debounce_s: float = 0.075
    open_s: float = 2.0


def run(settings: Any, hunks: list[Hunk], tree: Path, model: str, context: bool, pace: Pace) -> dict[str, Any]:
    from forgepilot.assist import Assistant
    from forgepilot.index import Indexer, Workspace

    tally = Tally()
    started = time.perf_counter()
    workspace = Workspace(settings.state_dir / "index")

    async def session() -> None:  # one event loop: background warming lives across the commits
        assistant = Assistant(settings, workspace=workspace)
        try:
            for parent in dict.fromkeys(h.parent for h in hunks):
                subprocess.run(["git", "-C", str(tree), "checkout", "-q", "--force", parent], check=True)
                Indexer(workspace, embeddings=False).index(tree)  # the parent's code: never the lines being typed
                await replay(assistant, [h for h in hunks if h.parent == parent], tree, model, context, tally, pace)
        finally:
            await assistant.aclose()

    try:
        asyncio.run(session())
    finally:
        shutil.rmtree(settings.state_dir / "index", ignore_errors=True)
    return {"model": model, "context": context, **tally.record(), "wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="a git repository that is not ours")
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--hunks", type=int, default=20)
    parser.add_argument("--max-chars", type=int, default=240)
    parser.add_argument("--models", default="")
    parser.add_argument("--context", choices=("both", "on", "off"), default="both")
    parser.add_argument("--cps", type=float, default=5.0, help="characters the typist types a second")
    parser.add_argument("--debounce-ms", type=float, default=75.0, help="the LSP client's debounce")
    parser.add_argument("--open-s", type=float, default=2.0, help="seconds from opening a file to typing in it")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="a setting for every run, e.g. context.layout='\"suffix-first\"' (JSON values; repeatable)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/typing_replay.json")
    args = parser.parse_args()

    from forgepilot.config import load_settings

    hunks = hunks_of(args.repo, args.commits, args.hunks, args.max_chars)
    settings = load_settings()
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        section, _, name = key.partition(".")
        setattr(settings, section, getattr(settings, section).model_copy(update={name: json.loads(value)}))
    models = [m for m in args.models.split(",") if m] or [settings.assist.fast or settings.default_model]
    contexts = {"both": (True, False), "on": (True,), "off": (False,)}[args.context]
    result: dict[str, Any] = {
        "label": args.label,
        "repository": str(args.repo),
        "head": git(args.repo, "rev-parse", "HEAD").strip(),
        "commits": list(dict.fromkeys(h.commit for h in hunks)),
        "hunks": [{"commit": h.commit[:12], "path": h.path, "chars": len(h.block)} for h in hunks],
        "cpus": os.cpu_count(),
        "settings": args.set,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="fp-bench-typing-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(args.repo), str(tree)], check=True)
        models_dir = settings.models_dir
        settings.state_dir = Path(tmp) / "fp"
        settings.state_dir.mkdir()
        (settings.state_dir / "models").symlink_to(models_dir, target_is_directory=True)
        pace = Pace(args.cps, args.debounce_ms / 1000, args.open_s)
        result["pace"] = {"cps": pace.cps, "debounce_s": pace.debounce_s, "open_s": pace.open_s}
        for model in models:
            for context in contexts:
                result["runs"].append(run(settings, hunks, tree, model, context, pace))
    print(f"\ntyping replay: {len(hunks)} blocks ({sum(len(h.block) for h in hunks)} chars) from "
          f"{len(result['commits'])} commits of {args.repo}")  # fmt: skip
    print(
        f"{'model':<30}{'context':>8}{'p50 s':>8}{'p95 s':>8}{'cold s':>8}{'saved/100':>10}{'requests':>9}"
        f"{'short':>7}{'w/ ctx':>8}"
    )
    for r in result["runs"]:
        print(
            f"{r['model']:<30}{'on' if r['context'] else 'off':>8}{r['latency_p50_s'] or 0:>8.3f}"
            f"{r['latency_p95_s'] or 0:>8.3f}{r['cold_p50_s'] or 0:>8.3f}{r['saved_per_100_typed']:>10}"
            f"{r['requests']:>9}{r['answered_short']:>7}{r['answered_with_context']:>8}"
        )
    print("goals: p50 <= 0.6 s, p95 <= 2 s, cold <= 4 s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
