"""The context engine: similar windows against brute force, related definitions, the budget, rendering goldens."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from forgepilot.backends.fake import fake_tokens
from forgepilot.backends.fim import fim_template
from forgepilot.config import ContextSettings
from forgepilot.context import ContextBuilder, ContextResult, Document, OpenFile, take_head, take_tail
from forgepilot.context.similar import SimilarWindows
from forgepilot.index import Indexer, Workspace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = FIXTURES / "repos" / "python"
GOLDEN = FIXTURES / "golden" / "context"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def count(text: str) -> int:
    return len(fake_tokens(text))


def brute_force_best(prefix: str, text: str, window: int) -> tuple[int, float]:
    query = {t for line in prefix.splitlines()[-window:] for t in _IDENT.findall(line)}
    lines = text.splitlines()
    best, best_score = 0, -1.0
    for start in range(max(1, len(lines) - window + 1)):
        tokens = {t for line in lines[start : start + window] for t in _IDENT.findall(line)}
        score = len(tokens & query) / max(len(tokens | query), 1)
        if score > best_score:
            best, best_score = start, score
    return best, best_score


@pytest.mark.parametrize("seed", range(8))
def test_similar_windows_match_brute_force_jaccard(seed: int) -> None:
    rng = random.Random(seed)
    vocab = [f"name{i}" for i in range(40)]
    lines = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 5))) for _ in range(rng.randint(1, 120))]
    text = "\n".join(lines)
    prefix = "\n".join(" ".join(rng.choice(vocab) for _ in range(3)) for _ in range(rng.randint(1, 15)))
    window = rng.choice([5, 10, 60])
    found = SimilarWindows(window).best(prefix, [OpenFile("f.py", text)], top=1)
    start, score = brute_force_best(prefix, text, window)
    if score <= 0:
        assert found == []
        return
    assert found[0].score == pytest.approx(round(score, 4))
    # Ties may pick another window of equal score; the score of the chosen one must be the best.
    _, chosen = brute_force_best(prefix, "\n".join(lines[found[0].start_line - 1 :]), window)
    assert found[0].start_line - 1 == start or chosen == pytest.approx(score)


def test_similar_keeps_the_best_files_and_drops_weak_ones() -> None:
    prefix = "def total_price(items):\n    subtotal = sum(item.price for item in items)\n"
    files = [
        OpenFile("a.py", "def total_weight(items):\n    return sum(item.weight for item in items)\n"),
        OpenFile("b.py", "import os\nprint(os.getcwd())\n"),
        OpenFile(
            "c.py", "def total_price(items):\n    subtotal = sum(item.price for item in items)\n    return subtotal\n"
        ),
    ]
    found = SimilarWindows(60).best(prefix, files, top=4, min_score=0.1)
    assert [s.path for s in found] == ["c.py", "a.py"]
    assert found[0].score > found[1].score


def test_take_head_and_tail_respect_the_budget_on_line_boundaries() -> None:
    text = "".join(f"line_{i} = {i}\n" for i in range(200))
    for budget in (1, 7, 50, 333, 10_000):
        tail, tail_tokens = take_tail(text, budget, count)
        head, head_tokens = take_head(text, budget, count)
        assert tail_tokens == count(tail) <= budget and text.endswith(tail)
        assert head_tokens == count(head) <= budget and text.startswith(head)
        # Whole lines, and as many as fit: one more line would exceed the budget.
        assert tail == "" or tail.startswith("line_")
        assert head == "" or head.endswith("\n")
        if tail != text:
            assert count(text.splitlines(keepends=True)[-len(tail.splitlines()) - 1]) + tail_tokens > budget
    assert take_tail(text, 0, count) == ("", 0) and take_head("", 10, count) == ("", 0)


@pytest.fixture
def indexed(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=False).index(REPO)
    return ws


def checkout_doc() -> Document:
    path = REPO / "src" / "shop" / "payments" / "checkout.py"
    text = path.read_text()
    return Document.at(str(path), text, offset=text.index("subtotal + tax"))


def test_related_definitions_come_through_imports(indexed: Workspace) -> None:
    builder = ContextBuilder(indexed)
    doc = checkout_doc()
    located = builder.locate(doc)
    assert located is not None and located.path == "src/shop/payments/checkout.py" and located.file_id is not None
    assert builder.related is not None
    found = builder.related.collect(doc, located, 8)
    labels = [s.label for s in found]
    assert labels[:2] == ["Cart", "tax_cents"] and "Item" in labels
    assert all(s.score == 1.0 for s in found)  # all of them in files the document imports


def test_whole_file_context_takes_members_of_what_is_imported_not_namesakes(tmp_path: Path) -> None:
    repo = tmp_path / "repo" / "pkg"
    repo.mkdir(parents=True)
    (repo / "__init__.py").write_text("")
    (repo / "models.py").write_text(
        "class Cart:\n    def total(self) -> int:\n        return 1\n\n\n"
        "class Wrapper:\n    def label(self) -> str:\n        return 'w'\n"
    )
    use = repo / "use.py"
    use.write_text(
        "from .models import Cart\n\n\ndef show(cart: Cart, label: str) -> str:\n    return label + str(cart.total())\n"
    )
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=False).index(tmp_path / "repo")
    builder = ContextBuilder(ws)
    text = use.read_text()
    doc = Document.at(str(use), text, offset=text.index("return label"))
    located = builder.locate(doc)
    assert located is not None and builder.related is not None
    labels = [s.label for s in builder.related.collect(doc, located, 8, whole_file=True)]
    # Cart is imported and its method is called on an instance; Wrapper.label only shares a name with a parameter.
    assert "Cart" in labels and "Cart.total" in labels and "Wrapper.label" not in labels, labels


def test_a_class_too_long_to_show_whole_is_its_outline_with_the_members_the_file_calls_first(tmp_path: Path) -> None:
    repo = tmp_path / "repo" / "pkg"
    repo.mkdir(parents=True)
    (repo / "__init__.py").write_text("")
    methods = "".join(f"    def step_{i}(self, n: int) -> int:\n        return n + {i}\n\n" for i in range(10))
    (repo / "measure.py").write_text(
        'class Measurement:\n    """Widths a renderable needs.\n\n    Args:\n        minimum: the least.\n    """\n\n'
        "    def __init__(self, minimum: int, maximum: int) -> None:\n        self.minimum = minimum\n\n"
        "    def _private(self) -> None:\n        pass\n\n"
        + methods
        + "    @classmethod\n    def get(cls, console: str, renderable: str) -> 'Measurement':\n"
        + "        return cls(0, 1)\n"
    )
    use = repo / "use.py"
    use.write_text("from .measure import Measurement\n\n\ndef width(r):\n    return Measurement.get(r, r)\n")
    ws = Workspace(tmp_path / "ws")
    Indexer(ws, embeddings=False).index(tmp_path / "repo")
    builder = ContextBuilder(ws, ContextSettings(related_body_max_lines=10))
    text = use.read_text()
    doc = Document.at(str(use), text, offset=text.index("Measurement.get"))
    located = builder.locate(doc)
    assert located is not None and builder.related is not None
    (snippet,) = [s for s in builder.related.collect(doc, located, 8, whole_file=True) if s.label == "Measurement"]
    assert snippet.short_text is None  # the body is too long: the outline is all there is
    lines = snippet.text.splitlines()
    # The signature and the docstring's summary (not its Args), then the members in file order: the one the file
    # calls, the constructor, and the first others, at most six; nothing private.
    assert lines[:2] == ["class Measurement:", "    Widths a renderable needs."], lines
    members = [line.strip() for line in lines[2:]]
    assert members[0].startswith("def __init__(self, minimum: int, maximum: int)") and len(members) == 6, members
    assert members[-1].startswith("def get(cls, console: str, renderable: str)"), members
    assert [m.split("(")[0] for m in members[1:-1]] == [f"def step_{i}" for i in range(4)], members
    assert "_private" not in snippet.text and "Args" not in snippet.text


def test_budget_is_never_exceeded_and_sources_are_reported(indexed: Workspace) -> None:
    settings = ContextSettings(max_prompt_tokens=120)
    builder = ContextBuilder(indexed, settings)
    result = builder.build(
        checkout_doc(), template=fim_template("deepseek-coder"), count=count, max_context=4096, max_tokens=64
    )
    assert sum(result.tokens.values()) <= result.budget == 120
    assert result.tokens["suffix"] <= 120 * settings.suffix_share
    assert sum(result.dropped.values()) > 0  # the related bodies did not all fit
    assert {"related", "similar", "retrieved", "prefix_suffix", "budget", "render"} <= set(result.seconds)


def test_context_off_sends_prefix_and_suffix_only(indexed: Workspace) -> None:
    builder = ContextBuilder(indexed)
    result = builder.build(
        checkout_doc(),
        template=fim_template("qwen2.5-coder"),
        count=count,
        max_context=4096,
        max_tokens=64,
        enabled=False,
    )
    assert result.snippets == [] and result.format == "repo-level"


@pytest.mark.parametrize("layout", ["fim", "suffix-first"])
@pytest.mark.parametrize("family", ["qwen2.5-coder", "deepseek-coder", "starcoder2", "codellama", "plain"])
def test_rendering_per_family_golden(indexed: Workspace, family: str, layout: str) -> None:
    builder = ContextBuilder(indexed, ContextSettings(layout=layout))  # type: ignore[arg-type]
    recent = [OpenFile("notes/pricing.py", "def subtotal_of(cart):\n    subtotal = cart.total_cents()\n")]
    result = builder.build(
        checkout_doc(), template=fim_template(family), count=count, max_context=4096, max_tokens=64, recent=recent
    )
    rendered = (
        f"format: {result.format}\nraw: {result.raw}\n--- prompt ---\n{result.prompt}\n--- suffix ---\n{result.suffix}"
    )
    golden = GOLDEN / (f"{family}.txt" if layout == "fim" else f"{family}-{layout}.txt")
    if os.environ.get("FORGEPILOT_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")


def _long_checkout() -> tuple[Path, str]:
    """checkout.py with many more functions below it, as a long file being edited (not indexed as such)."""
    path = REPO / "src" / "shop" / "payments" / "checkout.py"
    more = "".join(
        f"\n\ndef fee_{i}(cart: Cart, region: str) -> int:\n    base = checkout_total(cart, region)\n"
        f"    return base * {i} // 100\n"
        for i in range(60)
    )
    return path, path.read_text() + more


def _window_start(prompt: str, text: str) -> int:
    """The line of ``text`` where the prompt's prefix window starts."""
    window = prompt[prompt.index("<|fim_prefix|>") + len("<|fim_prefix|>") :]
    return text[: text.index(window[:60])].count("\n")


def _at_line(builder: ContextBuilder, path: Path, text: str, line: int, *, warm: bool = False) -> ContextResult:
    offset = sum(len(x) + 1 for x in text.split("\n")[:line]) + 4
    doc = Document.at(str(path), text, offset=offset)
    template = fim_template("qwen2.5-coder")
    return builder.build(doc, template=template, count=count, max_context=4096, max_tokens=64, warm=warm)


def test_prompts_in_a_stretch_of_a_file_share_everything_above_the_higher_cursor(indexed: Workspace) -> None:
    builder = ContextBuilder(indexed, ContextSettings(max_prompt_tokens=700, layout="fim"))
    path, text = _long_checkout()
    results = {line: _at_line(builder, path, text, line) for line in range(120, 250, 3)}
    # The context block is chosen for the file: the same wherever the cursor is.
    first = next(iter(results.values()))
    assert first.snippets and all(r.snippets == first.snippets for r in results.values())
    starts = {line: _window_start(r.prompt, text) for line, r in results.items()}
    assert all(start % 8 == 0 for start in starts.values())
    assert len(set(starts.values())) <= (250 - 120) // 8 + 2  # 44 cursors, a handful of windows
    # The window never collapses to the cursor's line at the edge of an aligned stretch.
    assert all(line - start >= 8 for line, start in starts.items())
    lines = sorted(results)
    for low, high in zip(lines, lines[1:], strict=False):
        if starts[low] == starts[high]:
            head = results[low].prompt.split("<|fim_suffix|>")[0]
            # Everything of the higher prompt down to its cursor's line is in the lower one's.
            assert results[high].prompt.startswith(head[: head.rindex("\n")])


def test_the_warm_start_is_what_prompts_in_the_window_begin_with(indexed: Workspace) -> None:
    builder = ContextBuilder(indexed, ContextSettings(max_prompt_tokens=700, layout="fim"))
    path, text = _long_checkout()
    opened = _at_line(builder, path, text, 150, warm=True)
    assert opened.warm is not None and opened.warm[-1].control is False
    warm = "".join(s.text for s in opened.warm)
    start = _window_start(opened.prompt, text)
    shared = 0
    for line in range(150, 200):
        result = _at_line(builder, path, text, line)
        if _window_start(result.prompt, text) != start:
            continue
        shared += 1
        head = result.prompt.split("<|fim_suffix|>")[0]
        assert warm.startswith(head[: head.rindex("\n")]), line  # all but the cursor's own line
    assert shared >= 6  # the warm covers the rest of its stretch of the file (150 is in the middle of one)
    # A suffix-first prompt is what the next keystrokes at its spot append to: its warm is all of it.
    other = ContextBuilder(indexed, ContextSettings(layout="suffix-first"))
    here = _at_line(other, path, text, 150, warm=True)
    assert here.warm is not None and "".join(s.text for s in here.warm) == here.prompt
