"""FIM templates: golden prompts from the model cards, and selection by declared family only."""

from __future__ import annotations

import pytest

from forgepilot.backends.fim import RepoFile, fim_template, known_families
from forgepilot.errors import UnknownModelFamily, UserError

# Prompts exactly as the model cards print them.
QUICK_SORT_PREFIX = (
    "def quick_sort(arr):\n    if len(arr) <= 1:\n        return arr\n    pivot = arr[0]\n    left = []\n"
    "    right = []\n"
)
QUICK_SORT_SUFFIX = (
    "\n        if arr[i] < pivot:\n            left.append(arr[i])\n        else:\n            right.append(arr[i])\n"
    "    return quick_sort(left) + [pivot] + quick_sort(right)"
)

CODEGEMMA_PREFIX = (
    "import datetime\ndef calculate_age(birth_year):\n"
    '    """Calculates a person\'s age based on their birth year."""\n'
    "    current_year = datetime.date.today().year\n    "
)

GOLDEN = [
    (
        # Qwen2.5-Coder model card: "<|fim_prefix|>{prefix_code}<|fim_suffix|>{suffix_code}<|fim_middle|>"
        "qwen2.5-coder",
        QUICK_SORT_PREFIX,
        QUICK_SORT_SUFFIX,
        f"<|fim_prefix|>{QUICK_SORT_PREFIX}<|fim_suffix|>{QUICK_SORT_SUFFIX}<|fim_middle|>",
    ),
    (
        # DeepSeek-Coder model card, code insertion example.
        "deepseek-coder",
        QUICK_SORT_PREFIX,
        QUICK_SORT_SUFFIX,
        f"<｜fim▁begin｜>{QUICK_SORT_PREFIX}<｜fim▁hole｜>{QUICK_SORT_SUFFIX}<｜fim▁end｜>",
    ),
    (
        # StarCoder model card's fill-in-the-middle example.
        "starcoder",
        "def print_hello_world():\n    ",
        "\n    print('Hello world!')",
        "<fim_prefix>def print_hello_world():\n    <fim_suffix>\n    print('Hello world!')<fim_middle>",
    ),
    (
        "starcoder2",
        "def print_hello_world():\n    ",
        "\n    print('Hello world!')",
        "<fim_prefix>def print_hello_world():\n    <fim_suffix>\n    print('Hello world!')<fim_middle>",
    ),
    (
        # CodeLlama (model card / Ollama docs): "<PRE> {prefix} <SUF>{suffix} <MID>"
        "codellama",
        "def compute_gcd(x, y):",
        "return result",
        "<PRE> def compute_gcd(x, y): <SUF>return result <MID>",
    ),
    (
        # CodeGemma model card, code completion example.
        "codegemma",
        CODEGEMMA_PREFIX,
        "\n    return age",
        f"<|fim_prefix|>{CODEGEMMA_PREFIX}<|fim_suffix|>\n    return age<|fim_middle|>",
    ),
]


@pytest.mark.parametrize(("family", "prefix", "suffix", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_fim_prompt_matches_model_card(family: str, prefix: str, suffix: str, expected: str) -> None:
    assert fim_template(family).render(prefix, suffix) == expected


@pytest.mark.parametrize("family", ["plain", "gemma3", "llama3", "gpt", "qwen2.5"])
def test_left_to_right_families_drop_the_suffix(family: str) -> None:
    template = fim_template(family)
    assert not template.supports_fim
    assert template.render("def f():\n", "\nprint(f())") == "def f():\n"


@pytest.mark.parametrize("family", ["qwen-coder", "Qwen2.5-Coder", "deepseek", "", "codellama-7b"])
def test_unknown_family_fails_loudly(family: str) -> None:
    with pytest.raises(UnknownModelFamily) as info:
        fim_template(family)
    assert family in info.value.one_line() or family == ""
    assert "plain" in info.value.one_line()


def test_code_with_braces_and_placeholders_renders_verbatim() -> None:
    prefix = 'fmt = "{prefix} {suffix} {0}"\nd = {"a": 1}\n'
    suffix = "\n# <|fim_middle|> in a comment stays text here\n"
    rendered = fim_template("qwen2.5-coder").render(prefix, suffix)
    assert rendered == f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"


def test_missing_suffix_renders_empty_hole() -> None:
    assert fim_template("qwen2.5-coder").render("x = ") == "<|fim_prefix|>x = <|fim_suffix|><|fim_middle|>"


def test_qwen_repo_level_format() -> None:
    # The layout of the Qwen2.5-Coder card's repository-level example, with a FIM hole in the last file.
    files = [RepoFile("library.py", "class Book:\n    pass"), RepoFile("student.py", "class Student:\n    pass")]
    prompt = fim_template("qwen2.5-coder").render_repo("library-system", files, "main.py", "from library import ", "")
    assert prompt == (
        "<|repo_name|>library-system\n"
        "<|file_sep|>library.py\nclass Book:\n    pass\n"
        "<|file_sep|>student.py\nclass Student:\n    pass\n"
        "<|file_sep|>main.py\n"
        "<|fim_prefix|>from library import <|fim_suffix|><|fim_middle|>"
    )


def test_starcoder2_repo_level_format() -> None:
    prompt = fim_template("starcoder2").render_repo("acme/app", [RepoFile("a.py", "A = 1\n")], "b.py", "import ", "")
    assert (
        prompt
        == "<repo_name>acme/app<file_sep>a.py\nA = 1\n<file_sep>b.py\n<fim_prefix>import <fim_suffix><fim_middle>"
    )


def test_families_without_repo_format_say_so() -> None:
    with pytest.raises(UserError, match="no repository-level format"):
        fim_template("codellama").render_repo("r", [], "a.py", "x", "y")


def test_every_fim_family_declares_stop_and_special_tokens() -> None:
    for family in known_families():
        t = fim_template(family)
        if t.supports_fim:
            assert t.stop and t.special_tokens, family
            for piece in (t.open, t.between, t.close):
                assert any(tok in piece for tok in t.special_tokens), (family, piece)
