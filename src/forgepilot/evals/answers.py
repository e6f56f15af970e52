"""Reading a prompt evaluation's answer out of the model's text: a label, a score or a JSON value.

A chain-of-thought variant reasons first and answers last, so the answer pattern (e.g. ``(?i)answer:\\s*(\\w+)``)
takes the *last* match. A JSON answer is the first fenced block or the first balanced object of the text,
validated against the suite's JSON Schema; an invalid structure is a prediction of None, counted as invalid.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from forgepilot.evals.suites import AnswerSpec

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Answer:
    #: The answer as compared with ``expected`` (label text, score, JSON value or field); None when unreadable.
    value: Any
    #: For JSON answers: parsed and valid against the schema. Other answers: a value was found.
    valid: bool
    problem: str = ""


def _last_match(pattern: str, text: str) -> str | None:
    found = None
    for m in re.finditer(pattern, text):
        found = m.group(1) if m.groups() else m.group(0)
    return found


def _json_value(text: str) -> Any:
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for i, ch in enumerate(candidate):
        if ch in "{[":
            try:
                return decoder.raw_decode(candidate[i:])[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON value in the answer")


def read_answer(text: str, spec: AnswerSpec) -> Answer:
    if spec.type == "json":
        try:
            value = _json_value(text)
        except ValueError as exc:
            return Answer(None, False, str(exc))
        if spec.json_schema is not None:
            import jsonschema

            try:
                jsonschema.validate(value, spec.json_schema)
            except jsonschema.ValidationError as exc:
                return Answer(None, False, f"schema: {exc.message}")
        if spec.field is not None:
            if not isinstance(value, dict) or spec.field not in value:
                return Answer(None, False, f"no field {spec.field!r}")
            value = value[spec.field]
        return Answer(value, True)
    raw = _last_match(spec.pattern, text) if spec.pattern else text.strip()
    if raw is None:
        return Answer(None, False, "the answer pattern does not match")
    if spec.type == "score":
        number = _NUMBER.search(raw)
        if number is None:
            return Answer(None, False, "no number in the answer")
        return Answer(float(number.group(0)), True)
    label = raw.strip().strip(".").strip()
    if spec.labels is not None:
        known = {x.casefold(): x for x in spec.labels}
        if label.casefold() not in known:
            return Answer(None, False, f"{label[:40]!r} is not one of the labels")
        label = known[label.casefold()]
    return Answer(label, True)


def same_answer(value: Any, expected: Any, spec: AnswerSpec) -> bool:
    if value is None:
        return False
    if spec.type == "score":
        return bool(float(value) == float(expected))
    if isinstance(value, str) and isinstance(expected, str):
        return value.strip().casefold() == expected.strip().casefold()
    return bool(value == expected)
