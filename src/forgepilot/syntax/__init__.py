"""Understanding code: language detection, tree-sitter parsing, tags queries, symbols, imports and chunking."""

from forgepilot.syntax.languages import LANGUAGES, PARSED_LANGUAGES, Language, detect_language
from forgepilot.syntax.symbols import FileSyntax, ImportRef, Reference, Symbol, analyze

__all__ = [
    "LANGUAGES",
    "PARSED_LANGUAGES",
    "FileSyntax",
    "ImportRef",
    "Language",
    "Reference",
    "Symbol",
    "analyze",
    "detect_language",
]
