"""Properties of chunking, parsing and scanning on arbitrary input (hypothesis)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forgepilot.index.scan import ScanSettings, content_skip, scan
from forgepilot.syntax import LANGUAGES, PARSED_LANGUAGES, analyze
from forgepilot.syntax.chunking import chunk_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "repos"
CODE_LINES = st.sampled_from(
    [
        "def f(x):", "    return x", "class A(B):", "    def m(self):", "        pass", "", "# comment",
        "import os", "x = [1, 2, 3]", "if x:", "    y = {'a': (1, 2)}", "}", "{", "fn main() {", "  let a = 1;",
        "public class C {", "  int f() { return 1; }", "/* block */", "    " * 6 + "deep = True", "é = 'ünïcode'",
        "x" * 700, "\t\tmixed\ttabs", '"""docstring"""', "s = '''", "'''",
    ]
)  # fmt: skip
SOURCES = st.lists(CODE_LINES, max_size=120).map("\n".join) | st.text(max_size=3000)


def check_chunks(text: str, language_name: str | None, target: int, hard_max: int) -> None:
    language = LANGUAGES[language_name] if language_name else None
    chunks = chunk_text(text, language, target=target, hard_max=hard_max)
    assert "".join(c.text for c in chunks) == text  # contiguous, ordered, complete
    line_count = text.count("\n") + 1
    previous_end = 0
    for c in chunks:
        assert c.text  # no empty chunks
        assert c.start_char == previous_end and c.end_char > c.start_char
        previous_end = c.end_char
        assert len(c.text) <= hard_max
        assert 1 <= c.start_line <= c.end_line <= line_count
        assert c.start_line == text.count("\n", 0, c.start_char) + 1
        assert c.end_line == text.count("\n", 0, c.end_char - 1) + 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=SOURCES,
    language=st.sampled_from([*PARSED_LANGUAGES, None]),
    target=st.integers(min_value=40, max_value=1600),
    extra=st.integers(min_value=0, max_value=1600),
)
def test_chunks_cover_the_file_and_respect_the_hard_maximum(
    text: str, language: str | None, target: int, extra: int
) -> None:
    check_chunks(text, language, target, target + extra)


def test_chunks_of_every_fixture_file() -> None:
    for path in FIXTURES.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for target in (60, 300, 1500):
                from forgepilot.syntax import detect_language

                lang = detect_language(path)
                check_chunks(text, lang.name if lang else None, target, target * 2)


@settings(max_examples=120, deadline=None)
@given(data=st.binary(max_size=4000), language=st.sampled_from(PARSED_LANGUAGES))
def test_random_bytes_never_crash_the_parser(data: bytes, language: str) -> None:
    text = data.decode("utf-8", errors="replace")
    result = analyze(text.encode("utf-8"), LANGUAGES[language])
    for s in result.symbols:
        assert 1 <= s.start_line <= s.end_line
    check_chunks(text, language, 200, 400)


@settings(max_examples=60, deadline=None)
@given(
    files=st.dictionaries(st.sampled_from(["a.py", "b.go", "c.txt", "d", "e.rs", "f.bin"]), st.binary(max_size=3000))
)
def test_random_files_never_crash_the_scanner(files: dict[str, bytes]) -> None:
    import tempfile

    root = Path(tempfile.mkdtemp())
    for name, data in files.items():
        (root / name).write_bytes(data)
    entries = list(scan(root, ScanSettings()))
    assert {e.path for e in entries} == set(files)
    for data in files.values():
        content_skip(data, ScanSettings())  # must classify, never raise
