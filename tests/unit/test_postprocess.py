"""Golden cases for completion modes and post-processing: the text an editor would insert, and why."""

from __future__ import annotations

import pytest

from forgepilot.assist.postprocess import infer_mode, postprocess
from forgepilot.syntax.languages import LANGUAGES

PY = LANGUAGES["python"]
TS = LANGUAGES["typescript"]
GO = LANGUAGES["go"]


@pytest.mark.parametrize(
    ("prefix", "suffix", "lang", "mode"),
    [
        ("def f(x):\n    return x +", "\n", PY, "inline"),
        ("print(", ")\n", PY, "inline"),
        ("def f(x):", "\n", PY, "in-block"),
        ("def f(x):\n    ", "\n", PY, "in-block"),
        ("def f(x):\n    y = 1\n    ", "\n", PY, "in-block"),
        ("def f(x):\n    return x\n\n", "", PY, "after-block"),
        ("", "", PY, "after-block"),
        ("function f(x) {\n  ", "\n}\n", TS, "in-block"),
        ("function f(x) {\n  return x;\n}\n\n", "", TS, "after-block"),
        ("func f() {", "\n}\n", GO, "in-block"),
    ],
)
def test_mode_is_inferred_from_the_cursor(prefix: str, suffix: str, lang: object, mode: str) -> None:
    assert infer_mode(prefix, suffix, lang) == mode  # type: ignore[arg-type]


CASES = [
    # (name, prefix, raw, suffix, mode, lang, expected text, expected reason, steps)
    (
        "inline keeps one line",
        "x = compute(",
        "1, 2)\ny = 3\n",
        ")\n",
        "inline",
        PY,
        "1, 2",
        None,
        ["inline_one_line", "suffix_repeat"],
    ),
    (
        "inline never ends with a line break",
        "if o:\n    ",
        "text = repr(o)\n",
        "\nreturn text\n",
        "inline",
        PY,
        "text = repr(o)",
        None,
        [],
    ),
    (
        "inline drops what the line already has",
        "total = add(a",
        ", b)",
        ")\n",
        "inline",
        PY,
        ", b",
        None,
        ["suffix_repeat"],
    ),
    (
        "inline drops only the brackets the line closes after it",
        "        plain_data.append((key, ",
        "primitive_value_to_str(value))",
        "))\n",
        "inline",
        PY,
        "primitive_value_to_str(value)",
        None,
        ["suffix_repeat"],
    ),
    (
        "inline keeps a bracket it closes itself before the line's own",
        "x = f(g(",
        "value)",
        ")\n",
        "inline",
        PY,
        "value)",
        None,
        [],
    ),
    (
        "in-block stops at the dedent",
        "def f(xs):\n    ",
        "total = sum(xs)\n    return total\n\ndef g():\n    pass\n",
        "\n",
        "in-block",
        PY,
        "total = sum(xs)\n    return total",
        None,
        ["block_end"],
    ),
    (
        "in-block stops at the closing brace",
        "function f(xs: number[]) {\n  ",
        "const t = xs.reduce((a, b) => a + b, 0);\n  return t;\n}\n\nfunction g() {}\n",
        "\n}\n",
        "in-block",
        TS,
        "const t = xs.reduce((a, b) => a + b, 0);\n  return t;",
        None,
        ["block_end"],
    ),
    (
        "in-block cuts at the bracket that closes the block, not an earlier balanced one",
        "function f(xs: number[]) {\n  ",
        'if (ok(xs)) { run("}"); } }\nfunction g() {}\n',
        "\n}\n",
        "in-block",
        TS,
        'if (ok(xs)) { run("}"); }',
        None,
        ["block_end"],
    ),
    (
        "in-block drops lines the suffix already holds",
        "def f(xs):\n    total = 0\n    ",
        "for x in xs:\n        total += x\n    return total\n",
        "\n    return total\n",
        "in-block",
        PY,
        "for x in xs:\n        total += x",
        None,
        ["suffix_repeat"],
    ),
    (
        "after-block keeps the first definition",
        "def f():\n    return 1\n\n\n",
        "def g():\n    return 2\n\n\ndef h():\n    return 3\n",
        "",
        "after-block",
        PY,
        "def g():\n    return 2",
        None,
        ["first_block"],
    ),
    (
        "after-block in braces",
        "func a() int {\n\treturn 1\n}\n\n",
        "func b() int {\n\treturn 2\n}\n\nfunc c() {}\n",
        "",
        "after-block",
        GO,
        "func b() int {\n\treturn 2\n}",
        None,
        ["first_block"],
    ),
    ("whitespace only", "x = ", "  \n\n", "\n", "inline", PY, "", "empty_generation", []),
    ("repeats the suffix only", "foo(", ")", ")\n", "inline", PY, "", "repeats_suffix", ["suffix_repeat"]),
    (
        "a line that breaks the parse is trimmed",
        "def f(x):\n    ",
        "y = x * 2\n    return (y",
        "\n",
        "in-block",
        PY,
        "y = x * 2",
        None,
        ["parse_trim"],
    ),
    ("nothing parses", "def f(x):\n    return ", "x +* )", "\n", "inline", PY, "", "breaks_parse", []),
    (
        # tree-sitter-python reads a header with nothing under it as an empty body, not an error; Python does not.
        "a header left without its body is trimmed",
        "def f(x):\n    return x\n\n\n",
        "def g(y):\n    z = y + 1\n    if z:",
        "\n\n\ndef h():\n    pass\n",
        "after-block",
        PY,
        "def g(y):\n    z = y + 1",
        None,
        ["parse_trim"],
    ),
    (
        "a lone header is not a completion",
        "def f(x):\n    return x\n\n\n",
        "def g(y):",
        "\n\n\ndef h():\n    pass\n",
        "after-block",
        PY,
        "",
        "breaks_parse",
        [],
    ),
    (
        "the empty body at the cursor is the one being filled",
        "def f(x):",
        "\n    if x:\n        return 1\n    return 2",
        "\n\n\ndef h():\n    pass\n",
        "in-block",
        PY,
        "\n    if x:\n        return 1\n    return 2",
        None,
        [],
    ),
    (
        "capped at max lines",
        "def f():\n    ",
        "\n    ".join(f"a{i} = {i}" for i in range(10)),
        "\n",
        "in-block",
        PY,
        "a0 = 0\n    a1 = 1\n    a2 = 2",
        None,
        ["max_lines"],
    ),
]


@pytest.mark.parametrize(
    ("prefix", "raw", "suffix", "mode", "lang", "text", "reason", "steps"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_postprocess_golden(
    prefix: str, raw: str, suffix: str, mode: str, lang: object, text: str, reason: str | None, steps: list[str]
) -> None:
    max_lines = 3 if raw.startswith("a0") else 40
    out = postprocess(raw, prefix=prefix, suffix=suffix, mode=mode, language=lang, max_lines=max_lines)  # type: ignore[arg-type]
    assert (out.text, out.reason, out.steps) == (text, reason, steps)


def test_parse_check_is_skipped_when_the_document_did_not_parse() -> None:
    # The user is mid-edit (the prefix does not parse): the completion is not blamed for the breakage.
    out = postprocess("b, c", prefix="x = f(a, ", suffix="\ny = (", mode="inline", language=PY, max_lines=1)
    assert out.text == "b, c" and out.reason is None


DOCSTRING_PREFIX = 'def add(a, b):\n    """Return a + b."""\n'


def test_in_block_after_a_docstring_stops_at_the_next_definition() -> None:
    # The cursor is at column 0 of the line after the docstring: the body is where the completion writes it.
    raw = "    total = a + b\n    return total\n\n\ndef sub(a, b):\n    return a - b\n"
    out = postprocess(raw, prefix=DOCSTRING_PREFIX, suffix="", mode="in-block", language=PY, max_lines=40)
    assert out.text == "    total = a + b\n    return total"
    assert out.steps == ["block_end"]


@pytest.mark.parametrize(
    ("text", "done"),
    [
        ("    return a + b\n", False),  # the block may go on
        ("    return a + b\n\n\nd", False),  # a partial line is not judged yet
        ("    return a + b\n\n\ndef sub(a, b):\n", True),  # a whole line left the block
        ("    return a + b", False),
    ],
)
def test_block_complete_judges_whole_lines(text: str, done: bool) -> None:
    from forgepilot.assist.postprocess import block_complete

    assert block_complete(text, prefix=DOCSTRING_PREFIX, mode="in-block", language=PY) is done
    assert block_complete(text, prefix=DOCSTRING_PREFIX, mode="inline", language=PY) is False


async def test_completion_service_stops_the_model_at_the_end_of_the_block() -> None:
    from forgepilot.assist import Assistant, CompletionInput
    from forgepilot.backends.fake import FakeBackend, fake_tokens
    from forgepilot.config import load_settings
    from forgepilot.context import Document

    reply = "    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
    backend = FakeBackend("fake:coder", replies=[reply])
    assistant = Assistant(load_settings(), workspace=None, preset={backend.name: backend})
    doc = Document.at("m.py", DOCSTRING_PREFIX, offset=len(DOCSTRING_PREFIX), language="python")
    result = await assistant.completions.complete(
        CompletionInput(document=doc, model=backend.name, mode="in-block", use_cache=False)
    )
    assert result.text == "    return a + b"
    assert result.finish_reason == "stop"
    # The model was stopped once `def sub(a, b):` was a whole line, long before the end of its reply.
    assert result.usage.completion_tokens < len(fake_tokens(reply)) // 2
    assert backend.prompts == [DOCSTRING_PREFIX]  # nothing after the cursor: left to right, no FIM tokens


@pytest.mark.parametrize(
    ("prefix", "rendered"),
    [
        # End of file at the start of a line: left to right, no FIM tokens.
        ("def f():\n", "def f():\n"),
        # End of file after indentation: FIM, so the model does not answer " return" after "    ".
        ("def f():\n    ", "<|fim_prefix|>def f():\n    <|fim_suffix|><|fim_middle|>"),
    ],
)
def test_end_of_file_rendering(prefix: str, rendered: str) -> None:
    from forgepilot.backends.fim import fim_template
    from forgepilot.context.render import render_completion

    out = render_completion(
        fim_template("qwen2.5-coder"), path="m.py", prefix=prefix, suffix="", snippets=[], comment="#", repo_name=None
    )
    text = (
        out.prompt
        if out.segments is not None or out.suffix is None
        else fim_template("qwen2.5-coder").render(out.prompt, out.suffix)
    )
    assert text.endswith(rendered) and ("<|fim_middle|>" in text) == ("<|fim_middle|>" in rendered)


async def test_the_last_space_of_typed_indentation_is_held_back_and_written_by_the_model() -> None:
    from forgepilot.assist import Assistant, CompletionInput
    from forgepilot.backends.fake import FakeBackend
    from forgepilot.config import load_settings
    from forgepilot.context import Document

    backend = FakeBackend("fake:coder", replies=[" return a + b\n"])
    assistant = Assistant(load_settings(), workspace=None, preset={backend.name: backend})
    text = "def add(a, b):\n    "
    doc = Document.at("m.py", text, offset=len(text), language="python")
    result = await assistant.completions.complete(CompletionInput(document=doc, model=backend.name, use_cache=False))
    # The prompt ends in three spaces: the model writes " return", the token it knows, not "return" after "    ".
    assert backend.prompts[0].split("<|fim_suffix|>")[0].endswith("def add(a, b):\n   ")
    assert result.text == "return a + b"  # after the four spaces already in the document


async def test_a_block_after_typed_indentation_is_not_cut_after_its_first_line() -> None:
    # The model continues "...\n   " and writes the body from there; judged after the document's "    " its first
    # line would look one space deeper than the next and generation would stop after the second line.
    from forgepilot.assist import Assistant, CompletionInput
    from forgepilot.backends.fake import FakeBackend, fake_tokens
    from forgepilot.config import load_settings
    from forgepilot.context import Document

    body = " total = a + b\n    total += 0\n    return total\n"
    reply = body + "\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n"
    backend = FakeBackend("fake:coder", replies=[reply])
    assistant = Assistant(load_settings(), workspace=None, preset={backend.name: backend})
    text = DOCSTRING_PREFIX + "    "
    doc = Document.at("m.py", text, offset=len(text), language="python")
    result = await assistant.completions.complete(
        CompletionInput(document=doc, model=backend.name, mode="in-block", use_cache=False)
    )
    assert result.text == "total = a + b\n    total += 0\n    return total"
    assert result.usage.completion_tokens < len(fake_tokens(reply)) * 3 // 4  # still stopped at `def sub`


@pytest.mark.parametrize(
    ("answer", "held", "placed"),
    [
        (" return a + b\n    x", " ", "return a + b\n    x"),  # the model wrote the held-back space
        ("return a + b\n    x", " ", "return a + b\n    x"),  # ... or went on from the prompt's spaces
        ("    text = repr(o)", " ", "text = repr(o)"),  # a deeper level: the user's wins
        ("    x = 1\n       if y:\n           z\n\n   w", " ", "x = 1\n    if y:\n        z\n\nw"),
        ("\n    x = 1", " ", "\n    x = 1"),  # began with a line break: lines stay where the model put them
        ("x = 1", "", "x = 1"),
    ],
)
def test_an_answer_is_placed_after_the_held_back_whitespace(answer: str, held: str, placed: str) -> None:
    from forgepilot.assist.completion import place_after_held_whitespace

    assert place_after_held_whitespace(answer, held) == placed


async def test_an_inline_answer_at_another_indentation_level_keeps_the_users() -> None:
    from forgepilot.assist import Assistant, CompletionInput
    from forgepilot.backends.fake import FakeBackend
    from forgepilot.config import load_settings
    from forgepilot.context import Document

    backend = FakeBackend("fake:coder", replies=["    text = repr(o)\n"])
    assistant = Assistant(load_settings(), workspace=None, preset={backend.name: backend})
    prefix = "def f(o):\n    if o:\n        "
    doc = Document.at("m.py", prefix + "\n    return text\n", offset=len(prefix), language="python")
    result = await assistant.completions.complete(
        CompletionInput(document=doc, model=backend.name, mode="inline", use_cache=False)
    )
    assert result.text == "text = repr(o)"


AREA = "\n\n\ndef area(r):\n    return math.pi * r * r\n\n\ndef total(results):\n    return sum(results)\n"


@pytest.mark.parametrize(
    ("prefix", "raw", "suffix"),
    [
        # click's Path.convert: the same call in two branches of one method (a CrossCodeEval hole, rejected before).
        (
            "    def convert(self, value):\n        if self.exists:\n            self.fail(\n                ",
            "format_filename(value)",
            "\n            )\n        if self.writable:\n            self.fail(\n"
            "                format_filename(value)\n            )\n        return value\n",
        ),
        # rich's Text.split: one return in two branches.
        (
            "    def split(self, separator):\n        if separator not in self.plain:\n            return ",
            "Lines([self.copy()])",
            "\n        if not include_separator:\n            return Lines([self.copy()])\n        lines = []\n",
        ),
    ],
)
def test_a_line_repeated_inside_the_same_definition_is_no_copy(prefix: str, raw: str, suffix: str) -> None:
    out = postprocess(raw, prefix=prefix, suffix=suffix, mode="inline", language=PY, max_lines=1)
    assert out.reason is None
    assert out.text == raw
    assert "copies_suffix" not in out.steps


def test_a_line_copied_from_the_next_method_is_cut() -> None:
    prefix = "class Shape:\n    def area(self):\n        "
    suffix = "\n\n    def scaled(self, k):\n        return self.width * self.height * k * k\n"
    out = postprocess(
        "return self.width * self.height * k * k", prefix=prefix, suffix=suffix, mode="inline", language=PY, max_lines=1
    )
    assert out.reason == "copies_suffix"


@pytest.mark.parametrize(
    ("prefix", "raw", "mode", "text", "reason"),
    [
        # The empty body of add() filled with the next function's body: a copy, not an answer.
        ("import math\n\n\ndef add(a, b):\n    ", "return math.pi * r * r\n", "in-block", "", "copies_suffix"),
        ("import math\n\n\ndef add(a, b):\n    return ", "math.pi * r * r", "inline", "", "copies_suffix"),
        # What comes before the copied line is kept.
        (
            "import math\n\n\ndef add(a, b):\n    ",
            "c = a + b\n    return math.pi * r * r\n",
            "in-block",
            "c = a + b",
            None,
        ),
        # A short, common line is no copy: many functions end with it.
        ("def add(a, b):\n    ", "results = [a, b]\n    return sum(results)\n", "in-block", None, None),
    ],
)
def test_a_line_copied_from_the_code_below_is_cut(
    prefix: str, raw: str, mode: str, text: str | None, reason: str | None
) -> None:
    out = postprocess(raw, prefix=prefix, suffix=AREA, mode=mode, language=PY, max_lines=40)  # type: ignore[arg-type]
    assert out.reason == reason
    assert out.text == (text if text is not None else raw.rstrip())
    assert ("copies_suffix" in out.steps) == (reason is not None or text == "c = a + b")


def test_a_line_that_binds_its_new_names_from_known_ones_is_no_copy() -> None:
    # attrs' _VersionInfo: __eq__ written as __lt__ below it is (a held-out hole the copy rule cut to "try:").
    prefix = "class V:\n    def _ensure_tuple(self, other):\n        pass\n\n    def __eq__(self, other):\n        "
    suffix = (
        "\n\n    def __lt__(self, other):\n        try:\n            us, them = self._ensure_tuple(other)\n"
        "        except NotImplementedError:\n            return NotImplemented\n\n        return us < them\n"
    )
    raw = (
        "try:\n            us, them = self._ensure_tuple(other)\n        except NotImplementedError:\n"
        "            return NotImplemented\n\n        return us == them"
    )
    out = postprocess(raw, prefix=prefix, suffix=suffix, mode="in-block", language=PY, max_lines=40)
    assert out.reason is None
    assert out.text == raw
    assert "copies_suffix" not in out.steps


@pytest.mark.parametrize(
    ("raw", "text", "reason"),
    [
        # The block the completion opened for the copy goes with it: "if a:" alone is never insertable.
        ("if a:\n        return math.pi * r * r\n", "", "copies_suffix"),
        ("c = a + b\n    if c:\n        return math.pi * r * r\n", "c = a + b", None),
        # A block with code of its own before the copy stays.
        ("if a:\n        c = a + b\n        return math.pi * r * r\n", "if a:\n        c = a + b", None),
        # Assigning a name is no excuse for reading one nobody defined.
        ("area = math.pi * r * r\n", "", "copies_suffix"),
    ],
)
def test_a_copied_line_is_cut_with_the_block_opened_for_it(raw: str, text: str, reason: str | None) -> None:
    prefix = "import math\n\n\ndef add(a, b):\n    "
    suffix = AREA.replace("return math.pi * r * r", "area = math.pi * r * r\n    return math.pi * r * r")
    out = postprocess(raw, prefix=prefix, suffix=suffix, mode="in-block", language=PY, max_lines=40)
    assert out.reason == reason
    assert out.text == text
    assert "copies_suffix" in out.steps
