"""Commit-message instances from git history: the diff of a commit -> the message its author wrote.

Merges, bot authors (dependabot, renovate, CI accounts, ``[bot]``) and trivial messages ("wip", "fix", "update",
"typo", a version bump alone) are filtered, each counted by reason; a diff over the size limit is rejected too.
The prompt is the ``commit`` chat task's own template.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from forgepilot.config import DatasetSettings
from forgepilot.datagen.types import Instance, Rejections
from forgepilot.prompts import PromptRegistry

_BOT = re.compile(r"\[bot\]|dependabot|renovate|github-actions|greenkeeper|snyk-bot|pre-commit-ci|\bbot@", re.I)
_TRIVIAL = re.compile(
    r"^(wip|fix|fixes|fixed|update|updates|updated|typo|minor|cleanup|misc|changes|stuff|tmp|test|tests|\.+|"
    r"v?\d+(\.\d+)*|bump( version)?( to)? v?[\d.]+|initial commit|first commit|merge.*)[.!]?$",
    re.I,
)
_SEP = "\x1e"  # record separator between commits in `git log` output
_FIELD = "\x1f"


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, errors="replace", check=False, timeout=120
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[:300] or f"git {args[0]} failed")
    return out.stdout


def head_commit(root: Path) -> tuple[str | None, bool]:
    """The repository's HEAD commit and whether the working tree has changes (None outside git)."""
    try:
        head = _git(root, "rev-parse", "HEAD").strip()
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return None, False
    return head, dirty


def commit_instances(
    root: Path,
    repository: str,
    settings: DatasetSettings,
    prompts: PromptRegistry,
    rejected: Rejections,
    scrub: object = None,
) -> Iterator[Instance]:
    if settings.commits <= 0 or not (root / ".git").exists():
        return
    try:
        log = _git(
            root,
            "log",
            f"--max-count={settings.commits}",
            f"--format={_SEP}%H{_FIELD}%P{_FIELD}%an{_FIELD}%ae{_FIELD}%B",
        )
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        return
    for record in log.split(_SEP)[1:]:
        parts = record.split(_FIELD, 4)
        if len(parts) < 5:
            continue
        sha, parents, author, email, message = parts
        message = message.strip()
        subject = message.split("\n", 1)[0].strip()
        if len(parents.split()) > 1 or subject.lower().startswith("merge "):
            rejected.add("commit:merge", "commit")
            continue
        if _BOT.search(author) or _BOT.search(email):
            rejected.add("commit:bot", "commit")
            continue
        if len(subject) < settings.commit_min_message_chars or _TRIVIAL.match(subject):
            rejected.add("commit:trivial_message", "commit")
            continue
        if not parents.strip():
            rejected.add("commit:root", "commit")  # the first commit's "diff" is the whole tree
            continue
        try:
            diff = _git(root, "show", "--format=", "--no-color", "--no-ext-diff", "--unified=3", sha)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            rejected.add("commit:unreadable", "commit")
            continue
        if not diff.strip():
            rejected.add("commit:empty_diff", "commit")
            continue
        if len(diff) > settings.commit_max_diff_chars:
            rejected.add("size:diff_chars", "commit")
            continue
        if "Binary files" in diff and diff.count("\n") < 5:
            rejected.add("commit:binary_only", "commit")
            continue
        paths = list(dict.fromkeys(re.findall(r"^\+\+\+ b/(.+)$", diff, re.MULTILINE)))
        rendered = prompts.render("commit", {"diff": diff.rstrip("\n")})
        yield Instance(
            kind="commit",
            language="diff",
            repository=repository,
            path=paths[0] if paths else "",
            start_line=0,
            end_line=0,
            system=rendered.system or "",
            prompt=rendered.user,
            completion=message,
            template=rendered.record(),
            related_paths=paths[1:],
            source_commit=sha,
            unit=diff,
            meta={"files": len(paths)},
        ).finish()
