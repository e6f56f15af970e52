"""Which licence a repository is under (from its licence file or package metadata), as an SPDX id.

Phrases that only the licence's own text contains identify it; a repository without any licence statement is
``none`` (a company's own code usually is) and a statement we cannot name is ``unknown``. The dataset settings
allow a list of ids (``dataset.licence_allow``).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt", "LICENCE.md", "COPYING", "COPYING.txt")
# Most specific first: the LGPL text mentions the GPL, BSD-3 contains BSD-2's clauses.
_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AGPL-3.0", ("GNU AFFERO GENERAL PUBLIC LICENSE",)),
    ("LGPL-3.0", ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 3")),
    ("LGPL-2.1", ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 2.1")),
    ("GPL-3.0", ("GNU GENERAL PUBLIC LICENSE", "Version 3")),
    ("GPL-2.0", ("GNU GENERAL PUBLIC LICENSE", "Version 2")),
    ("Apache-2.0", ("Apache License", "Version 2.0")),
    ("MPL-2.0", ("Mozilla Public License", "2.0")),
    ("PSF-2.0", ("PYTHON SOFTWARE FOUNDATION LICENSE",)),
    ("BSD-3-Clause", ("Redistribution and use in source and binary forms", "Neither the name")),
    ("BSD-2-Clause", ("Redistribution and use in source and binary forms",)),
    ("MIT", ("Permission is hereby granted, free of charge",)),
    ("ISC", ("Permission to use, copy, modify, and/or distribute this software for any purpose", "provided that")),
    ("Unlicense", ("This is free and unencumbered software released into the public domain",)),
    ("0BSD", ("Permission to use, copy, modify, and/or distribute this software for any",)),
)
_SPDX = re.compile(r"SPDX-License-Identifier:\s*([\w.+-]+)")


def identify(text: str) -> str:
    """The SPDX id of a licence text, or ``unknown``."""
    found = _SPDX.search(text[:2000])
    if found:
        return found.group(1)
    flat = " ".join(text.split())
    lowered = flat.lower()
    for spdx, phrases in _PHRASES:
        if all(" ".join(p.split()).lower() in lowered for p in phrases):
            return spdx
    return "unknown"


def detect(root: Path) -> tuple[str, str]:
    """The repository's licence id and where it was read from (``none`` when it states no licence)."""
    for name in _FILES:
        path = root / name
        if path.is_file():
            return identify(path.read_text(encoding="utf-8", errors="replace")), name
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            project = {}
        lic = project.get("license")
        if isinstance(lic, str):
            return lic, "pyproject.toml"
        if isinstance(lic, dict) and isinstance(lic.get("text"), str):
            return identify(lic["text"]), "pyproject.toml"
    package = root / "package.json"
    if package.is_file():
        try:
            lic = json.loads(package.read_text(encoding="utf-8")).get("license")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            lic = None
        if isinstance(lic, str):
            return lic, "package.json"
    return "none", ""
